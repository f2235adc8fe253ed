"""``python -m gchat``: flags and GCHAT_* variables in, a running server out.

Every failure a user can cause here (a bad value, a port in use) ends in one
line on stderr and a non-zero status, never a traceback.
"""

import argparse
import getpass
import logging
import math
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Callable, NoReturn, Optional
from urllib.parse import urlsplit, urlunsplit

import gevent
from gevent.event import Event

from gchat import __version__
from gchat.addresses import format_peer
from gchat.bus import BusError
from gchat.config import Config
from gchat.logs import LOG_FORMATS, configure_logging
from gchat.meter import MetricsError
from gchat.passwords import SecretsError, hash_password, read_operator_file, read_secret_file
from gchat.rlimit import fit_open_files
from gchat.server import WEB, CannotListen, ChatServer
from gchat.tls import TlsError, server_context

log = logging.getLogger("gchat")

LOG_LEVELS = ("debug", "info", "warning", "error")


def _integer(low: int, high: Optional[int] = None) -> Callable[[str], int]:
    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low or (high is not None and value > high):
            bound = f"from {low} to {high}" if high is not None else f"of at least {low}"
            raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a whole number {bound}")
        return value

    return convert


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a number of at least 0")
    return value


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a number above 0")
    return value


def _one_of(choices: "tuple[str, ...]") -> Callable[[str], str]:
    def convert(text: str) -> str:
        if text.lower() not in choices:
            raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected one of {', '.join(choices)}")
        return text.lower()

    return convert


BUS_SCHEMES = ("redis://", "rediss://", "unix://")


def _bus_url(text: str) -> str:
    if text and not text.startswith(BUS_SCHEMES):
        raise argparse.ArgumentTypeError(
            f"invalid value {text!r}: expected a URL starting with {', '.join(BUS_SCHEMES)}"
        )
    return text


def _origins(text: str) -> str:
    from gchat.web.wire import parse_origins  # see ChatServer._front_ends: the web's modules load on use

    try:
        return ",".join(sorted(parse_origins(text)))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: {err}") from None


def _path(text: str) -> Optional[str]:
    """A file flag; empty (GCHAT_STORE=) is none."""
    return text or None


def _switch(text: str) -> bool:
    """A GCHAT_ variable for an on/off flag."""
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("", "0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected 1 or 0")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"gchat: error: {message}\n")


# (flag, converter, help): the one list both the parser and GCHAT_* come from.
_FLAGS: "list[tuple[str, Callable[[str], object], str]]" = [
    ("--host", str, "address to listen on; '::' for IPv6"),
    ("--port", _integer(0, 65535), "TCP port; 0 picks a free one"),
    ("--irc-port", _integer(0, 65535), "TCP port for IRC clients (6667 by convention); off unless given"),
    ("--ircs-port", _integer(0, 65535), "TCP port for IRC over TLS (6697 by convention; needs --certfile)"),
    ("--metrics-port", _integer(0, 65535), "HTTP port on --host serving Prometheus metrics; 0: off"),
    ("--metrics-timeout", _positive_seconds, "seconds a metrics connection may last, request and response"),
    ("--history", _integer(0), "chat lines replayed on joining a room; 0: off"),
    ("--max-line", _integer(1), "longest line accepted, in bytes"),
    ("--rate", _seconds, "lines per second read from one client; 0: no limit"),
    ("--burst", _integer(1), "lines a client may send at once before --rate applies"),
    ("--max-backlog", _integer(1), "bytes queued for a slow reader before it is dropped"),
    ("--max-clients", _integer(1), "connections served at once"),
    ("--max-per-ip", _integer(0), "connections from one address; 0: no limit"),
    ("--connect-rate", _seconds, "connections a second from one address after --connect-burst; 0: no limit"),
    ("--connect-burst", _integer(1), "connections one address may open at once"),
    ("--ipv4-prefix", _integer(1, 32), "per-address limits count an IPv4 client's /N network as one address"),
    (
        "--ipv6-prefix",
        _integer(1, 128),
        "per-address limits count an IPv6 client's /N network as one address",
    ),
    ("--idle-timeout", _seconds, "seconds without a line before a client is dropped; 0: never"),
    ("--shutdown-timeout", _seconds, "seconds clients get to take their last lines at shutdown"),
    ("--certfile", str, "PEM certificate (chain) to serve TLS with; needs --keyfile"),
    ("--keyfile", str, "PEM private key (unencrypted) of --certfile"),
    ("--password-file", str, "file whose first line is the server password (/pass); none: open"),
    ("--oper-file", str, "NAME:HASH lines of operators (/oper); hashes from: python -m gchat hash-password"),
    ("--handshake-timeout", _positive_seconds, "seconds a TLS client gets to complete its handshake"),
    ("--log-level", _one_of(LOG_LEVELS), f"one of {', '.join(LOG_LEVELS)}"),
    ("--log-format", _one_of(LOG_FORMATS), "text: plain lines; json: one JSON object per line"),
    ("--bus", _bus_url, "redis://HOST:PORT/DB (or rediss://): join the cluster on that Redis"),
    ("--node-timeout", _positive_seconds, "with --bus: seconds without a heartbeat before a node is lost"),
    ("--reuse-port", _switch, "let other nodes listen on the same port (SO_REUSEPORT)"),
    ("--announce-limit", _integer(0), "no joined/left/quit notices in rooms larger than this; 0: always"),
    ("--join-rate", _seconds, "/join commands a second from one address after --join-burst; 0: no limit"),
    ("--join-burst", _integer(1), "/join commands one address may send at once"),
    ("--msg-rate", _seconds, "/msg lines a second from one address to one nick after --msg-burst; 0: off"),
    ("--msg-burst", _integer(1), "/msg lines one address may send one nick at once"),
    ("--announce-rate", _seconds, "join/leave/rename notices a second about one address's users; 0: off"),
    ("--announce-burst", _integer(1), "such notices at once (each recipient counts one)"),
    ("--web-port", _integer(0, 65535), "TCP port on --host serving the web page and its WebSocket; 0: off"),
    ("--web-origin", _origins, "other origins whose pages may open the WebSocket: https://HOST[:PORT],..."),
    ("--web-ping", _positive_seconds, "seconds between WebSocket pings; a socket silent for two is dropped"),
    ("--store", _path, "SQLite file keeping history, topics and bans across restarts; none: memory only"),
    ("--keep-days", _seconds, "with --store: days a line is kept; 0: no limit"),
    ("--keep-lines", _integer(0), "with --store: lines kept per room; 0: no limit"),
]


HASH_PASSWORD = "hash-password"
HASH_PASSWORD_HELP = (
    f"python -m gchat {HASH_PASSWORD} reads an operator's password (twice from a terminal, or one "
    "line on stdin) and prints its scrypt hash: the HASH of a NAME:HASH line in --oper-file."
)


def _env_name(flag: str) -> str:
    return "GCHAT_" + flag[2:].replace("-", "_").upper()


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    """A parser whose defaults are Config's, overridden by GCHAT_* variables."""
    parser = _Parser(
        prog="python -m gchat",
        description="A multi-client TCP chat server. Every flag may also be set as GCHAT_FLAG "
        "in the environment (GCHAT_MAX_LINE=100); the flag wins.",
        epilog=HASH_PASSWORD_HELP,
    )
    defaults = Config()
    for flag, convert, text in _FLAGS:
        dest = flag[2:].replace("-", "_")
        default = getattr(defaults, dest)
        name = _env_name(flag)
        if name in environ:
            try:
                default = convert(environ[name])
            except argparse.ArgumentTypeError as err:
                parser.error(f"{name}: {err}")
        if convert is _switch:
            parser.add_argument(flag, action="store_true", default=default, help=f"{text} (env {name}=1)")
        else:
            parser.add_argument(
                flag, type=convert, default=default, help=f"{text} (default: %(default)s; env {name})"
            )
    parser.add_argument(
        "-q",
        "--quiet",
        dest="log_level",
        action="store_const",
        const="warning",
        help="log only warnings and errors",
    )
    parser.add_argument("--version", action="version", version=f"gchat {__version__}")
    return parser


def parse_config(argv: Optional[Sequence[str]], environ: Mapping[str, str]) -> Config:
    """Flags over GCHAT_* variables over defaults; exits with one line on a bad value."""
    parser = build_parser(environ)
    config = Config(**vars(parser.parse_args(argv)))
    if (config.certfile is None) != (config.keyfile is None):
        parser.error("--certfile and --keyfile go together: give both or neither")
    if config.ircs_port is not None and config.certfile is None:
        parser.error("--ircs-port needs --certfile and --keyfile")
    if config.store is not None and config.bus:
        parser.error("--store and --bus do not go together: with --bus, Redis keeps the chat")
    if config.store is None and (config.keep_days or config.keep_lines):
        parser.error("--keep-days and --keep-lines need --store")
    return config


def hide_password(url: str) -> str:
    """The bus URL fit for a log: a password in it is replaced by ***."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def hash_password_command(args: Sequence[str]) -> int:
    """``python -m gchat hash-password``: a line for --oper-file, the password never in argv."""
    if args:
        if args[0] in ("-h", "--help"):
            print(f"usage: python -m gchat {HASH_PASSWORD}\n\n{HASH_PASSWORD_HELP}")
            return 0
        print(
            f"gchat: error: {HASH_PASSWORD} takes no arguments (the password is read from stdin)",
            file=sys.stderr,
        )
        return 2
    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("gchat: the passwords differ", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("gchat: empty password", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0


def load_secrets(config: Config) -> "tuple[Optional[str], Optional[dict[str, str]]]":
    """The server password and the operators; raises SecretsError naming the flag and file."""
    password = operators = None
    try:
        if config.password_file is not None:
            password = read_secret_file(config.password_file)
        if config.oper_file is not None:
            operators = read_operator_file(config.oper_file)
    except SecretsError as err:
        flag = "--password-file" if password is None and config.password_file else "--oper-file"
        raise SecretsError(f"{flag} {err}") from None
    return password, operators


def main(argv: Optional[list[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == [HASH_PASSWORD]:
        return hash_password_command(args[1:])
    config = parse_config(args, os.environ)
    try:
        password, operators = load_secrets(config)
    except SecretsError as err:
        print(f"gchat: {err}", file=sys.stderr)
        return 1
    tls = None
    if config.certfile is not None and config.keyfile is not None:
        try:
            tls = server_context(config.certfile, config.keyfile)
        except TlsError as err:
            print(f"gchat: {err}", file=sys.stderr)
            return 1
    store = None
    if config.store is not None:
        from gchat.store import Store, StoreError  # sqlite3 and a thread pool, only for --store

        try:
            store = Store.open(config.store, config.keep_days, config.keep_lines)
        except StoreError as err:
            print(f"gchat: {err}", file=sys.stderr)
            return 1
    configure_logging(config.log_level, config.log_format)
    fitted = fit_open_files(config.max_clients)
    if fitted < config.max_clients:
        log.warning(
            "the open-files limit allows %d clients: --max-clients lowered from %d",
            fitted,
            config.max_clients,
        )
        config = replace(config, max_clients=fitted)
    server = ChatServer(config, tls, password, operators, store)
    try:
        server.start()
    except BusError as err:
        print(f"gchat: cannot reach the bus at {hide_password(config.bus)}: {err}", file=sys.stderr)
        return 1
    except MetricsError as err:
        print(f"gchat: {err}", file=sys.stderr)
        return 1
    except CannotListen as err:
        print(f"gchat: {err}", file=sys.stderr)
        return 1
    for name, address in server.listening():
        if name == WEB:
            scheme = "https" if tls is not None else "http"
            log.info("gchat web page on %s://%s/", scheme, format_peer(address))
        else:
            log.info("gchat %slistening on %s", f"{name} " if name else "", format_peer(address))
    if config.bus:
        log.info("gchat node %s on the bus at %s", server.chat.node, hide_password(config.bus))
    if tls is not None:
        log.info("TLS on, certificate %s", config.certfile)

    stopped = Event()

    def shutdown() -> None:
        server.shutdown()
        stopped.set()

    def on_signal(signum: int) -> None:
        if server.chat.closing:
            log.warning("second signal: exiting without waiting for clients")
            os._exit(128 + signum)
        log.info("gchat shutting down")
        gevent.spawn(shutdown)

    for signum in (signal.SIGINT, signal.SIGTERM):
        gevent.signal_handler(signum, on_signal, signum)
    stopped.wait()
    if store is not None:
        store.close()
    log.info("gchat stopped")
    return 0
