#!/usr/bin/env bash
# The README's test command, and CI's (.ci/run calls it): on a fresh Debian machine it
# installs what the suite needs, then runs the whole tox matrix, environments side by side.
#
#   bash tests/run.sh                  every environment (py39 ... py313, lint, type)
#   bash tests/run.sh -e py311 -- -x   any other tox arguments: passed to tox as they are
#
# TOX_PARALLEL sets how many environments run at once (default: one per core).
set -euo pipefail
cd "$(dirname "$0")/.."

TOX_VERSION=4.67.15
say() { printf 'tests/run.sh: %s\n' "$*" >&2; }

# The suite drives the server with a real netcat as one of its clients, makes its TLS
# certificate with openssl, runs the cluster tests on real redis-servers, and builds the
# perf runner's C load generator with cc (its smoke test), drives irssi in tmux as a real
# IRC client, and drives the web page in Debian's Chromium (Playwright cannot download a
# browser here). They are required: a test that needs one fails, naming the package, if it
# is missing.
missing=()
command -v nc >/dev/null 2>&1 || missing+=(netcat-openbsd)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v cc >/dev/null 2>&1 || missing+=(gcc)
command -v irssi >/dev/null 2>&1 || missing+=(irssi)
command -v tmux >/dev/null 2>&1 || missing+=(tmux)
# The IRC load generators' smoke tests (Debian puts the daemon in /usr/sbin).
[ -x /usr/sbin/ngircd ] || command -v ngircd >/dev/null 2>&1 || missing+=(ngircd)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then
        as_root=()
    elif command -v sudo >/dev/null 2>&1; then
        as_root=(sudo)
    else
        say "the tests need: ${missing[*]}; install them as root (Debian: apt-get install ${missing[*]})"
        exit 1
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        say "the tests need: ${missing[*]}; no apt-get here: install them with your package manager"
        exit 1
    fi
    say "installing ${missing[*]}"
    "${as_root[@]}" apt-get update -qq
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The interpreter that runs tox itself, fixed before PYENV_VERSION changes what shims answer.
python="$(python3 -c 'import sys; print(sys.executable)')"
"$python" -m pip install -q --disable-pip-version-check --root-user-action=ignore "tox==$TOX_VERSION"

# Under pyenv only the selected version's shims answer; make every installed CPython
# 3.9-3.13 visible as python3.X so tox finds the whole matrix.
pyenv="$(command -v pyenv || true)"
if [ -z "$pyenv" ] && [ -x "${PYENV_ROOT:-$HOME/.pyenv}/bin/pyenv" ]; then
    pyenv="${PYENV_ROOT:-$HOME/.pyenv}/bin/pyenv"
fi
if [ -n "$pyenv" ]; then
    PYENV_VERSION="$("$pyenv" versions --bare | grep -E '^3\.(9|1[0-3])\.[0-9]+$' | sort -V | paste -sd: -)"
    export PYENV_VERSION
    PATH="$("$pyenv" root)/shims:$PATH"
fi

if [ $# -gt 0 ]; then
    exec "$python" -m tox "$@"
fi

absent=()
for minor in 9 10 11 12 13; do
    command -v "python3.$minor" >/dev/null 2>&1 || absent+=("python3.$minor")
done
if [ ${#absent[@]} -gt 0 ]; then
    say "tox runs the suite on CPython 3.9 to 3.13; not found: ${absent[*]} (pyenv install 3.X, or your distribution's packages)"
    exit 1
fi

# One environment keeps about one core busy (the suite is CPU-bound: each test runs its
# own servers), so one per core; each prints its whole output, pytest's summary line
# included, as it finishes.
exec "$python" -m tox run-parallel --parallel "${TOX_PARALLEL:-auto}" --parallel-no-spinner
