"""Split a byte stream into lines, one at a time, never holding more than one chunk and one line.

Pure and I/O-free, like h11's receive buffer: the reader feeds it what
``recv`` returned and takes complete lines out one by one, so the limit on
unfinished input is enforced in one place and can be tested without sockets.
Lines are taken out one at a time (not split into a list) so that a reader
held back by its rate limit keeps its unhandled input as one bytes object of
the size it chose to read, not as thousands of line objects.
"""

from typing import Optional, Union

CR = 0x0D
# RFC 854: a telnet client sends CR NUL for a bare carriage return (Enter in character mode).
CR_NUL = b"\r\x00"


class TooLong:
    """Marks a line that exceeded the limit; its bytes are never handed out."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "TOO_LONG"


TOO_LONG = TooLong()

Frame = Union[bytes, TooLong]


class LineFramer:
    """Turn chunks into lines ended by LF or CR NUL, refusing lines over ``max_line`` bytes.

    A line's length is counted on the raw bytes, not counting its end (LF or
    NUL) and a CR right before it; the CR stays in the frame (sanitizing drops
    it). An over-long line is reported as soon as it is known to be too long
    (not when its end finally arrives), so a client streaming megabytes
    without a newline is told at once and the rest of that line is discarded
    as it arrives.

    ``feed`` a chunk, then call ``next`` until it returns None; only then feed
    the next chunk.
    """

    __slots__ = ("_buffer", "_discarding", "_ended", "_max", "_start")

    def __init__(self, max_line: int) -> None:
        self._max = max_line
        self._buffer = b""
        self._start = 0
        self._discarding = False
        self._ended = False

    def feed(self, data: bytes) -> None:
        buffer, start = self._buffer, self._start
        self._buffer = buffer[start:] + data if start < len(buffer) else data
        self._start = 0

    def finish(self) -> None:
        """The stream ended: an unfinished line is the last frame ``next`` returns."""
        self._ended = True

    def next(self) -> Optional[Frame]:
        """The next complete line (or TOO_LONG), or None until more is fed."""
        buffer, start = self._buffer, self._start
        if start == len(buffer):
            # All taken (every read's last call, and a woken reader's first): nothing
            # is unfinished, whether or not the stream ended or a line is being discarded.
            if buffer:
                self._buffer, self._start = b"", 0
            return None
        end = buffer.find(b"\n", start)
        nul = buffer.find(CR_NUL, start) if end < 0 else buffer.find(CR_NUL, start, end)
        if nul >= 0:
            end = nul + 1  # the line ends at the NUL, as at a LF
        elif end < 0:
            return self._unfinished()
        self._start = end + 1
        if self._discarding:
            # The end of an over-long line, reported already: the next line is whole.
            self._discarding = False
            return self.next()
        line = buffer[start:end]
        return TOO_LONG if self._too_long(line) else line

    def _unfinished(self) -> Optional[Frame]:
        """What the bytes after the last line end give: the last line, TOO_LONG, or nothing yet."""
        tail = self._buffer[self._start :]
        self._buffer, self._start = tail, 0
        if self._ended:
            self._buffer = b""
            return tail if tail and not self._discarding else None
        if self._discarding or self._too_long(tail):
            frame = None if self._discarding else TOO_LONG
            self._discarding = True
            # Keep a last CR: with a NUL in the next chunk it still ends the line.
            self._buffer = b"\r" if tail[-1:] == b"\r" else b""
            return frame
        return None

    def _too_long(self, line: bytes) -> bool:
        size, limit = len(line), self._max
        return size > limit and (size > limit + 1 or line[-1] != CR)

    @property
    def buffered(self) -> int:
        """Bytes held right now: lines not taken yet and the unfinished one."""
        return len(self._buffer) - self._start
