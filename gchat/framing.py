"""Split a byte stream into lines without ever holding more than one line's worth.

Pure and I/O-free, like h11's receive buffer: the session feeds it whatever
``recv`` returned and gets back complete lines, so the limit on unfinished
input is enforced in one place and can be tested without sockets.
"""

from typing import Union


class TooLong:
    """Marks a line that exceeded the limit; its bytes are never handed out."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "TOO_LONG"


TOO_LONG = TooLong()

Frame = Union[bytes, TooLong]


class LineFramer:
    """Turn chunks into LF-terminated lines, refusing lines over ``max_line`` bytes.

    A line's length is counted on the raw bytes, not counting the LF and a CR
    right before it. An over-long line is reported as soon as it is known to be
    too long (not when its LF finally arrives), so a client streaming megabytes
    without a newline is told at once and the rest of that line is discarded
    as it arrives.
    """

    __slots__ = ("_discarding", "_max", "_tail")

    def __init__(self, max_line: int) -> None:
        self._max = max_line
        self._tail = b""
        self._discarding = False

    def feed(self, data: bytes) -> list[Frame]:
        if self._tail:
            data = self._tail + data
        parts = data.split(b"\n")
        tail = parts.pop()
        frames: list[Frame] = []
        if parts and self._discarding:
            self._discarding = False
            del parts[0]
        limit = self._max
        for part in parts:
            size = len(part)
            if size > limit and (size > limit + 1 or part[-1] != 13):
                frames.append(TOO_LONG)
            else:
                frames.append(part)
        if self._discarding:
            self._tail = b""
        elif len(tail) > limit and (len(tail) > limit + 1 or tail[-1] != 13):
            frames.append(TOO_LONG)
            self._discarding = True
            self._tail = b""
        else:
            self._tail = tail
        return frames

    def finish(self) -> list[Frame]:
        """The last line of a stream that ended without a LF, if there was one."""
        tail, self._tail = self._tail, b""
        if tail and not self._discarding:
            return [tail]
        return []

    @property
    def buffered(self) -> int:
        """Bytes of an unfinished line held right now (at most max_line + 1)."""
        return len(self._tail)
