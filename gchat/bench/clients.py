"""Protocol adapters: how a connection becomes a ready receiver or sender, and how lines are framed.

Everything else in the benchmark is protocol-blind: it counts markers in the
raw bytes received (a Redis push frame and an IRC PRIVMSG carry the payload at
the end of one line ending in CRLF, so the same counting and parsing work on
all) and asks ``frame`` for the bytes that send a batch of payloads. ``index``
names a connection (IRC nicks); ``pings``: its receivers must answer PINGs.
"""

import socket
import time
from typing import Callable, Optional, Union

from gevent import socket as gsocket

from gchat.bench.irc import IrcRefused, Registration
from gchat.bench.options import Options

RECV_SIZE = 262144
# A handshake that has not finished within this many bytes never will.
_HANDSHAKE_LIMIT = 1 << 20


class ProtocolError(Exception):
    """The server did not answer as the protocol says; reported as such, never a traceback."""


def connect(host: str, port: int, deadline: float, rcvbuf: Optional[int] = None) -> gsocket.socket:
    """A connected socket, or OSError; ``rcvbuf`` is set before connecting, when it still counts."""
    timeout = max(deadline - time.monotonic(), 0.001)
    if rcvbuf is None:
        sock = gsocket.create_connection((host, port), timeout=timeout)
    else:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = gsocket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(timeout)
        try:
            sock.connect((host, port))
        except BaseException:
            sock.close()
            raise
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


# When a handshake must give up (monotonic seconds); asked again after each
# wait, so that it can move while the server makes progress with others.
Deadline = Callable[[], float]


def read_until(
    sock: gsocket.socket,
    data: bytes,
    find_end: Callable[[bytes], int],
    deadline: Deadline,
    what: str,
    refusal: bytes,
) -> bytes:
    """Read until ``find_end(data)`` gives the offset where the handshake ends; return what follows.

    A first line starting with ``refusal`` (gchat's ``!!! server full``, a
    Redis error) ends the wait at once, with the server's own words.
    """
    while True:
        first = data.split(b"\n", 1)[0]
        if first != data and first.startswith(refusal):
            raise ProtocolError(f"the server said {first.rstrip()!r} while we waited for {what}")
        end = find_end(data)
        if end >= 0:
            return data[end:]
        remaining = deadline() - time.monotonic()
        if remaining <= 0 or len(data) > _HANDSHAKE_LIMIT:
            raise ProtocolError(f"timed out waiting for {what}; received {data[-120:]!r}")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(RECV_SIZE)
        except socket.timeout:
            continue
        if not chunk:
            raise ProtocolError(f"connection closed while waiting for {what}; received {data[-120:]!r}")
        data += chunk


# gchat's refusals and errors (server full, invalid room) start with this.
_REFUSAL = b"!!! "


def _after_first_line(data: bytes) -> int:
    end = data.find(b"\n")
    return end + 1 if end >= 0 else -1


class LineProtocol:
    """A plain line chat (gchat and its peers): every connection is a room member.

    Ready once the first line (the welcome) has arrived; on a single gchat the
    client is in the lobby before its welcome is written. Another room is
    joined with ``/join ROOM`` and is ready at the first line naming the room.
    With ``await_join`` the lobby too is ready only at the first line naming
    it (gchat's ``*** You are NICK in #lobby``): a cluster node writes the
    welcome at once but admits the client only when its join is back from the
    bus, and a line sent before that would not reach it.
    """

    name = "line"
    # Senders are room members and receive the others' lines.
    senders_receive = True
    pings = False

    def __init__(self, room: str, *, await_join: bool = False) -> None:
        self.room = room
        self.await_join = await_join

    def join(self, sock: gsocket.socket, deadline: Deadline, index: int) -> bytes:
        rest = read_until(sock, b"", _after_first_line, deadline, "the welcome line", _REFUSAL)
        lobby = self.room.lower() in ("#lobby", "lobby")
        if lobby and not self.await_join:
            return rest
        if not lobby:
            sock.sendall(b"/join %s\n" % self.room.encode())
        wanted = self.room.lower().lstrip("#").encode()
        what = f"the reply to /join {self.room}" if not lobby else f"the line confirming {self.room}"

        def joined(data: bytes) -> int:
            offset = 0
            for line in data.split(b"\n")[:-1]:
                offset += len(line) + 1
                if line.startswith(_REFUSAL):
                    raise ProtocolError(f"the server said {line.rstrip()!r} while we waited for {what}")
                if wanted in line.lower():
                    return offset
            return -1

        return read_until(sock, rest, joined, deadline, what, _REFUSAL)

    def ready_sender(self, sock: gsocket.socket, deadline: Deadline, index: int) -> bytes:
        return self.join(sock, deadline, index)

    def frame(self, payloads: "list[bytes]") -> bytes:
        return b"\n".join(payloads) + b"\n"


class RedisProtocol:
    """Redis pub/sub: receivers SUBSCRIBE to the room, senders are separate PUBLISH connections.

    RESP is written by hand: a PUBLISH of a fixed-size payload is a constant
    prefix, the payload and CRLF, so a batch is one join.
    """

    name = "redis"
    # Publishers are not subscribed: like gchat, nobody hears their own lines.
    senders_receive = False
    pings = False

    def __init__(self, room: str, size: int) -> None:
        self.room = room
        channel = room.encode()
        self._prefix = b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n$%d\r\n" % (len(channel), channel, size - 1)
        self._separator = b"\r\n" + self._prefix
        self._subscribe = b"*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\n%s\r\n" % (len(channel), channel)

    def join(self, sock: gsocket.socket, deadline: Deadline, index: int) -> bytes:
        sock.sendall(self._subscribe)

        def confirmed(data: bytes) -> int:
            # *3 $9 subscribe $n ROOM :COUNT: done after the integer's CRLF.
            kind = data.find(b"subscribe\r\n")
            if kind < 0:
                return -1
            count = data.find(b"\r\n:", kind + 11)
            if count < 0:
                return -1
            end = data.find(b"\r\n", count + 3)
            return end + 2 if end >= 0 else -1

        return read_until(sock, b"", confirmed, deadline, f"the SUBSCRIBE {self.room} confirmation", b"-")

    def ready_sender(self, sock: gsocket.socket, deadline: Deadline, index: int) -> bytes:
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")

        def pong(data: bytes) -> int:
            end = data.find(b"+PONG\r\n")
            return end + 7 if end >= 0 else -1

        return read_until(sock, b"", pong, deadline, "the reply to PING", b"-")

    def frame(self, payloads: "list[bytes]") -> bytes:
        return self._prefix + self._separator.join(payloads) + b"\r\n"


class IrcProtocol:
    """IRC (RFC 1459/2812): every connection registers as ``benchN`` and JOINs the room.

    Senders too are room members (a channel takes no lines from outsiders by
    default) and, without IRCv3's echo-message, never hear their own lines, as
    on gchat. A sender with a connection of its own (fan-out, capacity) is
    ``benchNs``, apart from receiver N.
    """

    name = "irc"
    senders_receive = True
    pings = True

    def __init__(self, room: str) -> None:
        self.room = room
        self._prefix = b"PRIVMSG %s :" % room.encode()
        self._separator = b"\r\n" + self._prefix

    def _register(self, sock: gsocket.socket, deadline: Deadline, nick: str) -> bytes:
        steps = Registration(nick, self.room)
        sock.sendall(steps.start())
        done = 0

        def joined(data: bytes) -> int:
            nonlocal done
            while not steps.joined:
                end = data.find(b"\n", done)
                if end < 0:
                    return -1
                line, done = data[done:end], end + 1
                try:
                    reply = steps.feed(line)
                except IrcRefused as refused:
                    raise ProtocolError(f"{refused} while {nick} joined {self.room}") from None
                if reply:
                    sock.sendall(reply)
            return done

        # An IRC server's refusal is a numeric or ERROR line that Registration reports.
        return read_until(sock, b"", joined, deadline, f"{nick}'s JOIN {self.room}", b"\0")

    def join(self, sock: gsocket.socket, deadline: Deadline, index: int) -> bytes:
        return self._register(sock, deadline, f"bench{index}")

    def ready_sender(self, sock: gsocket.socket, deadline: Deadline, index: int) -> bytes:
        return self._register(sock, deadline, f"bench{index}s")

    def frame(self, payloads: "list[bytes]") -> bytes:
        return self._prefix + self._separator.join(payloads) + b"\r\n"


Protocol = Union[LineProtocol, RedisProtocol, IrcProtocol]


def make_protocol(options: Options) -> Protocol:
    if options.proto == "redis":
        return RedisProtocol(options.room, options.size)
    if options.proto == "irc":
        return IrcProtocol(options.room)
    return LineProtocol(options.room, await_join=options.await_join)
