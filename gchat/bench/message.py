"""The benchmark line: how it is written, recognised and counted (pure, no I/O).

A line is ``~gb~TOKEN SENDER SEQ SENT_NS .....`` padded with dots to the
requested size. The marker lets a receiver find the payload anywhere in a line,
because servers prefix what they relay (``<guest3> ``). TOKEN is fresh for each
phase of a run, so lines left over from an earlier run or phase (a server's
history replay, a second benchmark on the same server) are recognised as
foreign instead of confusing the sequence checks. SENT_NS is
``time.monotonic_ns()``, comparable between processes on one machine.
"""

import secrets
from typing import Union

MARKER = b"~gb~"
PAD_BYTE = b"."
TOKEN_LEN = 8

# Widest fields a run can produce: sender ids, sequence numbers up to 10
# digits (years of sending), a monotonic clock in ns (20 digits is 2**64).
_WIDEST_HEAD = len(MARKER) + TOKEN_LEN + 1 + 7 + 1 + 10 + 1 + 20 + 1
# At least one pad byte, so that no line ends in a space a server might trim,
# and the LF.
MIN_SIZE = _WIDEST_HEAD + 1 + 1

# A parsed line: (sender, seq, sent_ns).
Parsed = tuple[int, int, int]

# Why a line carrying a marker was not accepted.
FOREIGN = "foreign"  # a well-placed marker with another run's token: ignored
SPLICED = "spliced"  # two markers in one line: lines were cut and glued
BAD_LENGTH = "length"  # payload longer or shorter than --size
BAD_FIELDS = "fields"  # the fields after the marker do not parse

ParseResult = Union[Parsed, str, None]


def new_token() -> bytes:
    return secrets.token_hex(TOKEN_LEN // 2).encode("ascii")


def head(token: bytes) -> bytes:
    """What starts a payload of this run: the marker and the token."""
    return MARKER + token


def needle(token: bytes) -> bytes:
    """What a delivery is counted by: marker, token and the separator after it."""
    return MARKER + token + b" "


def sender_needle(token: bytes, sender: int) -> bytes:
    """Counts one sender's lines only; all senders' needles must be equally long (see count_into)."""
    return b"%s%s %d " % (MARKER, token, sender)


_PADDING = PAD_BYTE * 65536


def format_payload(token: bytes, sender: int, seq: int, sent_ns: int, size: int) -> bytes:
    """The line without its LF: ``size - 1`` bytes (Redis publishes exactly this)."""
    head = b"%s%s %d %d %d " % (MARKER, token, sender, seq, sent_ns)
    pad = size - 1 - len(head)
    if pad < 1:
        raise ValueError(f"--size {size} is too small for {head!r}")
    if pad <= len(_PADDING):
        return head + _PADDING[:pad]
    return head + PAD_BYTE * pad


def parse_line(line: bytes, head: bytes, size: int) -> ParseResult:
    """Classify one received line (LF removed; a CR before it is ignored).

    ``head`` is this run's marker and token. Returns (sender, seq, sent_ns)
    for a good line of this run, None for a line without a marker, else the
    reason (FOREIGN, or a malformation). Hot on sampled receivers: one count,
    one split from the right (servers prefix, never suffix) and no regex.
    """
    markers = line.count(MARKER)
    if not markers:
        return None
    if markers > 1:
        return SPLICED if head + b" " in line else FOREIGN
    parts = line.rsplit(b" ", 4)
    if len(parts) != 5 or not parts[0].endswith(head):
        return BAD_FIELDS if head + b" " in line else FOREIGN
    first, sender, seq, sent, pad = parts
    length = len(line) - len(first) + len(head)
    if pad[-1:] == b"\r":
        pad = pad[:-1]
        length -= 1
    if length != size - 1:
        return BAD_LENGTH
    if (
        not (sender.isdigit() and seq.isdigit() and sent.isdigit())
        or not pad
        or pad.count(PAD_BYTE) != len(pad)
    ):
        return BAD_FIELDS
    return int(sender), int(seq), int(sent)


def count_into(
    buf: bytearray, start: int, end: int, needles: "list[bytes]", carry: bytes
) -> "tuple[list[int], bytes]":
    """Count needles in ``carry + buf[start:end]`` without copying the chunk.

    ``buf[start:end]`` is what recv just wrote; ``start`` leaves room before it
    for the carry, the last ``len(needle) - 1`` bytes of the previous chunk, so
    a needle split across two reads is counted exactly once (a carry is too
    short to hold a whole needle). Returns the counts and the next carry. All
    needles must have the same length.
    """
    keep = len(needles[0]) - 1
    begin = start - len(carry)
    buf[begin:start] = carry
    counts = [buf.count(item, begin, end) for item in needles]
    return counts, bytes(buf[max(begin, end - keep) : end])


class NeedleCounter:
    """Counts one needle over a stream of chunks: the reference for count_into."""

    __slots__ = ("_buf", "_carry", "_needle", "count")

    def __init__(self, needle: bytes) -> None:
        self._needle = needle
        self._carry = b""
        self._buf = bytearray(len(needle))
        self.count = 0

    def feed(self, chunk: bytes) -> int:
        room = len(self._needle) - 1
        if len(self._buf) < room + len(chunk):
            self._buf = bytearray(room + len(chunk))
        self._buf[room : room + len(chunk)] = chunk
        (found,), self._carry = count_into(self._buf, room, room + len(chunk), [self._needle], self._carry)
        self.count += found
        return found
