"""The connection machinery in-process, over socketpairs: structural guards of its measured wins.

No server process here: a ``Connection`` with a tiny echoing front-end (the
same ``Dialect`` hook the line, IRC and web sessions implement) is driven
from the test's greenlet. What is checked is what no reply over a real socket
could show: which greenlets ran, how many ``send`` calls were made, what was
left in the kernel. Every wait is bounded by a socket timeout or a deadline.
"""

import fcntl
import gc
import termios
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar

import gevent
import greenlet
import pytest
from gevent import socket

from gchat.config import Config
from gchat.connection import Connection
from gchat.framing import Frame, LineFramer, TooLong
from gchat.output import Flusher
from gchat.reader import IDLE_READERS, Readers
from gchat.reasons import SERVER_ERROR

TIMEOUT = 5.0
MAX_LINE = 100
DEFAULTS = Config()


class Chat:
    closing = False


class Echo:
    """A front-end that answers each line: its reply proves the line was handled."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.framer = LineFramer(MAX_LINE)
        self.max_frame = MAX_LINE + 2

    def start(self) -> None:
        self.connection.output.deliver(b"hello\n")

    def handle(self, frame: Frame) -> None:
        assert not isinstance(frame, TooLong)
        self.connection.output.deliver(b"got " + frame + b"\n")

    def timed_out(self) -> None:
        self.connection.output.deliver(b"bye\n")

    def shut_down(self) -> None:
        self.connection.close()

    def banned(self, address: str) -> None:
        pass

    def leave(self, cause: str) -> str:
        return cause


class Pairs:
    """A framer of another kind than lines: every two bytes are a frame."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def finish(self) -> None:
        pass

    def next(self):
        if len(self._buffer) < 2:
            return None
        frame, self._buffer = self._buffer[:2], self._buffer[2:]
        return frame

    @property
    def buffered(self) -> int:
        return len(self._buffer)


class PairEcho(Echo):
    def __init__(self, connection: Connection) -> None:
        super().__init__(connection)
        self.framer = Pairs()
        self.max_frame = 2


class Counting:
    """A socket counting its ``send`` calls."""

    def __init__(self, sock):
        self._sock = sock
        self.sends = 0

    def send(self, *args, **kwargs):
        self.sends += 1
        return self._sock.send(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._sock, name)


class Broken(Counting):
    """A socket whose ``send`` hits a bug (never an OSError: those are the client's doing)."""

    def send(self, *args, **kwargs):
        raise RuntimeError("a bug in the send path")


class Rig:
    """Connections over socketpairs sharing one flusher, as a server's do."""

    def __init__(self) -> None:
        self.flusher = Flusher()
        self.readers = Readers()
        self.causes: list[str] = []

    def connect(self, config: Config = DEFAULTS, wrap=lambda sock: sock, dialect=Echo):
        ours, peer = socket.socketpair()
        peer.settimeout(TIMEOUT)
        connection = Connection(
            wrap(ours),
            ("127.0.0.1", 1),
            config,
            self.flusher,
            self.readers,
            Chat(),
            lambda connection, cause: self.causes.append(cause),
            lambda connection: None,
            dialect,
        )
        connection.sock.settimeout(0.0)
        return connection, peer


@pytest.fixture
def rig() -> Rig:
    return Rig()


def receive(peer, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = peer.recv(size - len(data))
        assert chunk, f"closed after {len(data)} of {size} bytes"
        data += chunk
    return data


def talk(connection: Connection, peer, lines: "tuple[bytes, ...]") -> None:
    """Start the connection as StreamServer does (its greenlet is the first reader), then echo ``lines``."""
    gevent.spawn(connection.start)
    assert receive(peer, 6) == b"hello\n"
    for line in lines:
        peer.sendall(line + b"\n")
        assert receive(peer, len(line) + 5) == b"got " + line + b"\n"


def live_greenlets() -> "set[greenlet.greenlet]":
    gevent.sleep(0)  # the event loop's greenlet runs from the first switch on
    # type(), not isinstance(): a dead weakref.proxy among the objects raises on the latter.
    return {g for g in gc.get_objects() if issubclass(type(g), greenlet.greenlet) and g and not g.dead}


def settle(baseline: "set[greenlet.greenlet]") -> "set[greenlet.greenlet]":
    """The greenlets alive beyond ``baseline`` once they stop ending (bounded)."""
    deadline = time.monotonic() + TIMEOUT
    while (extra := live_greenlets() - baseline) and time.monotonic() < deadline:
        gevent.sleep(0.01)
    return extra


@contextmanager
def switches() -> "Iterator[set[greenlet.greenlet]]":
    """Every greenlet switched into meanwhile."""
    targets: set[greenlet.greenlet] = set()

    def trace(event, args):
        if event in ("switch", "throw"):
            targets.add(args[1])

    previous = greenlet.settrace(trace)
    try:
        yield targets
    finally:
        greenlet.settrace(previous)


def test_idle_connections_hold_no_greenlet_of_their_own(rig):
    baseline = live_greenlets()
    connections = []
    for _ in range(IDLE_READERS + 4):
        connection, peer = rig.connect()
        talk(connection, peer, (b"one", b"two"))
        connections.append(connection)
    # What outlives the input is the server's few spare readers, however many connections wait.
    assert len(settle(baseline)) <= IDLE_READERS
    for connection in connections:
        connection.terminate()


class Recording(Echo):
    """An echo that notes the greenlet each line is handled in."""

    handled_in: ClassVar[list[greenlet.greenlet]] = []

    def handle(self, frame: Frame) -> None:
        self.handled_in.append(gevent.getcurrent())
        super().handle(frame)


def test_input_after_a_park_is_read_by_a_spare_reader_not_a_new_greenlet(rig):
    """A greenlet made and ended for every input cost about 12 µs a line (gchat.reader.Readers)."""
    Recording.handled_in = []
    connection, peer = rig.connect(dialect=Recording)
    talk(connection, peer, (b"one", b"two", b"three"))
    first, *later = Recording.handled_in
    assert all(runner is first for runner in later)
    connection.terminate()


def test_input_to_a_parked_connection_is_read_from_its_watcher_without_a_loop_callback(rig, monkeypatch):
    """The watcher's callback switches to a reader at once, as gevent wakes a greenlet waiting to read.

    Scheduling a loop callback to start the reader cost every input about 2 µs (tests/perf/per_line.py).
    """
    scheduled = []
    run = Readers.run

    def counted(self, reader):
        scheduled.append(reader)
        return run(self, reader)

    monkeypatch.setattr(Readers, "run", counted)
    connection, peer = rig.connect()
    talk(connection, peer, (b"one", b"two", b"three"))
    assert scheduled == []
    connection.terminate()


def test_input_on_a_plain_socket_is_read_without_gevents_python_recv(rig, monkeypatch):
    # gevent's recv wrapper is a Python call on every read; its C socket inside reads the same bytes.
    connection, peer = rig.connect()
    calls = []
    original = socket.socket.recv

    def counted(self, *args, **kwargs):
        if self is connection.sock:
            calls.append(args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "recv", counted)
    talk(connection, peer, (b"one", b"two", b"three"))
    assert calls == []
    connection.terminate()


def test_front_end_with_its_own_framer_gets_its_frames(rig):
    connection, peer = rig.connect(dialect=PairEcho)
    gevent.spawn(connection.start)
    assert receive(peer, 6) == b"hello\n"
    peer.sendall(b"abcd")
    assert receive(peer, 14) == b"got ab\ngot cd\n"
    connection.terminate()


def test_client_that_keeps_up_never_gets_a_writer(rig):
    connection, peer = rig.connect()
    line = b"x" * 99 + b"\n"
    expected = {gevent.get_hub(), greenlet.getcurrent()}
    with switches() as ran:
        for _ in range(20):
            for _ in range(50):
                connection.output.deliver(line)
            assert receive(peer, 50 * len(line)) == 50 * line
    assert ran <= expected, "a greenlet other than the event loop's ran"


def test_kernel_backlog_gets_a_writer_until_it_is_gone(rig):
    connection, peer = rig.connect()
    size = 512 * 1024  # more than a socketpair's buffers, less than --max-backlog
    with switches() as ran:
        connection.output.deliver(b"x" * size)
        gevent.sleep(0)
        assert not connection.output.written()
        assert receive(peer, size) == b"x" * size
        deadline = time.monotonic() + TIMEOUT
        while not connection.output.written() and time.monotonic() < deadline:
            gevent.sleep(0.01)
    assert connection.output.written(), "the writer did not finish"
    assert ran - {gevent.get_hub(), greenlet.getcurrent()}, "no writer ran"


def test_failing_flush_aborts_only_its_connection(rig):
    broken, broken_peer = rig.connect(wrap=Broken)
    fine, fine_peer = rig.connect()
    broken.output.deliver(b"lost\n")
    fine.output.deliver(b"kept\n")
    assert receive(fine_peer, 5) == b"kept\n"
    assert broken_peer.recv(100) == b"", "the connection whose flush failed stayed open"
    assert rig.causes == [SERVER_ERROR]
    fine.output.deliver(b"again\n")
    assert receive(fine_peer, 6) == b"again\n"


def test_one_send_per_client_per_loop_turn_under_a_burst(rig):
    pairs = [rig.connect(wrap=Counting) for _ in range(3)]
    lines = [b"line %d\n" % n for n in range(200)]
    for line in lines:  # one loop turn: no switch until every line is delivered
        for connection, _ in pairs:
            connection.output.deliver(line)
    burst = b"".join(lines)
    for connection, peer in pairs:
        assert receive(peer, len(burst)) == burst
        assert connection.sock.sends == 1


def test_flush_to_a_plain_socket_skips_gevents_python_send(rig, monkeypatch):
    # gevent's send wrapper is a Python call on every delivery; its C socket inside takes the bytes as well.
    calls = []
    original = socket.socket.send

    def counted(self, *args, **kwargs):
        calls.append(args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "send", counted)
    connection, peer = rig.connect()
    for n in range(3):
        connection.output.deliver(b"line %d\n" % n)
        assert receive(peer, 7) == b"line %d\n" % n
    assert calls == []


def test_rate_limited_reader_leaves_input_in_the_kernel(rig):
    connection, peer = rig.connect(Config(rate=1.0, burst=1, max_line=MAX_LINE))
    gevent.spawn(connection.start)
    assert receive(peer, 6) == b"hello\n"
    line = b"x" * 9 + b"\n"
    peer.sendall(1000 * line)
    assert receive(peer, 14) == b"got " + line  # the one token; the next line waits a second
    unread = int.from_bytes(fcntl.ioctl(connection.sock.fileno(), termios.FIONREAD, bytes(4)), "little")
    # Read: at most one frame's room beyond the line handled.
    assert unread >= 1000 * len(line) - 2 * (MAX_LINE + 2)
    connection.terminate()


class Noting(Echo):
    """A front-end that notes each frame it handles, in order, under its name (and answers nothing)."""

    handled: ClassVar[list[tuple[str, bytes]]] = []
    on_first = None  # called with the first frame, once

    def handle(self, frame: Frame) -> None:
        Noting.handled.append((self.name, frame))
        if Noting.on_first is not None:
            on_first, Noting.on_first = Noting.on_first, None
            on_first()


def test_input_that_comes_while_a_client_floods_is_read_in_the_next_loop_turn(rig):
    """A flooding client's reader goes back through the event loop between its reads.

    Yielding with ``gevent.sleep(0)`` kept it in the loop's callbacks, which gevent runs
    until there are none (looking at the clock once every 50): each flush of a big room
    came back to the flooder's next read, and input that came meanwhile on any other
    connection waited, for seconds in a capacity run (tests/perf/README.md).
    """
    Noting.handled = []
    unlimited = Config(rate=0.0, max_line=MAX_LINE)
    flooder, flooder_peer = rig.connect(unlimited, dialect=type("Flooder", (Noting,), {"name": "flooder"}))
    other, other_peer = rig.connect(unlimited, dialect=type("Other", (Noting,), {"name": "other"}))
    for connection, peer in ((flooder, flooder_peer), (other, other_peer)):
        gevent.spawn(connection.start)
        assert receive(peer, 6) == b"hello\n"
    # The other client's line comes once the flooder's input is being handled, not before.
    Noting.on_first = lambda: other_peer.sendall(b"mine\n")
    flood = [b"%048d\n" % n for n in range(3000)]  # 147 KiB: three reads of 64 KiB
    flooder_peer.sendall(b"".join(flood))
    deadline = time.monotonic() + TIMEOUT
    while len(Noting.handled) < len(flood) + 1 and time.monotonic() < deadline:
        gevent.sleep(0.01)
    assert len(Noting.handled) == len(flood) + 1
    assert Noting.handled.index(("other", b"mine")) < len(flood), "the flooder's reads all came first"
    flooder.terminate()
    other.terminate()
