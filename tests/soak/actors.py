"""The soak's clients: each kind is a thread that loops until told to stop.

Every socket operation has a deadline, so a server that stops answering turns
into a counted client error, never a hung soak. Anything a client did not
expect is recorded in ``Stats.errors`` (which fails the run), and every whole
line any checked client receives is checked for what sanitizing must have
removed, so the garbage senders' bytes can be seen not to reach anyone.

* ``Chatter``: stays in one room the whole run, sends numbered lines at a
  steady rate and reads promptly; at the end it must have received every other
  chatter's lines of its room exactly once, in order (the delivery promise).
* ``Joiner``: connects, changes nick, joins rooms, asks ``/who``, talks, then
  ``/quit``s or just closes; again and again.
* ``SlowReader``: joins the flood room with a tiny receive buffer and stops
  reading (or trickles), until the server cuts it as a slow consumer.
* ``Killer``: sends half a line and resets the connection (SO_LINGER 0), or
  closes it; on a TLS port also stalls or breaks handshakes.
* ``GarbageSender``: random bytes, invalid UTF-8, telnet IAC, ANSI escapes and
  over-long lines, then checks that its connection still works.
"""

from __future__ import annotations

import random
import re
import socket
import ssl
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

# Every read and send: generous, since other work shares the machine's two cores.
TIMEOUT = 15.0
WELCOME = "Welcome to the chatroom!"
STATUS = re.compile(r"\*\*\* You are (\S+) in #lobby\. Type /help for commands\.")
# A command with a fixed reply and no effect: its reply proves everything before it arrived.
PING = "/ping"
PONG = "!!! unknown command: /ping (try /help)"
NEEDS_PASSWORD = "*** This server needs a password: /pass SECRET"
# What sanitizing removes: C0 controls but TAB, DEL, C1 (ESC among the C0 ones).
CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
# Text of a chatter's lines, varied in length and script; TAB and trailing spaces must survive.
ALPHABET = "abcdefghij klmnopqrstuvwxyz 0123456789 ÀéîõüЖЯ€☃😀\t-_=+.,;:!? "
FLOOD_ROOM = "#flood"


class ClientError(Exception):
    """The server broke the protocol, or did not answer in time."""


class Stats:
    """Counters and errors shared by all clients of one server, behind one lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.errors: list[str] = []

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self.counts[name] += amount

    def peak(self, name: str, value: int) -> None:
        """Keep the largest ``value`` seen under ``name``."""
        with self._lock:
            self.counts[name] = max(self.counts[name], value)

    def error(self, message: str) -> None:
        with self._lock:
            self.counts["client errors"] += 1
            if len(self.errors) < 50:  # enough to diagnose; a flood of one error says nothing more
                self.errors.append(message)


@dataclass
class Target:
    """One server under soak, and everything its clients share."""

    name: str
    host: str
    port: int
    tls: ssl.SSLContext | None
    max_line: int
    stop: threading.Event
    stats: Stats = field(default_factory=Stats)
    # The server's password (--password-file), which every client but a guesser knows.
    password: str | None = None


class Conn:
    """One client connection that reads whole lines, every wait bounded.

    ``check`` (on by default) records any received line that is not clean
    UTF-8 free of control characters: the server must never pass them on.
    """

    def __init__(
        self,
        target: Target,
        rcvbuf: int | None = None,
        tls: bool = True,
        check: bool = True,
        source: str | None = None,
    ) -> None:
        self.target = target
        self.check = check
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:  # before connect, so the window it advertises is small from the start
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        raw.settimeout(TIMEOUT)
        try:
            if source is not None:  # another address of the loopback range: another "host"
                raw.bind((source, 0))
            raw.connect((target.host, target.port))
            if tls and target.tls is not None:
                raw = target.tls.wrap_socket(raw, server_hostname=target.host)
        except BaseException:
            raw.close()
            raise
        self.sock: socket.socket = raw
        self.buffer = b""
        self.pending: list[str] = []
        self.eof = False
        target.stats.add("connections")
        if tls and target.tls is not None:
            target.stats.add("tls clients")

    def send(self, data: bytes) -> None:
        self.sock.settimeout(TIMEOUT)
        self.sock.sendall(data)

    def say(self, *lines: str) -> None:
        self.send(b"".join(line.encode() + b"\n" for line in lines))

    def fill(self, timeout: float) -> bool:
        """Read one chunk (at most ``timeout`` seconds); False if nothing came in time."""
        self.sock.settimeout(max(timeout, 0.001))
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return False
        if not chunk:
            self.eof = True
        self.buffer += chunk
        return bool(chunk)

    def lines(self) -> list[str]:
        """Every whole line received and not yet taken, checked; they are taken now."""
        if b"\n" in self.buffer:
            *whole, self.buffer = self.buffer.split(b"\n")
            self.pending.extend(self._decode(raw) for raw in whole)
        taken, self.pending = self.pending, []
        return taken

    def _decode(self, raw: bytes) -> str:
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            self.target.stats.error(f"not UTF-8 from the server: {raw[:120]!r}")
            return raw.decode("utf-8", "replace")
        if self.check and CONTROL.search(line):
            self.target.stats.error(f"a control character reached a client: {line[:120]!r}")
        return line

    def read_until(
        self, match: Callable[[str], bool], what: str, seen: Callable[[str], None] | None = None
    ) -> str:
        """Lines up to the first that ``match``es, each earlier one handed to ``seen``."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            lines = self.lines()
            for index, line in enumerate(lines):
                if match(line):
                    self.pending = lines[index + 1 :]  # for the next read
                    return line
                if seen is not None:
                    seen(line)
            if self.eof:
                raise ClientError(f"connection closed while waiting for {what}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ClientError(f"no {what} within {TIMEOUT:g} s; buffered {self.buffer[-120:]!r}")
            self.fill(remaining)

    def expect(self, line: str, seen: Callable[[str], None] | None = None) -> str:
        return self.read_until(lambda got: got == line, repr(line), seen)

    def greet(self) -> str:
        """Read the welcome and status lines (giving the password if asked); the guest nick."""
        first = self.read_until(lambda _: True, "the welcome line")
        if first != WELCOME:
            raise ClientError(f"first line {first!r}")
        if self.target.password is not None:
            self.expect(NEEDS_PASSWORD)
            self.say(f"/pass {self.target.password}")
        status = self.read_until(lambda _: True, "the status line")
        match = STATUS.fullmatch(status)
        if match is None:
            raise ClientError(f"status line {status!r}")
        return match.group(1)

    def nick(self, name: str) -> None:
        self.say(f"/nick {name}")
        self.expect(f"*** You are now {name}")

    def join(self, room: str, seen: Callable[[str], None] | None = None) -> None:
        self.say(f"/join {room}")
        self.read_until(lambda line: line.startswith(f"*** You are now in {room} ("), f"/join {room}", seen)

    def ping(self, seen: Callable[[str], None] | None = None) -> None:
        self.say(PING)
        self.expect(PONG, seen)

    def read_to_eof(self, timeout: float = TIMEOUT) -> None:
        """Read and drop until the server closes; ClientError if it does not in time."""
        deadline = time.monotonic() + timeout
        try:
            while not self.eof:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ClientError(f"the server did not close the connection within {timeout:g} s")
                self.fill(remaining)
                self.buffer = b""
        except (ConnectionResetError, ssl.SSLError):
            self.eof = True

    def reset(self) -> None:
        self.reset_socket(self.sock)

    @staticmethod
    def reset_socket(sock: socket.socket) -> None:
        """Close with SO_LINGER 0: the kernel sends a reset, unsent and unread data are dropped."""
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()

    def close(self) -> None:
        self.sock.close()


class Actor(threading.Thread):
    """A client kind's loop: cycles until the stop event, errors counted, never raised."""

    kind = "actor"

    def __init__(self, target: Target, index: int, seed: int) -> None:
        super().__init__(name=f"{target.name}-{self.kind}-{index}", daemon=True)
        self.target = target
        self.stats = target.stats
        self.index = index
        self.rng = random.Random(f"{seed}-{target.name}-{self.kind}-{index}")
        self.cycles = 0

    def run(self) -> None:
        while not self.target.stop.is_set():
            self.cycles += 1
            try:
                self.cycle()
            except (OSError, ClientError) as err:
                self.stats.error(f"{self.name} cycle {self.cycles}: {type(err).__name__}: {err}")
                self.target.stop.wait(1.0)
            except Exception as err:  # a bug here must still end in the report, not a dead thread
                self.stats.error(f"{self.name} crashed: {type(err).__name__}: {err}")
                return
            self.target.stop.wait(self.rng.uniform(*self.pause))

    pause = (0.1, 0.5)

    def cycle(self) -> None:
        raise NotImplementedError

    def unique_nick(self, letter: str) -> str:
        """Never in use: the server, its kind, the thread and the cycle are in it."""
        return f"{letter}{self.target.name[0]}{self.index}x{self.cycles}"


def chatter_text(sender: str, seq: int, size: int) -> str:
    """Line ``seq`` of ``sender``: anyone can recompute it, so damage of any kind shows."""
    length = size // 2 + (seq * 7919 + len(sender) * 104729) % (size // 2 + 1)
    start = (seq * 31 + sum(map(ord, sender))) % len(ALPHABET)
    filler = (ALPHABET * (length // len(ALPHABET) + 2))[start : start + length]
    return f"soak:{sender}:{seq}:{filler}"


def chatter_end(sender: str, count: int) -> str:
    return f"soak:{sender}:{count}:END"


class Chatter(threading.Thread):
    """A member that stays in its room the whole run, and whose every line is accounted for.

    Sends at ``rate`` lines/s (steady, no catch-up bursts beyond one second
    behind) and reads between sends, so the server never has a backlog for it
    worth mentioning. After the stop it sends an END line carrying its count
    and reads until every peer's END has come: by the per-sender order, every
    line of that peer must then be here.
    """

    def __init__(
        self,
        target: Target,
        room: str,
        nick: str,
        peers: list[str],
        rate: float,
        size: int,
        start: threading.Event,
        release: threading.Event,
    ) -> None:
        super().__init__(name=f"{target.name}-chatter-{nick}", daemon=True)
        self.target = target
        self.stats = target.stats
        self.room = room
        self.nick = nick
        self.peers = [peer for peer in peers if peer != nick]
        self.everyone = set(peers)
        self.rate = rate
        self.size = size
        self.start_sending = start
        self.release = release
        self.ready = threading.Event()
        self.failed = threading.Event()
        self.sent = 0
        self.received = 0
        self.expected_next = dict.fromkeys(self.peers, 0)
        self.done: dict[str, int] = {}
        self.quits: Counter[str] = Counter()  # quit notices in the room, by reason
        self.problems: list[str] = []
        self.conn: Conn | None = None
        self.finished_at = 0.0

    def problem(self, message: str) -> None:
        if len(self.problems) < 20:
            self.problems.append(message)

    def setup(self) -> None:
        conn = self.conn = Conn(self.target)
        conn.greet()
        conn.nick(self.nick)
        conn.join(self.room)

    def run(self) -> None:
        try:
            self.setup()
        except (OSError, ClientError) as err:
            self.problem(f"setup: {type(err).__name__}: {err}")
            self.failed.set()
            self.ready.set()
            return
        self.ready.set()
        try:
            self.chat()
        except (OSError, ClientError) as err:
            self.problem(f"{type(err).__name__}: {err}")
            self.failed.set()
        finally:
            if self.conn is not None:
                self.conn.close()

    def chat(self) -> None:
        assert self.conn is not None
        conn = self.conn
        if not self.start_sending.wait(120):
            raise ClientError("the soak never started")
        interval = 1.0 / self.rate
        next_send = time.monotonic() + random.uniform(0, interval)  # spread senders out
        while not self.target.stop.is_set():
            now = time.monotonic()
            if now >= next_send:
                conn.say(chatter_text(self.nick, self.sent, self.size))
                self.sent += 1
                next_send = max(next_send + interval, now - 1.0)
            else:
                self.pump(min(next_send - now, 0.5))
        # End: our count, then everyone else's END (their lines all came before it).
        conn.say(chatter_end(self.nick, self.sent))
        deadline = time.monotonic() + 60
        while len(self.done) < len(self.peers):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                missing = sorted(set(self.peers) - set(self.done))
                raise ClientError(f"no END from {missing} within 60 s of the stop")
            self.pump(min(remaining, 0.5))
        conn.ping(self.process)  # anything after an END (a duplicate) shows up before the reply
        self.finished_at = time.monotonic()
        # Stay a prompt reader until every other client has gone, then leave.
        while not self.release.wait(0.2):
            self.pump(0.0)

    def pump(self, timeout: float) -> None:
        assert self.conn is not None
        self.conn.fill(timeout)
        for line in self.conn.lines():
            self.process(line)
        if self.conn.eof:
            raise ClientError("the server closed a chatter's connection")

    def process(self, line: str) -> None:
        if line.startswith("<"):
            nick, _, text = line[1:].partition("> ")
            if nick in self.expected_next:
                self.check_line(nick, text)
            elif text.startswith("soak:"):
                self.problem(f"a chatter line from outside {self.room}: {line[:100]!r}")
        elif line.startswith("*** ") and " quit (" in line and line.endswith(")"):
            # Once released, chatters leave, and their quit notices may still be read.
            if line.split()[1] in self.everyone and not self.release.is_set():
                self.problem(f"a chatter was disconnected: {line!r}")
            self.quits[line.split(" quit (", 1)[1][:-1]] += 1

    def check_line(self, sender: str, text: str) -> None:
        if sender in self.done:
            self.problem(f"{sender}: a line after its END: {text[:60]!r}")
            return
        parts = text.split(":", 3)
        if len(parts) != 4 or parts[0] != "soak" or parts[1] != sender or not parts[2].isdigit():
            self.problem(f"{sender}: malformed line {text[:100]!r}")
            return
        seq = int(parts[2])
        expected = self.expected_next[sender]
        if parts[3] == "END":
            if seq != expected:
                self.problem(f"{sender}: END says {seq} lines, {expected} came")
            self.done[sender] = seq
            return
        if seq != expected:
            self.problem(f"{sender}: line {seq} where {expected} was due (lost, duplicated or reordered)")
        elif text != chatter_text(sender, seq, self.size):
            self.problem(f"{sender}: line {seq} damaged: {text[:100]!r}")
        self.expected_next[sender] = seq + 1
        self.received += 1


class Joiner(Actor):
    """Connects, renames itself, wanders between rooms, talks, leaves one way or another."""

    kind = "joiner"
    pause = (0.05, 0.4)

    def __init__(self, target: Target, index: int, seed: int, rooms: dict[str, list[str]]) -> None:
        super().__init__(target, index, seed)
        self.rooms = rooms  # room -> the chatters in it (who must always be there)

    def cycle(self) -> None:
        conn = Conn(self.target)
        try:
            conn.greet()
            conn.nick(self.unique_nick("j"))
            room = "#lobby"
            for _ in range(self.rng.randint(1, 3)):
                room = self.rng.choice([r for r in [*self.rooms, "#side0", "#side1", "#side2"] if r != room])
                conn.join(room)
                self.stats.add("joins")
                self.visit(conn, room)
            if self.rng.random() < 0.3:
                conn.nick(self.unique_nick("k"))
            ending = self.rng.random()
            if ending < 0.4:
                conn.say("/quit soak over")
                conn.expect("*** Bye!")
                conn.read_to_eof()
                self.stats.add("quits")
            elif ending < 0.7:
                conn.reset()
                self.stats.add("resets")
            else:
                self.stats.add("closes")
        finally:
            conn.close()

    def visit(self, conn: Conn, room: str) -> None:
        """Do a few things in ``room``, then make sure the server answered all of them."""
        chatters = self.rooms.get(room, [])
        errors: list[str] = []

        def seen(line: str) -> None:
            if line.startswith("!!! "):
                errors.append(line)

        for _ in range(self.rng.randint(1, 4)):
            action = self.rng.random()
            if action < 0.4:
                conn.say(f"joiner {self.name} says hello in {room}")
            elif action < 0.55:
                conn.say("/me waves")
            elif action < 0.7 and chatters:
                conn.say(f"/msg {self.rng.choice(chatters)} hi from a joiner")
            elif action < 0.8:
                conn.say("/rooms")
            else:
                conn.say("/who")
                who = conn.read_until(lambda line: line.startswith(f"*** users in {room} ("), "/who", seen)
                listed = set(who.split(": ", 1)[1].split(", "))
                if not set(chatters) <= listed:
                    errors.append(f"/who in {room} misses chatters {sorted(set(chatters) - listed)}")
        conn.ping(seen)
        if errors:
            raise ClientError(f"in {room}: {errors[:3]}")


class SlowReader(Actor):
    """Joins the flood room with a 4 KiB receive buffer and does not keep up, until cut off."""

    kind = "slow"
    pause = (0.5, 2.0)

    def cycle(self) -> None:
        conn = Conn(self.target, rcvbuf=4096, check=False)  # a cut may leave half a line behind
        try:
            conn.greet()
            conn.nick(self.unique_nick("s"))
            if self.rng.random() < 0.5:  # pass through a chatter room on the way: notices there
                conn.join(f"#soak{self.rng.randint(0, 2)}")
            conn.join(FLOOD_ROOM)
            # Read nothing, or trickle 2.5 KiB/s, far below what the room sends, for long enough
            # to fill the kernel's buffers (the server's send buffer grows to 4 MiB on loopback)
            # and then --max-backlog; then drain: a connection the server cut ends in EOF.
            trickle = self.rng.random() < 0.5
            deadline = time.monotonic() + self.rng.uniform(15, 30)
            while time.monotonic() < deadline and not self.target.stop.is_set():
                if trickle:
                    conn.sock.settimeout(TIMEOUT)
                    try:
                        conn.eof = not conn.sock.recv(256)
                    except (ConnectionResetError, ssl.SSLError):
                        conn.eof = True
                    if conn.eof:
                        break
                self.target.stop.wait(0.1)
            if self.target.stop.is_set():
                self.stats.add("slow readers at the stop")
                return
            conn.read_to_eof(timeout=10.0)
            self.stats.add("slow readers cut")
        except ClientError:
            self.stats.add("slow readers not cut")
        finally:
            conn.reset()


class Killer(Actor):
    """Dies in the middle of things: half a line then a reset or a close; broken TLS handshakes."""

    kind = "killer"
    pause = (0.1, 0.4)

    def __init__(self, target: Target, index: int, seed: int, rooms: list[str]) -> None:
        super().__init__(target, index, seed)
        self.rooms = rooms

    def cycle(self) -> None:
        way = self.rng.random()
        if self.target.tls is not None and way < 0.2:
            self.break_handshake()
            return
        conn = Conn(self.target)
        if way < 0.3:  # before even reading the welcome
            conn.reset()
            self.stats.add("kills")
            return
        try:
            conn.greet()
            if self.rng.random() < 0.6:
                conn.join(self.rng.choice(self.rooms))
            # Half a line, cut inside a UTF-8 character.
            conn.send(
                b"killed mid-line " + "x\u20ac".encode() * self.rng.randint(1, 50) + "\u20ac".encode()[:2]
            )
            time.sleep(self.rng.uniform(0, 0.05))
        except BaseException:
            conn.close()
            raise
        if self.rng.random() < 0.7:
            conn.reset()
            self.stats.add("kills")
        else:  # a clean close: the half line is then delivered as a line
            conn.close()
            self.stats.add("half lines closed")

    def break_handshake(self) -> None:
        """A plain-TCP client on the TLS port, one that never handshakes, or one cut mid-handshake."""
        conn = Conn(self.target, tls=False, check=False)
        raw = conn.sock
        way = self.rng.random()
        try:
            if way < 0.4:
                raw.sendall(b"hello, I speak plain text\n")
                conn.read_to_eof()
                self.stats.add("plain clients on the TLS port")
            elif way < 0.6:
                conn.read_to_eof(timeout=TIMEOUT + 10)  # the server's --handshake-timeout ends it
                self.stats.add("stalled handshakes")
            else:
                # The first bytes of a TLS record header (handshake, TLS 1.0), then a reset.
                raw.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
                time.sleep(0.05)
                self.stats.add("kills")
                self.stats.add("handshakes cut")
        finally:
            conn.reset()


class GarbageSender(Actor):
    """Sends everything sanitizing exists for, then proves its connection still works."""

    kind = "garbage"
    pause = (0.3, 1.0)

    def __init__(self, target: Target, index: int, seed: int, rooms: list[str]) -> None:
        super().__init__(target, index, seed)
        self.rooms = rooms

    def garbage(self) -> tuple[bytes, bool]:
        """One garbage line (LF included) and whether it is over the line limit."""
        kind = self.rng.randrange(6)
        if kind == 0:  # random bytes; the leading g keeps it from being a command
            body = bytes(b for b in self.rng.randbytes(self.rng.randint(1, 300)) if b != 0x0A)
            return b"g" + body + b"\n", False
        if kind == 1:  # invalid UTF-8: lone continuation, overlong, surrogate, truncated
            return b"bad utf8 \x80 \xc0\xaf \xed\xa0\x80 \xf0\x9f\x98 \xff\xfe end\n", False
        if kind == 2:  # telnet: WILL ECHO, DO SGA, a subnegotiation with its payload, IAC IAC
            return (
                b"tel\xff\xfb\x01net\xff\xfd\x03 \xff\xfa\x18\x00xterm\xff\xf0 \xff\xff \xff\xf4iac\n",
                False,
            )
        if kind == 3:  # ANSI/VT: colour, clear screen, OSC title, cursor moves, C1 CSI
            return (
                b"\x1b[31mred\x1b[0m \x1b[2J\x1b[H \x1b]0;owned\x07 \x1b]8;;x\x1b\\ \xc2\x9b2J"
                + b" \x1b7\x07\r\n",
                False,
            )
        if kind == 4:  # an escape that hides a command: ESC[0m/ping is /ping after sanitizing
            return b"\x1b[0m/ping\n", False
        return b"L" * self.rng.randint(self.target.max_line + 1, self.target.max_line * 4) + b"\n", True

    def cycle(self) -> None:
        conn = Conn(self.target)
        try:
            conn.greet()
            if self.rng.random() < 0.7:
                conn.join(self.rng.choice(self.rooms))
            lines, too_long, pings = [], 0, 0
            for _ in range(self.rng.randint(3, 12)):
                line, over = self.garbage()
                lines.append(line)
                too_long += over
                pings += line == b"\x1b[0m/ping\n"
            conn.send(b"".join(lines) + PING.encode() + b"\n")
            self.stats.add("garbage lines", len(lines))
            self.stats.add("over-long lines", too_long)
            answers = Counter[str]()

            def seen(line: str) -> None:
                if line.startswith("!!! line too long (max "):
                    answers["too long"] += 1

            # Replies come in order: the escaped /pings' first, then ours, the last.
            for _ in range(pings + 1):
                conn.expect(PONG, seen)
            if answers["too long"] != too_long:
                raise ClientError(f"{too_long} over-long lines sent, {answers['too long']} answered")
        finally:
            conn.close()
