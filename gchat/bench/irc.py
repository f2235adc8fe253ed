"""IRC for the benchmark, pure: registration and JOIN one server line at a time, and PINGs in a stream.

A bench client is an ordinary IRC client (RFC 1459/2812): ``NICK``/``USER``,
welcome (001), ``JOIN``, and it is in the room once the server echoes its own
JOIN. Everything after that is counted by the protocol-blind receivers: a
relayed ``:nick!user@host PRIVMSG #room :PAYLOAD`` line carries the payload at
its end, where the line checks look for it. The only thing a receiver must
still do as IRC is answer the server's PINGs, or be dropped for a ping timeout.
"""

from typing import Optional

PING = b"PING "
# RFC 2812: a message is at most 512 bytes, CRLF included. A PING line longer
# than that is not a PING (the bytes are foreign): it is dropped, not answered.
MAX_MESSAGE = 512
# Welcome; our own JOIN confirms the join. A nick already taken (a previous
# phase's connection the server has not reaped yet) is retried with a suffix.
RPL_WELCOME = b"001"
NICK_TAKEN = (b"433", b"436", b"437")
# Numerics that only say something is missing or informational, not a refusal.
_HARMLESS = (b"422",)  # ERR_NOMOTD: the server has no message of the day
# RPL_TRYAGAIN: the server dropped our command (a JOIN over a per-address
# budget, say); waiting would only time out.
RPL_TRYAGAIN = b"263"


class IrcRefused(Exception):
    """The server refused the registration or the JOIN; the message holds its own words."""


def split_message(line: bytes) -> "tuple[bytes, bytes, list[bytes]]":
    """(source nick, command, params) of one line without its line end; IRCv3 tags are skipped."""
    line = line.rstrip(b"\r")
    if line.startswith(b"@"):
        line = line.partition(b" ")[2]
    source = b""
    if line.startswith(b":"):
        prefix, _, line = line.partition(b" ")
        source = prefix[1:].split(b"!", 1)[0]
    text, _, trailing = line.partition(b" :")
    words = text.split()
    params = words[1:] + ([trailing] if _ else [])
    return source, (words[0].upper() if words else b""), params


def pong(params: bytes) -> bytes:
    """The answer to ``PING params`` (params as sent, the token included)."""
    return b"PONG " + params.rstrip(b"\r") + b"\r\n"


class Registration:
    """One client's way into the room: feed it every server line, send what it returns.

    ``joined`` turns true at the server's echo of our own JOIN: from then on the
    server relays the room's lines to us.
    """

    def __init__(self, nick: str, room: str) -> None:
        self.nick = nick.encode()
        self.room = room.encode()
        self.welcomed = False
        self.joined = False

    def start(self) -> bytes:
        nick = self.nick
        return b"NICK %s\r\nUSER %s 0 * :bench\r\n" % (nick, nick)

    def feed(self, line: bytes) -> bytes:
        """What to send in answer to one server line (LF removed); IrcRefused on a refusal."""
        source, command, params = split_message(line)
        if command == b"PING":
            at = line.find(PING)
            return pong(line[at + len(PING) :]) if at >= 0 else b"PONG\r\n"
        if command == b"ERROR":
            raise IrcRefused(f"the server closed the link: {line.rstrip()!r}")
        if command == RPL_WELCOME:
            self.welcomed = True
            if params:
                # The server may have changed our nick (truncated it, say): it is ours now.
                self.nick = params[0]
            return b"JOIN %s\r\n" % self.room
        if command in NICK_TAKEN and not self.welcomed:
            self.nick += b"_"
            return b"NICK %s\r\n" % self.nick
        if command == b"JOIN" and source.lower() == self.nick.lower():
            if params and params[0].lower() == self.room.lower():
                self.joined = True
            return b""
        refusal = len(command) == 3 and command.isdigit() and command[:1] in b"45"
        if (refusal and command not in _HARMLESS) or command == RPL_TRYAGAIN:
            raise IrcRefused(f"the server said {line.rstrip()!r}")
        return b""


class PingWatch:
    """Finds the server's PINGs in a receiver's stream of reads and makes their PONGs.

    A receiver counts deliveries in one pass over each read; this adds one search
    for ``PING `` per read, and assembles only the rare line that holds one,
    even when a read boundary cuts it (the last four bytes of each read are kept
    for a ``PING `` cut in two). Any ``PING `` is answered with the rest of its
    line as the PONG's parameters, whatever precedes it: a bench payload never
    holds one.
    """

    __slots__ = ("_edge", "_line")

    def __init__(self) -> None:
        self._edge = b""
        # The parameters of a PING line a read boundary cut, so far.
        self._line: Optional[bytes] = None

    def feed(self, buf: "bytes | bytearray", start: int, end: int) -> bytes:
        """The PONGs owed for ``buf[start:end]``, the next read of the stream."""
        replies: list[bytes] = []
        pos = start
        if self._line is not None:
            pos = self._finish(buf, start, end, replies)
        else:
            joined = self._edge + bytes(buf[start : min(start + len(PING) - 1, end)])
            at = joined.find(PING)
            if 0 <= at < len(self._edge):
                self._line = b""
                pos = self._finish(buf, start + at + len(PING) - len(self._edge), end, replies)
        while pos < end:
            at = buf.find(PING, pos, end)
            if at < 0:
                break
            self._line = b""
            pos = self._finish(buf, at + len(PING), end, replies)
        keep = len(PING) - 1
        self._edge = (self._edge + bytes(buf[max(start, end - keep) : end]))[-keep:]
        return b"".join(replies)

    def _finish(self, buf: "bytes | bytearray", pos: int, end: int, replies: "list[bytes]") -> int:
        """Complete the PING line from ``pos``: where to go on searching (``end`` if it goes on)."""
        assert self._line is not None
        newline = buf.find(b"\n", pos, end)
        if newline < 0:
            self._line += bytes(buf[pos:end])
            if len(self._line) > MAX_MESSAGE:
                self._line = None
            return end
        replies.append(pong(self._line + bytes(buf[pos:newline])))
        self._line = None
        return newline + 1
