"""Shared fixtures: a real ``python -m gchat`` on a free port, and line clients.

Every wait here is bounded: a broken server fails a test with a clear message
instead of hanging the suite. Tests synchronise on the server's replies (a
client's own command reply proves everything before it was handled), never on
sleeps.

Cluster tests run gchat nodes against a real ``redis-server`` (never a fake):
one per test session, each test in a database of its own, so tests cannot see
each other's nicks, rooms or history.
"""

import contextlib
import itertools
import json
import os
import re
import select
import shutil
import signal
import socket
import sqlite3
import ssl
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Callable, Optional, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from prometheus_client.parser import text_string_to_metric_families

from gchat.addresses import format_peer
from gchat.bench.procs import read_rss_kb, read_status_kb
from gchat.store import decode_chunk

ROOT = Path(__file__).resolve().parent.parent

# Generous: the suite runs five times in parallel on two shared cores.
TIMEOUT = 15.0

# A command with a fixed reply and no effect: its reply marks a point in a
# client's stream ("everything the server sent me before this is already here").
PING = "/ping"
PONG = "!!! unknown command: /ping (try /help)"

ChatServerT = TypeVar("ChatServerT")

settings.register_profile("gchat", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("gchat")


def run_gchat(*args, env=None, preexec_fn=None, timeout=TIMEOUT):
    """Run ``python -m gchat`` to completion; (status, stdout, stderr lines)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GCHAT_")}
    environ.update(env or {}, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-m", "gchat", *args],
        cwd=ROOT,
        env=environ,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
        preexec_fn=preexec_fn,
    )
    return done.returncode, done.stdout.decode(), done.stderr.decode().splitlines()


class LineClient:
    """A chat client over a real socket, reading whole lines with a deadline."""

    def __init__(
        self,
        address: "tuple[str, int]",
        timeout: float = TIMEOUT,
        tls: Optional[ssl.SSLContext] = None,
        source: Optional[str] = None,
    ) -> None:
        """With ``tls``, talk TLS: the handshake is done here, and a close without
        close_notify raises instead of passing for the end of the stream. ``source``
        is the address to connect from (any 127.x.y.z works on loopback)."""
        sock = socket.create_connection(
            address, timeout=timeout, source_address=None if source is None else (source, 0)
        )
        # The server's log names a connection by this address (its peer).
        self.peer = format_peer(sock.getsockname())
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname=address[0], suppress_ragged_eofs=False)
        self.sock = sock
        self.timeout = timeout
        self.nick = ""
        self._buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def say(self, *lines: str) -> None:
        self.send(b"".join(line.encode() + b"\n" for line in lines))

    def _fill(self, deadline: float) -> bool:
        """Read one chunk into the buffer; False at end of stream."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"timed out waiting for the server; buffered: {self._buffer[-200:]!r}")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise AssertionError(
                f"timed out waiting for the server; buffered: {self._buffer[-200:]!r}"
            ) from None
        self._buffer += chunk
        return bool(chunk)

    def readline_bytes(self, timeout: Optional[float] = None) -> bytes:
        deadline = time.monotonic() + (timeout or self.timeout)
        while b"\n" not in self._buffer:
            if not self._fill(deadline):
                raise AssertionError(f"connection closed; unterminated: {self._buffer!r}")
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def readline(self, timeout: Optional[float] = None) -> str:
        return self.readline_bytes(timeout).decode("utf-8")

    def expect(self, *lines: str) -> None:
        for line in lines:
            assert self.readline() == line

    def read_lines(self, count: int) -> "list[str]":
        return [self.readline() for _ in range(count)]

    def read_until(self, line: str) -> "list[str]":
        """Lines up to and including ``line``."""
        seen = []
        while True:
            seen.append(self.readline())
            if seen[-1] == line:
                return seen

    def read_to_eof(self, timeout: Optional[float] = None) -> bytes:
        """Everything left, asserting the server closes the connection cleanly and in time.

        A reset is not a clean close: it can throw away lines the server had sent
        but the client had not read yet, so it fails here.
        """
        deadline = time.monotonic() + (timeout or self.timeout)
        try:
            while self._fill(deadline):
                pass
        except ConnectionResetError:
            read = self._buffer[-200:]
            raise AssertionError(f"connection reset instead of closed; read: {read!r}") from None
        rest, self._buffer = self._buffer, b""
        return rest

    def ping(self) -> None:
        """Assert that nothing is pending for this client before a fresh reply."""
        self.say(PING)
        assert self.readline() == PONG

    def close(self) -> None:
        self.sock.close()

    def reset(self) -> None:
        """Close with SO_LINGER 0: the kernel sends a reset and drops what is unsent and unread."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


def small_window_socket(address: "tuple[str, int]") -> socket.socket:
    """A connected socket with a tiny receive window: what the server sends it backs up there."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(address)
    sock.settimeout(TIMEOUT)
    return sock


# --- Chat steps shared by the tests: each reads the replies it causes --------------


def say_megabytes(sender: LineClient) -> "list[str]":
    """3 MB of room talk from ``sender`` (its lines), fanned out to the room when this returns."""
    lines = [f"{n:05d} " + "q" * 994 for n in range(3000)]
    sender.say(*lines)
    sender.say(PING)
    sender.read_until(PONG)
    return lines


def reply(client: LineClient, line: str) -> str:
    """The single line the server answers ``line`` with."""
    client.say(line)
    return client.readline()


def rename(client: LineClient, nick: str, *room: LineClient) -> None:
    """``/nick nick``; the other members of the client's room, on any node, read the notice."""
    old = client.nick
    client.say(f"/nick {nick}")
    client.expect(f"*** You are now {nick}")
    for other in room:
        other.expect(f"*** {old} is now known as {nick}")
    client.nick = nick


def move(
    client: LineClient,
    room: str,
    users: int,
    old: "tuple[LineClient, ...]" = (),
    new: "tuple[LineClient, ...]" = (),
    old_room: str = "#lobby",
) -> None:
    """``/join room``; members of the old room read the left notice, of the new one the joined notice."""
    client.say(f"/join {room}")
    shown = "#" + room.lstrip("#").lower()
    count = "1 user" if users == 1 else f"{users} users"
    client.expect(f"*** You are now in {shown} ({count})")
    for other in old:
        other.expect(f"*** {client.nick} left {old_room}")
    for other in new:
        other.expect(f"*** {client.nick} joined {shown}")


# --- IRC ---------------------------------------------------------------------------

IRC_SERVER = "gchat.irc"


class IrcClient(LineClient):
    """An IRC client over a real socket: CR LF lines out, lines read without their CR LF."""

    def send_line(self, *lines: str) -> None:
        self.send(b"".join(line.encode() + b"\r\n" for line in lines))

    def readline(self, timeout: Optional[float] = None) -> str:
        line = super().readline(timeout)
        assert line.endswith("\r"), f"an IRC line must end with CR LF: {line!r}"
        return line[:-1]

    def until(self, pattern: str) -> "list[str]":
        """Lines up to and including the first one ``pattern`` matches (re.search)."""
        regex = re.compile(pattern)
        seen = []
        while True:
            seen.append(self.readline())
            if regex.search(seen[-1]):
                return seen

    def register(self, nick: str, caps: "tuple[str, ...]" = (), password: Optional[str] = None) -> list[str]:
        """CAP (when ``caps``), PASS, NICK and USER; the welcome lines up to the MOTD's 422."""
        if caps:
            self.send_line("CAP LS 302")
            self.until(r"^:\S+ CAP \* LS :")
            self.send_line("CAP REQ :" + " ".join(caps))
            assert self.readline() == f":{IRC_SERVER} CAP * ACK :{' '.join(caps)}"
        if password is not None:
            self.send_line(f"PASS {password}")
        self.send_line(f"NICK {nick}", f"USER {nick} 0 * :{nick} here")
        if caps:
            self.send_line("CAP END")
        lines = self.until(r"^:\S+ 422 ")
        assert lines[0].startswith(f":{IRC_SERVER} 001 {nick} "), lines
        self.nick = nick
        return lines

    def sync(self) -> None:
        """Assert nothing else is pending: a PING's PONG comes right after what was sent before it."""
        self.send_line("PING :sync")
        assert self.readline() == f":{IRC_SERVER} PONG {IRC_SERVER} :sync"

    def join(self, room: str) -> "list[str]":
        """JOIN ``room``; its JOIN, topic, names and history, up to the 366."""
        self.send_line(f"JOIN {room}")
        return self.until(r"^:\S+ 366 ")


class PortTaken(AssertionError):
    """A server could not listen: another process took the port it was given first."""


class ChatServer:
    """``python -m gchat`` in a subprocess, its stderr collected line by line.

    With ``tls`` (a client context) every client it connects talks TLS.
    """

    def __init__(
        self, *flags: str, env: Optional["dict[str, str]"] = None, tls: Optional[ssl.SSLContext] = None
    ) -> None:
        self.tls = tls
        environ = {k: v for k, v in os.environ.items() if not k.startswith("GCHAT_")}
        environ["PYTHONPATH"] = str(ROOT)
        environ.update(env or {})
        self.args = [sys.executable, "-m", "gchat", "--port", "0", *flags]
        self.proc = subprocess.Popen(
            self.args,
            cwd=ROOT,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.log: list[str] = []
        self._log_changed = threading.Condition()
        self._reader = threading.Thread(target=self._collect_log, daemon=True)
        self._reader.start()
        self.clients: list[LineClient] = []
        self.irc_clients: list[IrcClient] = []
        # Where the log was when each client connected: its lines come after (see dismiss).
        self._log_at: dict[LineClient, int] = {}
        try:
            # The host is [IPv6] or has no colon; the line may be inside a JSON record.
            match = self.wait_for_log(r"gchat listening on (\[[^\]]*\]|[^\s:]+):(\d+)")
        except AssertionError:
            self.stop()
            if any("Address already in use" in line for line in self.log):
                raise PortTaken(self.log[-1]) from None
            raise
        self.host = match.group(1).strip("[]")
        self.port = int(match.group(2))
        self.pid = self.proc.pid

    def _collect_log(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            with self._log_changed:
                self.log.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._log_changed.notify_all()
        with self._log_changed:
            self._log_changed.notify_all()

    def wait_for_log(
        self, pattern: str, timeout: float = TIMEOUT, count: int = 1, since: int = 0
    ) -> "re.Match[str]":
        """The ``count``-th log line matching ``pattern`` from line ``since`` on, once it is there."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._log_changed:
            while True:
                matches = [match for match in map(regex.search, self.log[since:]) if match]
                if len(matches) >= count:
                    return matches[count - 1]
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no {count} log lines matching {pattern!r}; log: {self.log[-20:]}")
                self._log_changed.wait(min(remaining, 0.5))

    @property
    def address(self) -> "tuple[str, int]":
        return (self.host, self.port)

    def connect(self, timeout: float = TIMEOUT, source: Optional[str] = None) -> LineClient:
        """A raw connection; nothing read yet."""
        client = LineClient(self.address, timeout, self.tls, source)
        self._log_at[client] = len(self.log)
        self.clients.append(client)
        return client

    def join(self, source: Optional[str] = None) -> LineClient:
        """A client past the welcome and status lines, its nick known.

        Everyone who joined through this method before it has read its join
        notice, so all clients are at a known point in their streams.
        """
        client = self.connect(source=source)
        assert client.readline() == "Welcome to the chatroom!"
        match = re.fullmatch(r"\*\*\* You are (\S+) in #lobby\. Type /help for commands\.", client.readline())
        assert match, "bad status line"
        client.nick = match.group(1)
        for other in self.clients[:-1]:
            if other.nick and other.sock.fileno() != -1:
                other.expect(f"*** {client.nick} joined #lobby")
        return client

    def irc_address(self, tls: bool = False) -> "tuple[str, int]":
        """Where it serves IRC (``--irc-port``), or IRC over TLS (``--ircs-port``)."""
        what = "IRC over TLS" if tls else "IRC"
        match = self.wait_for_log(rf"gchat {what} listening on (\[[^\]]*\]|[^\s:]+):(\d+)")
        return match.group(1).strip("[]"), int(match.group(2))

    def irc_connect(self, tls: Optional[ssl.SSLContext] = None, source: Optional[str] = None) -> IrcClient:
        """A raw IRC connection (TLS with ``tls``); nothing sent yet."""
        client = IrcClient(self.irc_address(tls is not None), TIMEOUT, tls, source)
        self._log_at[client] = len(self.log)
        self.irc_clients.append(client)
        return client

    def irc(self, nick: str, caps: "tuple[str, ...]" = (), tls: Optional[ssl.SSLContext] = None) -> IrcClient:
        """An IRC client registered as ``nick``, its welcome read; in no room."""
        client = self.irc_connect(tls)
        client.register(nick, caps)
        return client

    def rss_kb(self) -> int:
        rss = read_rss_kb(self.pid)
        assert rss is not None, "the server process is gone"
        return rss

    def open_fds(self) -> int:
        """How many descriptors the server process has open now."""
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def reset_peak(self) -> None:
        """Start a fresh VmHWM (Linux: 5 into clear_refs), so ``peak_kb`` covers only what follows."""
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")

    def peak_kb(self) -> int:
        """The most memory the server held since ``reset_peak``: a buffer filled and freed
        between two reads of ``rss_kb`` shows here."""
        peak = read_status_kb(self.pid, "VmHWM")
        assert peak is not None, "the server process is gone"
        return peak

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = TIMEOUT) -> int:
        return self.proc.wait(timeout)

    def dismiss(self) -> None:
        """Close every client, and wait until the server has let each one go (its log line).

        For a server several tests share (``shared``): a test's clients have left the chat
        before the next test's clients come in, so none of their notices reach them.
        Clients the server never took into the chat (refused at the door) are not for it.
        """
        clients = [*self.clients, *self.irc_clients]
        self.clients, self.irc_clients = [], []
        for client in clients:
            client.close()
        for client in clients:
            # From where the log was at its connect: an earlier client may have had its port.
            since = self._log_at.pop(client)
            self.wait_for_log(rf"^{re.escape(client.peer)} .+ disconnected \(", since=since)

    def stop(self) -> None:
        for client in [*self.clients, *self.irc_clients]:
            client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(TIMEOUT)
        self._reader.join(TIMEOUT)
        assert self.proc.stderr is not None
        self.proc.stderr.close()


@contextlib.contextmanager
def servers() -> Iterator[Callable[..., ChatServer]]:
    """Start servers with the given flags; all are killed at the end."""
    started: list[ChatServer] = []

    def start(
        *flags: str, env: Optional["dict[str, str]"] = None, tls: Optional[ssl.SSLContext] = None
    ) -> ChatServer:
        server = ChatServer(*flags, env=env, tls=tls)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def start_server() -> Iterator[Callable[..., ChatServer]]:
    """Start servers with the given flags; all are killed after the test."""
    with servers() as start:
        yield start


@pytest.fixture(scope="module")
def start_module_server() -> Iterator[Callable[..., ChatServer]]:
    """Start servers the tests of a module share (through ``shared``); killed after the module."""
    with servers() as start:
        yield start


# Flags of a server tests share: what would outlive a test's clients is off (see ``shared``):
# the lobby's history, and the /join budget of an address (every test comes from 127.0.0.1).
SHARED_FLAGS = ("--history", "0", "--join-rate", "0")


def shared(server: ChatServer) -> Iterator[ChatServer]:
    """A fixture's body: ``server`` for one test, its clients dismissed after it.

    A server costs a process start (a third of a second of CPU); tests that only
    need a server of some flags share one. Once a test's clients are dismissed, the
    next test finds the chat empty: its nicks free, its rooms forgotten. What
    outlives clients does not reset: the guest numbers, the lobby's history, bans,
    topics, per-address budgets and pauses. A test that depends on those, or on
    being alone with the server, starts its own.
    """
    yield server
    server.dismiss()


@pytest.fixture
def server(start_server: Callable[..., ChatServer]) -> ChatServer:
    """A server with default settings except no rate limit (tests send fast)."""
    return start_server("--rate", "0")


# --- the store (--store) ------------------------------------------------------------


def on_disk(path: Path) -> "list[tuple[str, str]]":
    """(room, text) of every chat line in a store's file, oldest first, read by a connection of our own."""
    with sqlite3.connect(path) as db:
        chunks = db.execute("SELECT rooms.name, data, times FROM chunks JOIN rooms ON rooms.id = chunks.room")
        lines = [
            (line[0], room, line[4]) for room, data, times in chunks for line in decode_chunk(data, times)
        ]
    return [(room, text) for _, room, text in sorted(lines, key=lambda line: line[0])]


# --- the server password (--password-file) ------------------------------------------

SECRET = "correct horse"
NEEDS_PASSWORD = "*** This server needs a password: /pass SECRET"


@pytest.fixture
def password_file(tmp_path: Path) -> str:
    path = tmp_path / "password"
    path.write_text(SECRET + "\n")
    return str(path)


def knock(server: ChatServer, source: Optional[str] = None) -> LineClient:
    """A client that has read the welcome and the password request."""
    client = server.connect(source=source)
    client.expect("Welcome to the chatroom!", NEEDS_PASSWORD)
    return client


# --- metrics (--metrics-port) -------------------------------------------------------


def start_metered(
    start_server: "Callable[..., ChatServer]", *flags: str, env: "Optional[dict[str, str]]" = None
) -> "tuple[ChatServer, int]":
    """A server with metrics on a free port: (server, metrics port)."""
    return on_free_port(
        lambda port: start_server("--rate", "0", "--metrics-port", str(port), *flags, env=env)
    )


def scrape(port: int, host: str = "127.0.0.1") -> "dict[str, float]":
    """Every sample the metrics port serves now, keyed like ``name{label="value"}``."""
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=TIMEOUT) as response:
        assert response.status == 200
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{key}="{value}"' for key, value in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def disconnects(samples: "dict[str, float]", reason: str) -> float:
    return samples[f'gchat_disconnects_total{{reason="{reason}"}}']


def assert_connections_add_up(port: int, open_now: int, total: int) -> None:
    """Open and total as the test knows them, and total = open + every disconnect (README)."""
    samples = scrape(port)
    gone = sum(value for name, value in samples.items() if name.startswith("gchat_disconnects_total{"))
    assert (samples["gchat_connections_open"], samples["gchat_connections_total"]) == (open_now, total)
    assert samples["gchat_connections_total"] == samples["gchat_connections_open"] + gone


# --- operators (--oper-file) -------------------------------------------------------

OPER_PASSWORD = "oper pass phrase"


def hash_password(password: str) -> str:
    """A hash made the way an admin makes one: ``python -m gchat hash-password``, password on stdin."""
    done = subprocess.run(
        [sys.executable, "-m", "gchat", "hash-password"],
        input=password + "\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=TIMEOUT,
        check=True,
    )
    return done.stdout.strip()


@pytest.fixture(scope="module")
def oper_hash() -> str:
    return hash_password(OPER_PASSWORD)


def write_oper_file(directory: Path, oper_hash: str) -> str:
    """An --oper-file in ``directory`` with one operator, boss, whose password is OPER_PASSWORD."""
    path = directory / "opers"
    path.write_text(f"# name:hash\nboss:{oper_hash}\n")
    return str(path)


@pytest.fixture
def oper_file(tmp_path: Path, oper_hash: str) -> str:
    return write_oper_file(tmp_path, oper_hash)


def operator(server: ChatServer, source: Optional[str] = None) -> LineClient:
    client = server.join(source)
    client.say(f"/oper boss {OPER_PASSWORD}")
    client.expect("*** You are now an operator")
    return client


# --- Redis and gchat clusters -----------------------------------------------------

# One database per test; a session uses a few dozen.
REDIS_DATABASES = 1024
# What every client of a node reads when the node loses Redis, and when it has it back.
LINK_LOST = "*** cluster link lost, local only"
LINK_RESTORED = "*** cluster link restored"


def require(command: str, package: str) -> str:
    """The path of ``command``; the test fails, naming the Debian package, if it is missing.

    What tests/run.sh installs is part of the suite: its absence is a failure, never a skip.
    """
    path = shutil.which(command)
    if path is None:
        pytest.fail(
            f"{command} is not on PATH (Debian: apt-get install {package}; tests/run.sh installs it)",
            pytrace=False,
        )
    return path


def free_port() -> int:
    """A port nothing listens on at this moment (another process may take it; callers cope)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def on_free_port(start: "Callable[[int], ChatServerT]") -> "tuple[ChatServerT, int]":
    """``start(port)`` on a free port, and the port: on a new one if another process took it first."""
    for _ in range(5):
        port = free_port()
        with contextlib.suppress(PortTaken):
            return start(port), port
    raise AssertionError("five free ports in a row were taken before the server could listen on them")


def listening_ports(pid: int) -> "set[int]":
    """The TCP ports process ``pid`` listens on, from its descriptors and /proc/net (none once it is gone)."""
    inodes = set()
    with contextlib.suppress(FileNotFoundError):  # it exited meanwhile
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


class RedisServer:
    """A real ``redis-server`` on 127.0.0.1, in a directory of its own, persisting nothing.

    After ``stop`` it can ``start`` again on the same port: empty, as a Redis
    without persistence comes back after a crash, which is what nodes must survive.
    """

    def __init__(self, directory: Path, *config: str) -> None:
        """``config``: more redis-server arguments (``--client-output-buffer-limit``, ...)."""
        self.binary = require("redis-server", "redis-server")
        self.directory = directory
        self.config = config
        self.logfile = directory / "redis.log"
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self._databases = itertools.count()
        # free_port() races with every other process on the machine: retry on a new port.
        for _ in range(5):
            self.port = free_port()
            if self.start():
                return
        raise AssertionError(f"redis-server would not start; log: {self.log_tail()}")

    def start(self) -> bool:
        """Start on ``self.port``; False if it exited instead (the port was taken)."""
        assert self.proc is None or self.proc.poll() is not None, "redis-server is already running"
        seen = self.logfile.stat().st_size if self.logfile.exists() else 0
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--databases", str(REDIS_DATABASES),
                "--dir", str(self.directory),
                "--logfile", str(self.logfile),
                *self.config,
            ],
            cwd=self.directory,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        # Our own log says when it listens: a PING alone might be answered by another
        # redis-server that took the port first.
        deadline = time.monotonic() + TIMEOUT
        while True:
            if self.logfile.exists() and b"Ready to accept connections" in self.logfile.read_bytes()[seen:]:
                return True
            if self.proc.poll() is not None:
                return False
            if time.monotonic() > deadline:
                raise AssertionError(f"redis-server not ready in {TIMEOUT} s; log: {self.log_tail()}")
            time.sleep(0.02)  # polling a file: there is no event to wait on

    def stop(self, signum: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signum)
            self.proc.wait(TIMEOUT)

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def fresh_url(self) -> str:
        """A database no one has used in this session: a cluster of its own."""
        db = next(self._databases)
        assert db < REDIS_DATABASES, "out of Redis databases: raise REDIS_DATABASES"
        return self.url(db)

    def log_tail(self) -> str:
        if not self.logfile.exists():
            return "(no log)"
        return self.logfile.read_text("utf-8", "replace")[-2000:]


class Cluster:
    """gchat nodes on one Redis database, and clients joined across them.

    ``join`` keeps every client's stream at a known point, as ``ChatServer.join``
    does on one server, but across nodes: each earlier client of any running
    node reads the newcomer's join notice, which proves the join went round
    through Redis.
    """

    def __init__(self, start_server: Callable[..., ChatServer], url: str, *flags: str) -> None:
        self.url = url
        self.flags = ("--rate", "0", *flags)
        self._start_server = start_server
        self.nodes: list[ChatServer] = []

    def start(self, count: int, *flags: str) -> "list[ChatServer]":
        """``count`` nodes with the cluster's flags and ``flags``, started side by side."""
        threads = []
        nodes: list[Optional[ChatServer]] = [None] * count
        errors: list[BaseException] = []

        def one(index: int) -> None:
            try:
                nodes[index] = self._start_server("--bus", self.url, *self.flags, *flags)
            except BaseException as err:  # handed to the test's thread below
                errors.append(err)

        for index in range(count):
            threads.append(threading.Thread(target=one, args=(index,), daemon=True))
            threads[-1].start()
        for thread in threads:
            thread.join(2 * TIMEOUT)
        if errors:
            raise errors[0]
        started = [node for node in nodes if node is not None]
        assert len(started) == count, "a node did not start in time"
        self.nodes.extend(started)
        return started

    def node(self, *flags: str) -> ChatServer:
        return self.start(1, *flags)[0]

    def add(self, node: ChatServer) -> ChatServer:
        """A node started some other way (e.g. with GCHAT_BUS) that is part of this cluster."""
        self.nodes.append(node)
        return node

    def members(self) -> "list[LineClient]":
        """Every client still connected to a running node."""
        return [
            client
            for node in self.nodes
            if node.proc.poll() is None
            for client in node.clients
            if client.nick and client.sock.fileno() != -1
        ]

    def join(self, node: ChatServer, history: "tuple[str, ...]" = ()) -> LineClient:
        """A client of ``node`` past its welcome, status and lobby ``history`` lines.

        Every earlier member (all assumed in ``#lobby``) reads the join notice.
        """
        others = self.members()
        client = node.connect()
        assert client.readline() == "Welcome to the chatroom!"
        match = re.fullmatch(r"\*\*\* You are (\S+) in #lobby\. Type /help for commands\.", client.readline())
        assert match, "bad status line"
        client.nick = match.group(1)
        client.expect(*history)
        for other in others:
            other.expect(f"*** {client.nick} joined #lobby")
        return client


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the whole session; tests keep apart by database."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server for one test alone: for tests that stop and restart it."""
    server = RedisServer(tmp_path)
    yield server
    server.stop()


# The persistence README "Several nodes" asks of a deployment's Redis: every write appended to a
# file, fsynced once a second.
REDIS_AOF = ("--appendonly", "yes", "--appendfsync", "everysec")


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server for one test alone, with AOF on: a restart gives back what it had."""
    server = RedisServer(tmp_path, *REDIS_AOF)
    yield server
    server.stop()


@pytest.fixture
def bus_url(redis_server: RedisServer) -> str:
    """A fresh database: a cluster no other test shares."""
    return redis_server.fresh_url()


@pytest.fixture
def cluster(start_server: Callable[..., ChatServer], bus_url: str) -> Cluster:
    """An empty cluster on a fresh database; ``cluster.start(n)`` adds nodes."""
    return Cluster(start_server, bus_url)


@pytest.fixture(scope="session")
def chromium() -> "Iterator[object]":
    """Debian's Chromium driven by Playwright, one for the session (each test opens its own contexts).

    No browser can be downloaded here, so Playwright launches the system's by its path; both
    are part of the suite (tests/run.sh, tox): without either the test fails, never skips.
    """
    path = require("chromium", "chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed (pip install playwright; tox installs it)", pytrace=False)
    with sync_playwright() as playwright:
        # Chromium's sandbox cannot start as root (a CI container).
        args = ["--no-sandbox"] if os.geteuid() == 0 else []
        browser = playwright.chromium.launch(executable_path=path, args=args)
        try:
            yield browser
        finally:
            browser.close()


# --- The web front-end (--web-port) ------------------------------------------------

# What the server logs at start when --web-port is on; the URL is the page's.
WEB_LISTENING = r"gchat web page on (https?)://(\[[^\]]*\]|[^\s:/]+):(\d+)/"


def start_web(start: Callable[..., ChatServer], *flags: str, **options: object) -> ChatServer:
    """A server with --web-port on a free port (0 turns the page off), and ``flags``."""
    server, _ = on_free_port(lambda port: start("--rate", "0", "--web-port", str(port), *flags, **options))
    return server


def web_url(server: ChatServer, scheme: str = "http") -> str:
    """The URL of ``server``'s page (``ws`` for its socket), from its start-up log line."""
    match = server.wait_for_log(WEB_LISTENING)
    secure = "s" if match.group(1) == "https" else ""
    return f"{scheme}{secure}://{match.group(2)}:{match.group(3)}"


class SerialTls:
    """A client's TLS connection whose OpenSSL calls never overlap, for the ``websockets`` sync client.

    That client reads in a thread of its own while the caller's thread
    writes, each straight into the one OpenSSL connection, which must never
    be used by two threads at once. What that cost (test_wss_with_certfile,
    about one connection in 300 under load): a TLS 1.3 server sends its
    session tickets just after the handshake, while the client sends its
    upgrade request. OpenSSL takes a ticket in a little handshake of its
    own, which buffers the connection's output and frees that buffer
    unsent at its end; a request written by the other thread meanwhile
    went into the buffer, and the server never saw it.

    Here each OpenSSL call holds a lock, and none waits for the network
    while holding it: the socket is non-blocking, and the wait for input
    (or room) is outside the lock. The wait on the descriptor is sound
    because CPython leaves read-ahead off and a read takes a whole record
    (``websockets`` asks for 64 KiB, a record holds 16 at most), so nothing
    of the server's is left inside OpenSSL when it asks for more.
    """

    def __init__(self, sock: ssl.SSLSocket) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._lock = threading.Lock()
        self._timeout: Optional[float] = None

    def recv(self, size: int) -> bytes:
        while True:
            with self._lock:
                try:
                    return self._sock.recv(size)
                except (ssl.SSLWantReadError, BlockingIOError):  # the latter: plain once shut down
                    write = False
                except ssl.SSLWantWriteError:
                    write = True
            self._wait(write)

    def sendall(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            with self._lock:
                try:
                    view = view[self._sock.send(view) :]
                    continue
                except ssl.SSLWantReadError:
                    write = False
                except (ssl.SSLWantWriteError, BlockingIOError):
                    write = True
            self._wait(write)

    def settimeout(self, timeout: Optional[float]) -> None:
        # The socket stays non-blocking: the timeout bounds the waits here.
        self._timeout = timeout

    def shutdown(self, how: int) -> None:
        with self._lock:
            self._sock.shutdown(how)

    def close(self) -> None:
        """Close, waking a reader that waits for input (a close alone would not)."""
        with self._lock:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(self._sock, socket.SHUT_RDWR)
            self._sock.close()

    def _wait(self, write: bool) -> None:
        sock = [self._sock]
        readable, writable, _ = select.select([] if write else sock, sock if write else [], [], self._timeout)
        if not (readable or writable):
            raise TimeoutError("timed out")

    def __getattr__(self, name: str) -> object:
        # fileno, getpeername, getsockname...: the socket's own.
        return getattr(self._sock, name)


class SerialTlsContext:
    """What ``websockets`` takes as ``ssl``: ``context``'s connections, as ``SerialTls``."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context

    def wrap_socket(self, sock: socket.socket, server_hostname: Optional[str] = None) -> SerialTls:
        return SerialTls(self.context.wrap_socket(sock, server_hostname=server_hostname))


class WebClient:
    """A WebSocket client of the page's JSON protocol (the ``websockets`` library), reads bounded.

    With ``ssl`` (a client context) it talks TLS through ``SerialTls``.
    """

    def __init__(
        self,
        server: ChatServer,
        path: str = "/ws",
        timeout: float = TIMEOUT,
        ssl: Optional[ssl.SSLContext] = None,
        **options: object,
    ) -> None:
        from websockets.sync.client import connect

        self.timeout = timeout
        self._exit = contextlib.ExitStack()
        url = web_url(server, "ws") + path
        if ssl is not None:
            options["ssl"] = SerialTlsContext(ssl)
        self.ws = self._exit.enter_context(connect(url, open_timeout=timeout, **options))
        self.nick = ""

    def send(self, **event: object) -> None:
        self.ws.send(json.dumps(event))

    def next(self, timeout: Optional[float] = None) -> "dict[str, object]":
        try:
            event: dict[str, object] = json.loads(self.ws.recv(timeout=timeout or self.timeout))
        except TimeoutError:
            raise AssertionError("timed out waiting for an event from the server") from None
        return event

    def until(self, kind: str, **fields: object) -> "dict[str, object]":
        """The first event of type ``kind`` with ``fields``; what comes before it is passed over."""
        deadline = time.monotonic() + self.timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {kind} event with {fields} in time")
            event = self.next(remaining)
            if event["type"] == kind and all(event.get(k) == v for k, v in fields.items()):
                return event

    def arrive(self) -> "dict[str, object]":
        """The arrival in #lobby every new web client is told first; its nick is kept."""
        event = self.next()
        assert event["type"] == "arrived", event
        assert event["room"] == "#lobby"
        self.nick = str(event["nick"])
        return event

    def ping(self) -> None:
        """Everything the server had for this client is read when the pong comes."""
        self.send(type="ping", id="sync")
        self.until("pong", id="sync")

    def close(self) -> None:
        self._exit.close()
