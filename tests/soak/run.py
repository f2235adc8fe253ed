"""Soak and fault test: a real ``python -m gchat`` under a mixed, hostile load for minutes.

``tox -e soak`` runs this (``-- --minutes 1`` for a shorter run). Unit and
end-to-end tests prove each behaviour once; this proves they hold together
and over time: memory that creeps, descriptors that leak, a line lost once in
ten thousand, an exception on a rare interleaving of a reset and a cut.

Three servers run side by side, one plain, one TLS and one with a password and
operators ("auth"), each under the same mix (see ``actors.py``) plus the
attackers of ``attacks.py``, each from an address of its own. Not one server
with everything: with ``--certfile`` every client of that port must speak TLS,
and with ``--password-file`` every client must know the password, and the
plain path (the default, and most deployments behind a TLS-terminating proxy),
the TLS path (its own socket wrapper, handshake deadline, partial-record reads
and sends) and the password gate are different code; each deserves the whole
mix, the TLS port also gets plain-TCP clients and broken handshakes, and the
password server the guessers.

All run with ``--log-level warning`` (at info the server logs every chat line,
megabytes here, and the check needs only what is logged as a warning or worse),
the default ``--rate 20 --burst 40`` (the rate limiter stays in the path; no
chatter sends more than 18 lines/s), ``--history 20`` (the default),
``--max-per-ip 40`` and a smaller ``--max-backlog`` of 128 KiB. The last one is
not what makes a slow reader's cut come soon: on loopback Linux grows the server's send buffer to
4 MiB at once, and that fills before any backlog builds in the server, so the
flood room carries about 325 KiB/s (5 chatters, 18 lines/s of 2.4 to 4.8 KiB) and
a reader that stops is cut some 13 s later. It cannot be smaller than what a
join replays, though: the room's last 20 lines, up to 100 KiB here, are queued
in one go, and a backlog limit below that cuts every newcomer on its way in.

Chatters read promptly and no one else sends to them much, so the server never
owes one anything close to the limit: a chatter cut off is a failure, not noise.

At the end, for each server, every check prints PASS or FAIL and the exit
status is 1 if any failed:

1. no error in the server's log (JSON: level error/critical, a traceback, or
   any line that is not a JSON record, such as gevent printing a traceback);
2. RSS flat after warm-up: the least-squares slope of VmRSS over the samples
   after ``--warmup`` seconds (default 60; SKIP if fewer than 60 s of samples
   remain after it, as in a 1-minute run) is below ``max(256 KiB, 1% of RSS)`` per minute.
   Each server sees about 1,000 connections a minute, so a leak of a few hundred
   bytes per connection already crosses it, and a leaked session, greenlet or
   room history (kilobytes each) would cross it tenfold; while the noise, slow
   readers' backlogs and histories coming and going, is under 128 KiB at any
   moment and averages out over a hundred samples;
3. every chatter line was received exactly once, in order, undamaged, by every
   other chatter of its room, and no chatter was ever disconnected;
4. no descriptor leaked: once every soak client is gone, the server's
   ``/proc/PID/fd`` count returns to the baseline taken after start-up;
5. every other client got the replies it was owed (``/who`` lists the room's
   chatters, each over-long line is refused, ``/quit`` ends in Bye and a close,
   no control character or invalid UTF-8 ever reaches a client);
6. the faults really happened (slow-consumer cuts, resets, garbage, TLS);
7. the server exits 0 on SIGTERM at the end;
8. the attacks of ``attacks.py`` were contained: no line reached anyone on a ghost's behalf
   after its reset, one address never held more than ``--max-per-ip`` stalled handshakes (and
   the one that may carry its refusal line) while
   another address's TLS clients were served, wrong passwords and ``/oper`` guesses were
   answered no faster than the throttles allow, and a client that knows the password was
   admitted promptly, even from the guessers' address.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import ssl
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

# The package and this directory's modules need ROOT and this directory on the path first.
from actors import (  # noqa: E402
    FLOOD_ROOM,
    Actor,
    Chatter,
    GarbageSender,
    Joiner,
    Killer,
    SlowReader,
    Target,
    chatter_text,
)
from attacks import GHOST_GRACE, Ghost, HandshakeStaller, Knower, OperGuesser, PasswordGuesser  # noqa: E402
from observe import Sampler, SoakServer, make_certificate, scan_log, slope_kib_per_min  # noqa: E402

from gchat.bench.procs import read_cpu_s  # noqa: E402
from gchat.passwords import hash_password  # noqa: E402

MAX_LINE = 8192
MAX_BACKLOG = 131072
# Far above what the soak's own clients open from 127.0.0.1, below what the stallers open.
MAX_PER_IP = 40
SERVER_FLAGS = [
    "--log-level", "warning",
    "--max-line", str(MAX_LINE),
    "--max-backlog", str(MAX_BACKLOG),
    "--handshake-timeout", "3",
    "--shutdown-timeout", "2",
    "--max-per-ip", str(MAX_PER_IP),
    # Every actor but the attackers connects from 127.0.0.1: one address plays a crowd,
    # as behind a NAT, so the per-address budgets of /join, /msg and notices are off.
    "--join-rate", "0",
    "--msg-rate", "0",
    "--announce-rate", "0",
]  # fmt: skip
SERVERS = ("plain", "tls", "auth")
# The password server's secrets: what its clients know, and the operator the guessers want.
PASSWORD, OPERATOR = "soak-password", "root"
# room -> (chatters, lines/s each, longest line in characters)
CHAT_ROOMS = {
    "#soak0": (4, 2.0, 160),
    "#soak1": (4, 2.0, 160),
    "#soak2": (4, 2.0, 160),
    FLOOD_ROOM: (5, 18.0, 4000),
}
# Per server: how many threads of each other kind.
JOINERS, SLOW_READERS, KILLERS, GARBAGE_SENDERS = 3, 2, 2, 1
# Attackers: ghosts on every server; on the TLS one stallers; on the password one guessers.
GHOSTS, STALLERS, GUESSERS, OPER_GUESSERS, KNOWERS = 2, 1, 3, 2, 2
# What the attacks may get at most, over the whole run: answers to wrong guesses per second
# from one address, and the slowest admission of a client that knows the password.
GUESSES_PER_S_MAX, OPER_GUESSES_PER_S_MAX, ADMISSION_MS_MAX = 10.0, 10.0, 3000
# RSS growth allowed after warm-up, per minute: the larger of these (why: check 2 above).
SLOPE_FLOOR_KIB, SLOPE_FRACTION = 256.0, 0.01
# Seconds of samples after the warm-up without which the slope is not judged.
MIN_RSS_WINDOW = 59.0


class Check:
    """Collects PASS/FAIL lines; any FAIL makes the exit status 1."""

    def __init__(self) -> None:
        self.failed = 0

    def __call__(self, ok: bool, server: str, what: str, detail: str = "") -> None:
        self.failed += not ok
        print(f"{'PASS' if ok else 'FAIL'}  {server:5}  {what}{': ' + detail if detail else ''}", flush=True)

    def skip(self, server: str, what: str, why: str) -> None:
        print(f"SKIP  {server:5}  {what}: {why}", flush=True)


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="how long the load runs (default 5)")
    parser.add_argument(
        "--warmup", type=float, default=60.0, help="seconds before RSS must be flat (default 60)"
    )
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between RSS samples (default 2)")
    parser.add_argument(
        "--servers", default=",".join(SERVERS), help=f"which servers to soak (default {','.join(SERVERS)})"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the clients' random choices")
    parser.add_argument(
        "--keep-logs", type=Path, default=None, help="copy the servers' logs to this directory"
    )
    args = parser.parse_args(argv)
    args.servers = [name for name in args.servers.split(",") if name]
    if not set(args.servers) <= set(SERVERS) or not args.servers:
        parser.error(f"--servers: any of {', '.join(SERVERS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if "tls" in args.servers and shutil.which("openssl") is None:
        print("soak: the openssl command is needed for the TLS server's certificate", file=sys.stderr)
        return 2
    for room, (_, _, size) in CHAT_ROOMS.items():
        longest = max(len(chatter_text("cT3_9", seq, size).encode()) for seq in range(2000))
        assert longest < MAX_LINE, f"{room}: chatter lines of {longest} bytes exceed --max-line"
    print(
        f"gchat soak: {args.minutes:g} min, servers {'+'.join(args.servers)}, "
        f"Python {platform.python_version()}, {os.cpu_count()} cores, load {loadavg()} at start",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="gchat-soak-") as tmp:
        directory = Path(tmp)
        servers: list[SoakServer] = []
        try:
            client_tls = None
            for name in args.servers:
                flags = list(SERVER_FLAGS)
                if name == "tls":
                    cert, key = make_certificate(directory)
                    flags += ["--certfile", str(cert), "--keyfile", str(key)]
                    client_tls = ssl.create_default_context(cafile=str(cert))
                if name == "auth":
                    flags += secret_flags(directory)
                servers.append(SoakServer(name, ROOT, directory, flags))
            for server in servers:
                print(f"{server.name} server: python {' '.join(server.args[1:])}", flush=True)
            return soak(args, servers, client_tls)
        finally:
            for server in servers:
                server.kill()
            if args.keep_logs is not None:
                args.keep_logs.mkdir(parents=True, exist_ok=True)
                for server in servers:
                    shutil.copy(server.log_path, args.keep_logs / server.log_path.name)


def secret_flags(directory: Path) -> list[str]:
    """The password server's --password-file and --oper-file, written into ``directory``."""
    password, operators = directory / "password", directory / "operators"
    password.write_text(PASSWORD + "\n")
    operators.write_text(f"{OPERATOR}:{hash_password('the operator password nobody guesses')}\n")
    return ["--password-file", str(password), "--oper-file", str(operators)]


def settled_fd_count(server: SoakServer) -> int:
    """The descriptor count once it has stopped changing (start-up opens a few late)."""
    previous = server.fd_count()
    for _ in range(20):
        time.sleep(0.25)
        current = server.fd_count()
        if current == previous:
            return current
        previous = current
    return previous


def wait_fds(server: SoakServer, baseline: int, timeout: float) -> tuple[int, float]:
    """Poll until the server is back at ``baseline`` descriptors; (the count, seconds waited)."""
    started = time.monotonic()
    while True:
        count = server.fd_count()
        waited = time.monotonic() - started
        if count == baseline or waited > timeout:
            return count, waited
        time.sleep(0.1)


def soak(args: argparse.Namespace, servers: list[SoakServer], client_tls: ssl.SSLContext | None) -> int:
    stop = threading.Event()
    start_sending, release = threading.Event(), threading.Event()
    baselines = {server.name: settled_fd_count(server) for server in servers}
    targets: dict[str, Target] = {}
    chatters: dict[str, list[Chatter]] = {}
    actors: list[Actor] = []
    # room -> its chatters' nicks (the same names on each server)
    rooms = {
        room: [f"c{room.strip('#')}_{i}" for i in range(count)] for room, (count, _, _) in CHAT_ROOMS.items()
    }
    chat_rooms = [room for room in CHAT_ROOMS if room != FLOOD_ROOM]
    for server in servers:
        target = Target(
            server.name,
            server.host,
            server.port,
            client_tls if server.name == "tls" else None,
            MAX_LINE,
            stop,
            password=PASSWORD if server.name == "auth" else None,
        )
        targets[server.name] = target
        chatters[server.name] = [
            Chatter(target, room, nick, rooms[room], rate, size, start_sending, release)
            for room, (_, rate, size) in CHAT_ROOMS.items()
            for nick in rooms[room]
        ]
        actors += [Joiner(target, i, args.seed, rooms) for i in range(JOINERS)]
        actors += [SlowReader(target, i, args.seed) for i in range(SLOW_READERS)]
        actors += [Killer(target, i, args.seed, chat_rooms) for i in range(KILLERS)]
        actors += [GarbageSender(target, i, args.seed, chat_rooms) for i in range(GARBAGE_SENDERS)]
        actors += [Ghost(target, i, args.seed) for i in range(GHOSTS)]
        if server.name == "tls":
            actors += [HandshakeStaller(target, i, args.seed) for i in range(STALLERS)]
        if server.name == "auth":
            actors += [PasswordGuesser(target, i, args.seed) for i in range(GUESSERS)]
            actors += [OperGuesser(target, i, args.seed) for i in range(OPER_GUESSERS)]
            actors += [Knower(target, i, args.seed) for i in range(KNOWERS)]
    every_chatter = [chatter for group in chatters.values() for chatter in group]
    for chatter in every_chatter:
        chatter.start()
    for chatter in every_chatter:
        chatter.ready.wait(60)
    if any(chatter.failed.is_set() or not chatter.ready.is_set() for chatter in every_chatter):
        stop.set()
        print("FAIL  chatters could not join their rooms:", flush=True)
        for chatter in every_chatter:
            for problem in chatter.problems:
                print(f"      {chatter.name}: {problem}")
        return 1

    started = time.monotonic()
    cpu_start = {server.name: read_cpu_s(server.pid) or 0.0 for server in servers}
    sampler = Sampler(servers, started, args.interval)
    sampler.start()
    start_sending.set()
    for actor in actors:
        actor.start()
    duration = args.minutes * 60
    next_report = 30.0
    while not stop.wait(min(5.0, max(0.0, duration - (time.monotonic() - started)))):
        elapsed = time.monotonic() - started
        if elapsed >= duration:
            break
        if elapsed >= next_report:
            next_report += 30.0
            progress(elapsed, servers, targets, chatters)
    stop.set()
    ran_for = time.monotonic() - started
    print(f"stopping after {ran_for:.0f} s; load {loadavg()}", flush=True)

    hung = []
    deadline = time.monotonic() + 60
    for actor in actors:
        actor.join(max(0.1, deadline - time.monotonic()))
        if actor.is_alive():
            hung.append(actor.name)
    deadline = time.monotonic() + 90
    for chatter in every_chatter:
        while chatter.is_alive() and not chatter.finished_at and time.monotonic() < deadline:
            chatter.join(0.2)
    sampler.stopped.set()
    sampler.join(10)
    release.set()
    for chatter in every_chatter:
        chatter.join(30)
        if chatter.is_alive():
            hung.append(chatter.name)

    fds_end = {server.name: wait_fds(server, baselines[server.name], 30.0) for server in servers}
    cpu_used = {server.name: (read_cpu_s(server.pid) or 0.0) - cpu_start[server.name] for server in servers}
    fd_targets = {server.name: server.fds() for server in servers}
    exit_status = {server.name: server.terminate() for server in servers}
    return report(
        args, ran_for, servers, targets, chatters, baselines, fds_end, fd_targets, exit_status, cpu_used, hung
    )


def attack_figures(name: str, counts: Counter[str], ran_for: float) -> list[tuple[str, object, bool]]:
    """What the attackers got, each with whether it is within what the README promises."""
    figures: list[tuple[str, object, bool]] = [
        ("ghosts", counts["ghosts"], counts["ghosts"] > 0),
        (
            f"ghost lines delivered over {GHOST_GRACE:g} s after the reset",
            counts["ghost lines late"],
            counts["ghost lines late"] == 0,
        ),
    ]
    if name == "tls":
        held = counts["stalled handshakes held at most"]
        served = counts["TLS clients served beside stalled handshakes"]
        figures += [
            (
                "stalled handshakes from one address",
                counts["stalled handshakes"],
                counts["stalled handshakes"] > 0,
            ),
            # Its places, and the one handshake per address that may carry a refusal line.
            (f"of them held at once at most (--max-per-ip {MAX_PER_IP}, +1)", held, held <= MAX_PER_IP + 1),
            ("TLS clients from another address served meanwhile", served, served > 0),
        ]
    if name == "auth":
        guesses = counts["password guesser: answered wrong"] / ran_for
        opers = counts["oper guesser: answered wrong"] / ran_for
        figures += [
            ("wrong passwords answered per second", f"{guesses:.1f}", guesses <= GUESSES_PER_S_MAX),
            ("wrong /oper passwords answered per second", f"{opers:.1f}", opers <= OPER_GUESSES_PER_S_MAX),
        ]
        for where in ("127.0.0.1", "the guessers' address"):
            admitted = counts[f"admissions from {where}"]
            slowest = counts[f"slowest admission from {where}, ms"]
            figures.append(
                (
                    f"admissions from {where} (slowest, ms)",
                    f"{admitted} ({slowest})",
                    admitted > 0 and slowest <= ADMISSION_MS_MAX,
                )
            )
    return figures


def progress(
    elapsed: float, servers: list[SoakServer], targets: dict[str, Target], chatters: dict[str, list[Chatter]]
) -> None:
    parts = []
    for server in servers:
        last = server.samples[-1] if server.samples else None
        counts = targets[server.name].stats.counts
        sent = sum(chatter.sent for chatter in chatters[server.name])
        parts.append(
            f"{server.name}: rss {last.rss_kb if last else '?'} KiB, fds {last.fds if last else '?'}, "
            f"{counts['connections']} conns, {sent} chatter lines, {counts['client errors']} errors"
        )
    print(f"[{elapsed:4.0f} s] load {loadavg()}  " + "  |  ".join(parts), flush=True)


def report(
    args: argparse.Namespace,
    ran_for: float,
    servers: list[SoakServer],
    targets: dict[str, Target],
    chatters: dict[str, list[Chatter]],
    baselines: dict[str, int],
    fds_end: dict[str, tuple[int, float]],
    fd_targets: dict[str, list[str]],
    exit_status: dict[str, int | None],
    cpu_used: dict[str, float],
    hung: list[str],
) -> int:
    check = Check()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print()
    print(f"=== summary: {ran_for / 60:.2f} min of load, load average {loadavg()} at the end ===")
    print(f"soak clients' own CPU: {usage.ru_utime + usage.ru_stime:.0f} s")
    for server in servers:
        name = server.name
        stats = targets[name].stats
        counts = stats.counts
        log = scan_log(server)
        group = chatters[name]
        sent = sum(chatter.sent for chatter in group)
        received = sum(chatter.received for chatter in group)
        owed = sum(
            chatter.sent * (sum(1 for other in group if other.room == chatter.room) - 1) for chatter in group
        )
        samples = server.samples
        after = [sample for sample in samples if sample.at >= args.warmup]
        mean_rss = sum(sample.rss_kb for sample in after) / len(after) if after else 0.0
        slope = slope_kib_per_min(after) if len(after) >= 3 else float("nan")
        limit = max(SLOPE_FLOOR_KIB, SLOPE_FRACTION * mean_rss)
        fd_end, fd_wait = fds_end[name]
        # What the flood room saw: every chatter there reads every quit notice.
        flood = [chatter for chatter in group if chatter.room == FLOOD_ROOM]
        cuts = max((chatter.quits["slow consumer"] for chatter in flood), default=0)
        reasons: dict[str, int] = {}
        for room in CHAT_ROOMS:
            first = next(chatter for chatter in group if chatter.room == room)
            for reason, count in first.quits.items():
                reasons[reason] = reasons.get(reason, 0) + count
        print()
        print(f"--- {name} server (pid {server.pid}, port {server.port}) ---")
        print(f"  chatter lines sent {sent:,}, deliveries owed {owed:,}, received {received:,}")
        print(
            f"  connections made {counts['connections']:,}; TLS clients {counts['tls clients']:,} "
            "(handshake done)"
        )
        print(
            f"  joins {counts['joins']:,}, /quit {counts['quits']:,}, resets {counts['resets']:,}, "
            f"closes {counts['closes']:,}"
        )
        print(
            f"  slow-consumer cuts {cuts:,} (slow readers: {counts['slow readers cut']:,} saw their cut, "
            f"{counts['slow readers not cut']:,} were not cut, {counts['slow readers at the stop']} cycles "
            "ended by the stop)"
        )
        print(
            f"  killed mid-line {counts['kills']:,} (reset), "
            f"{counts['half lines closed']:,} closed on half a line; "
            f"garbage lines {counts['garbage lines']:,} ({counts['over-long lines']:,} over-long)"
        )
        if name == "tls":
            print(
                f"  plain clients on the TLS port {counts['plain clients on the TLS port']:,}, "
                f"stalled handshakes {counts['stalled handshakes']:,}, "
                f"handshakes cut {counts['handshakes cut']:,}"
            )
        attacks = attack_figures(name, counts, ran_for)
        print("  attacks: " + "; ".join(f"{what} {value}" for what, value, _ in attacks))
        print(f"  quit notices in the chatters' rooms, by reason: {dict(sorted(reasons.items()))}")
        print(f"  server CPU {cpu_used[name]:.0f} s ({100 * cpu_used[name] / ran_for:.0f}% of a core)")
        if samples:
            print(
                f"  RSS start {samples[0].rss_kb:,} KiB, "
                f"after warm-up {after[0].rss_kb if after else 0:,} KiB, end {samples[-1].rss_kb:,} KiB, "
                f"peak {max(s.rss_kb for s in samples):,} KiB; "
                f"{len(after)} samples after {args.warmup:g} s of warm-up"
            )
            print(f"  fds baseline {baselines[name]}, peak {max(s.fds for s in samples)}, end {fd_end}")
        print(f"  log: {log.lines} lines, {len(log.warnings)} warnings {log.warnings[:3]}")

        check(
            not log.bad,
            name,
            "1 no server error logged",
            f"{len(log.bad)} bad lines, first: {log.bad[:3]}" if log.bad else "",
        )
        if ran_for - args.warmup < MIN_RSS_WINDOW:
            # RSS still rises for most of the first minute (allocator arenas, histories filling):
            # a slope over less than a minute after that says nothing either way.
            check.skip(
                name, "2 RSS flat after warm-up", f"needs --minutes {(args.warmup + 60) / 60:g} or more"
            )
        else:
            check(
                slope < limit,
                name,
                "2 RSS flat after warm-up",
                f"slope {slope:+.1f} KiB/min (limit {limit:.0f} KiB/min, mean {mean_rss / 1024:.1f} MiB)",
            )
        problems = [f"{chatter.name}: {p}" for chatter in group for p in chatter.problems]
        unfinished = [chatter.name for chatter in group if not chatter.finished_at]
        check(
            not problems and not unfinished and received == owed,
            name,
            "3 every chatter line reached every other chatter of its room, once, in order",
            f"{received:,} of {owed:,}"
            + (f"; unfinished {unfinished}" if unfinished else "")
            + (f"; {len(problems)} problems, first: {problems[:5]}" if problems else ""),
        )
        leaked = fd_end != baselines[name]
        check(
            not leaked,
            name,
            "4 no descriptor leaked",
            f"{fd_end} open after {fd_wait:.1f} s, baseline {baselines[name]}"
            + (f"; open now: {fd_targets[name]}" if leaked else ""),
        )
        own_hung = [actor for actor in hung if actor.startswith(name + "-")]
        check(
            not stats.errors and not own_hung,
            name,
            "5 every other client got what it was owed",
            f"{counts['client errors']} errors, first: {stats.errors[:5]}; hung {own_hung}"
            if stats.errors or own_hung
            else "",
        )
        missing = [
            what
            for what, ok in [
                ("slow-consumer cuts", cuts > 0),
                ("resets", counts["kills"] > 0),
                ("garbage", counts["garbage lines"] > 0),
                ("joins", counts["joins"] > 0),
                ("TLS clients", name != "tls" or counts["tls clients"] > 0),
            ]
            if not ok
        ]
        check(not missing, name, "6 the faults happened", f"none of: {missing}" if missing else "")
        check(exit_status[name] == 0, name, "7 clean exit on SIGTERM", f"status {exit_status[name]}")
        breaches = [f"{what} {value}" for what, value, ok in attacks if not ok]
        check(not breaches, name, "8 the attacks were contained", "; ".join(breaches))
    print()
    print("soak: FAILED" if check.failed else "soak: all checks passed", flush=True)
    return 1 if check.failed else 0


if __name__ == "__main__":
    sys.exit(main())
