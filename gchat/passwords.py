"""Password hashes for operators, and the files that hold the server's secrets.

Operators' passwords are stored only as salted, deliberately slow hashes
from the standard library (scrypt by default, PBKDF2 accepted), so a leaked
``--oper-file`` does not leak the passwords. Every comparison is constant
time. Pure apart from reading a file: the event loop must not run these
slow hashes itself (see ``gchat.operators``).
"""

import hashlib
import hmac
import os
from pathlib import Path
from typing import Optional

# scrypt's recommended interactive cost: 16 MiB and some 50 ms per check.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_MAXMEM = 64 * 1024 * 1024
PBKDF2_MIN_ITERATIONS = 100_000


class SecretsError(ValueError):
    """A password or operator file that cannot be used; the message names the problem."""


def hash_password(password: str, n: int = SCRYPT_N, salt: Optional[bytes] = None) -> str:
    """``scrypt$N$R$P$SALT$HASH`` (hex): everything ``verify`` needs but the password."""
    salt = os.urandom(16) if salt is None else salt
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=SCRYPT_R, p=SCRYPT_P, maxmem=SCRYPT_MAXMEM, dklen=32
    )
    return f"scrypt${n}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify(password: str, encoded: str) -> bool:
    """Whether ``password`` matches ``encoded`` (from ``hash_password``, or pbkdf2_sha256)."""
    kind, _, rest = encoded.partition("$")
    try:
        if kind == "scrypt":
            n, r, p, salt, expected = rest.split("$")
            digest = hashlib.scrypt(
                password.encode(),
                salt=bytes.fromhex(salt),
                n=int(n),
                r=int(r),
                p=int(p),
                maxmem=SCRYPT_MAXMEM,
                dklen=len(expected) // 2,
            )
        elif kind == "pbkdf2_sha256":
            iterations, salt, expected = rest.split("$")
            digest = hashlib.pbkdf2_hmac(
                "sha256", password.encode(), bytes.fromhex(salt), int(iterations), len(expected) // 2
            )
        else:
            return False
    except ValueError:
        return False
    return hmac.compare_digest(digest.hex(), expected.lower())


def check_hash(encoded: str) -> None:
    """Raise SecretsError unless ``encoded`` is a hash ``verify`` can use."""
    kind, _, rest = encoded.partition("$")
    fields = rest.split("$")
    if kind == "scrypt" and len(fields) == 5 and _usable_scrypt(*fields):
        return
    if kind == "pbkdf2_sha256" and len(fields) == 3 and _usable_pbkdf2(*fields):
        return
    raise SecretsError(
        "not a password hash (make one with: python -m gchat hash-password; "
        f"pbkdf2_sha256 needs at least {PBKDF2_MIN_ITERATIONS} iterations)"
    )


def _usable_scrypt(n: str, r: str, p: str, salt: str, digest: str) -> bool:
    cost = _whole(n)
    return (
        cost > 1
        and cost & (cost - 1) == 0
        and _whole(r) > 0
        and _whole(p) > 0
        and _hex(salt)
        and _hex(digest)
    )


def _usable_pbkdf2(iterations: str, salt: str, digest: str) -> bool:
    return _whole(iterations) >= PBKDF2_MIN_ITERATIONS and _hex(salt) and _hex(digest)


def parse_operators(text: str) -> "dict[str, str]":
    """``NAME:HASH`` lines (blank lines and ``#`` comments allowed) into {name: hash}."""
    operators: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        entry = raw.strip()
        if not entry or entry.startswith("#"):
            continue
        name, colon, encoded = entry.partition(":")
        if not colon or not name:
            raise SecretsError(f"line {number}: expected NAME:HASH")
        try:
            check_hash(encoded)
        except SecretsError as err:
            raise SecretsError(f"line {number}: {err}") from None
        operators[name] = encoded
    return operators


def read_secret_file(path: str) -> str:
    """A file's first line, without its line ending: the server password."""
    secret = _read(path).partition("\n")[0].rstrip("\r")
    if not secret:
        raise SecretsError(f"{path}: the first line is empty")
    return secret


def read_operator_file(path: str) -> "dict[str, str]":
    try:
        return parse_operators(_read(path))
    except SecretsError as err:
        raise SecretsError(f"{path}: {err}") from None


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise SecretsError(f"{path}: {getattr(err, 'strerror', None) or err}") from None


def _whole(text: str) -> int:
    return int(text) if text.isdigit() else -1


def _hex(text: str) -> bool:
    try:
        return bool(bytes.fromhex(text))
    except ValueError:
        return False
