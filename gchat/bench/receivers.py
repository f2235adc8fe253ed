"""Receiving connections: count deliveries cheaply on all, check every line on a sample.

One greenlet per connection reads 256 KiB at a time into a buffer shared by
the whole process (greenlets never run at once, and the bytes are counted
before the reading greenlet yields), so a read costs one syscall, one
``bytearray.count`` per needle and no allocation. Only sampled receivers copy
and split the bytes into lines to parse them.
"""

import socket
import time
from collections.abc import Iterable
from typing import Optional

import gevent
from gevent.event import Event
from gevent.lock import Semaphore

from gchat.bench.clients import RECV_SIZE
from gchat.bench.irc import PingWatch
from gchat.bench.message import FOREIGN, count_into, head, parse_line
from gchat.bench.stats import Histogram, SequenceChecker

# Room in front of each read for the previous read's carry (needle length - 1).
_HEAD = 64
_BUFFER = bytearray(_HEAD + RECV_SIZE)
_VIEW = memoryview(_BUFFER)[_HEAD:]


class Window:
    """When a probe has seen a sender's lines: that sender's window opens again."""

    __slots__ = ("acked", "wake")

    def __init__(self) -> None:
        self.acked = 0
        self.wake = Event()

    def ack(self, next_seq: int) -> None:
        if next_seq > self.acked:
            self.acked = next_seq
            self.wake.set()


class Measure:
    """The measured interval, in send timestamps: lines sent in [start_ns, end_ns) count."""

    __slots__ = ("end_ns", "start_ns")

    def __init__(self, start_ns: int = 0, end_ns: int = 0) -> None:
        self.start_ns = start_ns
        self.end_ns = end_ns


class Inspector:
    """Parses every line a sampled receiver gets: sequences, malformations, latency.

    The probe's inspector also opens its own worker's senders' windows and
    counts their lines that arrived within the measured interval.
    """

    __slots__ = (
        "_head",
        "_limit",
        "_pending",
        "_size",
        "accepted",
        "checker",
        "foreign",
        "latency",
        "lines",
        "malformed",
        "measure",
        "windows",
    )

    def __init__(
        self,
        token: bytes,
        size: int,
        measure: Measure,
        latency: Histogram,
        windows: Optional[dict[int, Window]] = None,
    ) -> None:
        self._head = head(token)
        self._size = size
        self._pending = b""
        self._limit = max(4 * size, 65536)
        self.measure = measure
        self.latency = latency
        self.windows = windows
        self.checker = SequenceChecker()
        self.malformed: dict[str, int] = {}
        self.foreign = 0
        self.lines = 0
        self.accepted = 0

    def feed(self, chunk: bytes, now: int) -> None:
        data = self._pending + chunk if self._pending else chunk
        lines = data.split(b"\n")
        self._pending = lines.pop()
        if len(self._pending) > self._limit:
            # No line end for far longer than a line: the stream is broken.
            self._bad("unterminated")
            self._pending = b""
        mine, size, checker = self._head, self._size, self.checker
        start, end = self.measure.start_ns, self.measure.end_ns
        windows = self.windows
        touched = set()
        for line in lines:
            result = parse_line(line, mine, size)
            if isinstance(result, tuple):
                sender, seq, sent = result
                checker.see(sender, seq)
                self.lines += 1
                if start <= sent < end:
                    self.latency.record(now - sent)
                if windows is not None and sender in windows:
                    touched.add(sender)
                    if start <= sent < end and now < end:
                        self.accepted += 1
            elif result == FOREIGN:
                self.foreign += 1
            elif result is not None:
                self._bad(result)
        if windows is not None:
            for sender in touched:
                windows[sender].ack(checker.next_seq(sender))

    def _bad(self, reason: str) -> None:
        self.malformed[reason] = self.malformed.get(reason, 0) + 1


class Tally:
    """Deliveries counted by all of a worker's receivers (the cheap count)."""

    def __init__(self, needles: list[bytes]) -> None:
        self.needles = needles
        self.delivered = 0
        self.closed = 0
        self.errors: list[str] = []
        # While clients connect, a server may tell every member of each join:
        # N**2 / 2 notices for N clients. Reading each as it comes costs a
        # wake-up per notice; lingering between reads takes them in bulk.
        self.linger = 0.0
        self.awake = Event()

    def lingering(self, seconds: float) -> None:
        """Read at most every ``seconds`` from now on; 0: read as soon as anything arrives."""
        self.linger = seconds
        if seconds:
            self.awake.clear()
        else:
            self.awake.set()

    def add(self, receiver: "Receiver", counts: list[int]) -> None:
        self.delivered += counts[0]


class ReachTally(Tally):
    """Per sender and line, how many of this worker's receivers have it: for time-to-reach-all.

    Each sender sends its next line only once the previous one has reached
    everyone, so a receiver's count of a sender's lines is the number of the
    line it just got, plus one.
    """

    def __init__(self, needles: list[bytes], receivers: int) -> None:
        super().__init__(needles)
        self.receivers = receivers
        self.reached: list[list[int]] = [[] for _ in needles]
        self.done: list[dict[int, int]] = [{} for _ in needles]
        self.events = [Event() for _ in needles]

    def reset(self, needles: list[bytes], receivers: int, members: Iterable["Receiver"]) -> None:
        """Start counting a new phase's lines (its own token) over ``receivers`` receivers."""
        self.needles = needles
        self.receivers = receivers
        self.reached = [[] for _ in needles]
        self.done = [{} for _ in needles]
        for receiver in members:
            receiver.counts = [0] * len(needles)

    def add(self, receiver: "Receiver", counts: list[int]) -> None:
        for sender, found in enumerate(counts):
            if not found:
                continue
            self.delivered += found
            before = receiver.counts[sender]
            receiver.counts[sender] = after = before + found
            reached = self.reached[sender]
            while len(reached) < after:
                reached.append(0)
            for line in range(before, after):
                reached[line] += 1
                if reached[line] == self.receivers:
                    self.done[sender][line] = time.monotonic_ns()
                    self.events[sender].set()

    def wait(self, sender: int, line: int, deadline: float) -> Optional[int]:
        """When line ``line`` of ``sender`` had reached every receiver here; None at the deadline."""
        event = self.events[sender]
        while line not in self.done[sender]:
            event.clear()
            if line in self.done[sender]:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            event.wait(remaining)
        return self.done[sender][line]


class Receiver:
    """One connection's reading side; ``own`` is the sender id it sends as, if it sends.

    With ``pings`` (IRC) it answers the server's PINGs, holding ``writing`` so
    that a PONG never lands inside a sender's batch on the same socket.
    """

    __slots__ = ("closed", "counts", "inspector", "own", "pings", "sock", "writing")

    def __init__(
        self,
        sock: socket.socket,
        own: Optional[int],
        inspector: Optional[Inspector],
        pings: Optional[PingWatch] = None,
    ) -> None:
        self.sock = sock
        self.own = own
        self.inspector = inspector
        self.pings = pings
        self.writing = Semaphore()
        self.counts: list[int] = []
        self.closed = False

    def run(self, tally: Tally, leftover: bytes) -> None:
        """Read until the connection ends or the greenlet is killed."""
        sock = self.sock
        if len(self.counts) != len(tally.needles):
            self.counts = [0] * len(tally.needles)
        # Wait for readability first, then read: reading first would fail with
        # EAGAIN (a syscall and an exception) on nearly every chunk.
        hub = gevent.get_hub()
        readable = hub.loop.io(sock.fileno(), 1)
        carry = b""
        pending = leftover
        try:
            while True:
                if pending:
                    piece, pending = pending[:RECV_SIZE], pending[RECV_SIZE:]
                    size = len(piece)
                    _BUFFER[_HEAD : _HEAD + size] = piece
                else:
                    hub.wait(readable)
                    try:
                        size = sock.recv_into(_VIEW)
                    except socket.timeout:
                        continue
                    except OSError as error:
                        self._closed(tally, f"a receiving connection failed: {error}")
                        return
                    if not size:
                        self._closed(tally, None)
                        return
                # Timestamp first: what is measured is arrival, not our counting.
                inspector = self.inspector
                now = time.monotonic_ns() if inspector is not None else 0
                counts, carry = count_into(_BUFFER, _HEAD, _HEAD + size, tally.needles, carry)
                if any(counts):
                    tally.add(self, counts)
                if inspector is not None:
                    inspector.feed(bytes(_BUFFER[_HEAD : _HEAD + size]), now)
                if self.pings is not None:
                    pongs = self.pings.feed(_BUFFER, _HEAD, _HEAD + size)
                    if pongs and not answer(sock, pongs, self.writing, tally.errors):
                        self._closed(tally, None)
                        return
                if tally.linger:
                    tally.awake.wait(tally.linger)
        finally:
            readable.close()

    def _closed(self, tally: Tally, message: Optional[str]) -> None:
        """Counted (the phase reports how many closed); a socket error is also described, once."""
        self.closed = True
        tally.closed += 1
        if message is not None and message not in tally.errors:
            tally.errors.append(message)


def answer(sock: socket.socket, pongs: bytes, writing: Semaphore, errors: list[str]) -> bool:
    """Send the PONGs a PingWatch found, under the socket's write lock; False when the socket failed."""
    try:
        with writing:
            sock.sendall(pongs)
    except OSError as error:
        message = f"answering a PING failed: {error}"
        if message not in errors:
            errors.append(message)
        return False
    return True


def discard(
    sock: socket.socket,
    errors: list[str],
    what: str,
    resp: bool,
    pings: Optional[PingWatch],
    writing: Semaphore,
) -> None:
    """Read and drop everything (a sender's incoming lines, Redis' PUBLISH replies), noting errors.

    With ``resp``, a Redis error reply (a line starting with ``-``) is reported
    once; with ``pings`` (IRC), the server's PINGs are answered.
    """
    while True:
        try:
            data = sock.recv(RECV_SIZE)
        except socket.timeout:
            continue
        except OSError as error:
            errors.append(f"{what} failed: {error}")
            return
        if not data:
            errors.append(f"the server closed {what}")
            return
        if pings is not None:
            pongs = pings.feed(data, 0, len(data))
            if pongs and not answer(sock, pongs, writing, errors):
                return
        if resp and (data.startswith(b"-") or b"\n-" in data):
            start = 0 if data.startswith(b"-") else data.index(b"\n-") + 1
            reply = data[start:].split(b"\r", 1)[0]
            message = f"the server answered {what} with {reply!r}"
            if message not in errors:
                errors.append(message)
