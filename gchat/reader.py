"""A connection's input: park-and-wake with no greenlet while idle, reading only what ``--rate`` allows.

While the client sends nothing the connection holds no greenlet at all, only
an io watcher on its socket (and a timer with ``--idle-timeout``): on CPython
3.11+ a parked greenlet costs 6-8 KiB (its saved C stack and a page of frame
stack), several times everything else a connection needs. Input wakes a
reader greenlet that handles what one read brings and parks again (the
watcher wakes the next one in the next loop turn if more input waits, along
with every other connection's). The StreamServer handler greenlet is simply
the first reader; later ones come from ``Readers``, a few greenlets the whole
server keeps between inputs.

The reader frames what it reads with its front-end's framer and hands the
front-end one frame at a time (see ``gchat.connection.Dialect``). Input is
read only as fast as ``--rate`` lets it be handled: a reader that must wait
for a token holds at most the few bytes it read last and waits without
reading, leaving the rest in the kernel (TCP back-pressure on the sender),
while the ``HangupWatch`` notices at once if the client closes or resets
meanwhile.
"""

import enum
import logging
import select
import time
from typing import TYPE_CHECKING, Any, Callable, Final, Generic, Optional, Protocol, TypeVar

import gevent
import greenlet
from gevent.hub import Waiter
from gevent.monkey import get_original
from gevent.socket import socket as GreenSocket

from gchat.config import Config
from gchat.lifecycle import OPEN
from gchat.output import plain_socket
from gchat.ratelimit import TokenBucket
from gchat.reasons import CLOSED, IDLE_TIMEOUT, SERVER_ERROR, SHUTDOWN

if TYPE_CHECKING:
    from gchat.connection import Connection, Dialect

log = logging.getLogger("gchat")

RECV_SIZE = 65536
# FIN (EPOLLRDHUP), reset (EPOLLERR, with EPOLLHUP): never plain input.
_HANGUP = select.EPOLLRDHUP | select.EPOLLERR | select.EPOLLHUP
_RESET = select.EPOLLERR | select.EPOLLHUP

F = TypeVar("F")
F_co = TypeVar("F_co", covariant=True)


class Framer(Protocol[F_co]):
    """Splits the byte stream into a front-end's frames (``gchat.framing.LineFramer`` for lines).

    ``feed`` a chunk, then call ``next`` until it returns None; only then feed the next chunk.
    """

    def feed(self, data: bytes) -> None: ...

    def finish(self) -> None:
        """The stream ended: an unfinished frame may be the last ``next`` returns."""

    def next(self) -> Optional[F_co]: ...

    @property
    def buffered(self) -> int:
        """Bytes held: frames not taken yet and the unfinished one."""


class Closing(Protocol):
    """The chat, as far as the reader cares: once it is closing, input is read and dropped."""

    @property
    def closing(self) -> bool: ...


class Input(enum.Enum):
    """What the reader knows of the client's input."""

    # More may come.
    OPEN = "open"
    # The client closed or reset while its input waited for the rate limit, in the kernel, unread.
    HUNG_UP = "hung up"
    # The reader read the end of the stream: the kernel holds nothing more of the client's.
    ENDED = "ended"


# As plain names, for the read loop (see gchat.lifecycle.OPEN).
INPUT_OPEN: Final = Input.OPEN
HUNG_UP: Final = Input.HUNG_UP
ENDED: Final = Input.ENDED


class HangupWatch:
    """Notices clients that close or reset while their input waits for the rate limit.

    Such a client's socket stays readable all along (its input is left in the
    kernel on purpose), so an io watcher for input would fire at once; what
    matters is only whether the peer sent a FIN (EPOLLRDHUP) or a reset
    (EPOLLERR, EPOLLHUP). One epoll set asks for exactly that, and the event
    loop watches its descriptor: the waiting readers together cost one
    descriptor and one watcher, and a hangup is seen as it arrives, with no
    polling and however slow ``--rate`` is.
    """

    __slots__ = ("_epoll", "_readers", "_watcher")

    def __init__(self) -> None:
        # gevent's monkey-patching hides epoll, since it cannot make it cooperative;
        # it need not: the set is only ever polled when the event loop says it is ready.
        self._epoll = get_original("select", "epoll")()
        self._readers: dict[int, Reader[Any]] = {}
        self._watcher = gevent.get_hub().loop.io(self._epoll.fileno(), 1)

    def add(self, fileno: int, reader: "Reader[Any]") -> None:
        """Watch ``fileno`` until discarded (kept across a client's holds: no syscall per line)."""
        if fileno in self._readers:
            return
        self._epoll.register(fileno, _HANGUP)
        self._readers[fileno] = reader
        if len(self._readers) == 1:
            self._watcher.start(self._ready)

    def discard(self, fileno: int) -> None:
        """Stop watching ``fileno`` (before it is closed: a new connection may reuse the number)."""
        if self._readers.pop(fileno, None) is not None:
            self._epoll.unregister(fileno)
            if not self._readers:
                self._watcher.stop()

    def _ready(self) -> None:
        for fileno, events in self._epoll.poll(0):
            reader = self._readers.get(fileno)
            if reader is not None:
                self.discard(fileno)
                reader.hung_up(reset=bool(events & _RESET))


# Reader greenlets kept between inputs, server-wide.
IDLE_READERS = 16


class Readers:
    """What every connection's reader shares: the hangup watch, and the greenlets that run readers.

    A greenlet made for each input and ended after it cost a line about 12 µs
    of CPU, over a tenth of a line's whole cost to a server that idles
    between lines (strace: an ``mmap`` and a ``munmap`` a line, CPython 3.11's
    frame stack for each new greenlet, and a page fault; gevent's ``Greenlet``
    besides). So a reader greenlet that has parked its connection waits for
    the next one to wake, up to ``IDLE_READERS`` of them: a fixed few KiB for
    the server, where one per idle connection would cost each 6-8 KiB. They
    are plain greenlets, switched to from the watcher's callback when input
    comes (see ``Reader._ready``) and from a loop callback otherwise.
    """

    __slots__ = ("_hub", "_idle", "hangups")

    def __init__(self) -> None:
        self.hangups = HangupWatch()
        self._hub = gevent.get_hub()
        self._idle: list[greenlet.greenlet] = []

    def run(self, reader: "Reader[Any]") -> greenlet.greenlet:
        """A greenlet that runs ``reader`` from the next loop callback on (called from any greenlet)."""
        runner = self.take()
        self._hub.loop.run_callback(runner.switch, reader)
        return runner

    def take(self) -> greenlet.greenlet:
        """A greenlet to switch to with a reader: a spare one if any, else a new one."""
        idle = self._idle
        return idle.pop() if idle else greenlet.greenlet(self._serve, self._hub)

    def _serve(self, reader: "Reader[Any]") -> None:
        current = greenlet.getcurrent()
        hub = self._hub
        while True:
            reader.read()
            if len(self._idle) >= IDLE_READERS:
                return
            self._idle.append(current)
            while True:
                try:
                    reader = hub.switch()
                    break
                except gevent.GreenletExit:
                    pass  # a kill that came after its reader was done (see Reader.kill)


class Reader(Generic[F]):
    """A connection's input side, which outlives any one reader greenlet."""

    __slots__ = (
        "_bucket",
        "_chat",
        "_connection",
        "_deadline",
        "_dialect",
        "_framer",
        "_greenlet",
        "_hangups",
        "_held",
        "_idle",
        "_input",
        "_readers",
        "_recv",
        "_sock",
        "_timer",
        "_unheld",
        "_watcher",
    )

    def __init__(
        self,
        connection: "Connection",
        dialect: "Dialect[F]",
        sock: GreenSocket,
        config: Config,
        chat: Closing,
        readers: Readers,
    ) -> None:
        self._connection = connection
        self._dialect = dialect
        self._framer = dialect.framer
        self._sock = sock
        # Read from gevent's C socket when it is a plain one, as the flush sends to it (see
        # gchat.output.plain_socket): gevent's wrapper is a Python call on every read.
        raw = plain_socket(sock)
        self._recv = sock.recv if raw is None else raw.recv
        # A TLS socket's input decrypted but not taken yet (a read smaller than its record): OpenSSL
        # holds it, so no watcher sees it, and the reader reads it before parking.
        held = getattr(sock, "pending", None)
        self._held: Optional[Callable[[], int]] = held if callable(held) else None
        self._chat = chat
        self._readers = readers
        self._hangups = readers.hangups
        self._input = INPUT_OPEN
        # While the reader waits for the rate limit: switching it ends the wait early.
        self._unheld: Optional[Waiter] = None
        self._idle = config.idle_timeout
        now = time.monotonic()
        self._bucket = TokenBucket(config.rate, config.burst, now) if config.rate else None
        self._deadline = now + config.idle_timeout
        self._greenlet: Optional[greenlet.greenlet] = None
        self._watcher: Any = None
        self._timer: Any = None

    @property
    def ended(self) -> bool:
        """Whether the end of the stream was read: nothing of the client's is left to drain."""
        return self._input is ENDED

    def start(self) -> None:
        """Let the front-end greet, then read; in the StreamServer handler, the first reader."""
        self._greenlet = gevent.getcurrent()
        self._dialect.start()
        self.read()

    def wake(self) -> None:
        """Input, end of stream, the idle deadline, a hangup, a close or an abort: a reader takes over.

        If the reader is waiting for the rate limit, it stops waiting.
        """
        if self._greenlet is None:
            self._unwatch()
            self._greenlet = self._readers.run(self)
        elif self._unheld is not None:
            # From the event loop: this may run in any greenlet. A switch that comes
            # after the timer's is ignored (the waiter is done then).
            gevent.get_hub().loop.run_callback(self._unheld.switch, None)

    def hold(self, wait: float) -> bool:
        """Wait ``wait`` seconds, reading nothing: the client's input stays in the kernel.

        False if the wait was cut short because the connection is no longer
        open or the client hung up. The kernel stops the client when its
        buffers fill, and the hangup watch ends the wait early if the client
        goes away (as do a close or an abort). The reader greenlet waits: the
        client is busy, not idle, and parking it for every line would cost
        more than the wait. Front-ends use it too (the password gate's pause).
        """
        hub = gevent.get_hub()
        unheld = self._unheld = Waiter(hub)
        timer = hub.loop.timer(wait)
        timer.start(unheld.switch, None)
        self._hangups.add(self._sock.fileno(), self)
        try:
            unheld.get()
        finally:
            timer.close()
            self._unheld = None
        return self._connection.state is OPEN and self._input is not HUNG_UP

    def hung_up(self, reset: bool) -> None:
        """The client reset, or closed its end, while its input waited for the rate limit.

        Either way it is gone: what it sent beyond what the rate limit let
        through is never handled. After a reset it is owed nothing more; after
        a FIN it may still be reading, so it gets its last lines as usual.
        """
        if reset:
            self._connection.abort(CLOSED)
        elif self._unheld is not None:
            self._input = HUNG_UP
            self.wake()
        # Else its reader is running within the rate: it reads up to the end of stream itself.

    def kill(self) -> None:
        """Stop the reader greenlet, if another one runs (the end of a shutdown's grace period)."""
        runner = self._greenlet
        if runner is not None and runner is not gevent.getcurrent():
            gevent.get_hub().loop.run_callback(self._exit, runner)

    def _exit(self, runner: greenlet.greenlet) -> None:
        # Only if it still runs this reader: a pooled greenlet may have gone on to another.
        current = self._greenlet
        if current is not None and current is runner:
            current.throw(gevent.GreenletExit)

    def release(self) -> None:
        """Stop watching the socket: it is about to be closed."""
        for watcher in (self._watcher, self._timer):
            if watcher is not None:
                watcher.close()
        self._watcher = self._timer = None
        self._hangups.discard(self._sock.fileno())

    def read(self) -> None:
        """What every reader greenlet runs: read until parked, or end the connection.

        Either way the greenlet is this reader's no more (a spare one goes on to others).
        """
        try:
            try:
                reason = self._read_until_blocked()
            except Exception:
                log.exception("%s: internal error", self._connection.peer)
                self._connection.abort(SERVER_ERROR)
                reason = CLOSED
            if reason is not None:
                self._connection.end(reason)
        except gevent.GreenletExit:
            pass
        finally:
            self._greenlet = None

    def _park(self) -> None:
        """No input: wait for some (or the end of stream) without a greenlet."""
        self._greenlet = None
        # The input watcher sees a hangup now: the kernel holds no input of the client's.
        self._hangups.discard(self._sock.fileno())
        if self._watcher is None:
            self._watcher = gevent.get_hub().loop.io(self._sock.fileno(), 1)
        self._watcher.start(self._ready)
        if self._idle:
            self._set_timer(self._deadline - time.monotonic())

    def _set_timer(self, seconds: float) -> None:
        if self._timer is not None:
            self._timer.close()
        self._timer = gevent.get_hub().loop.timer(max(seconds, 0.0))
        self._timer.start(self._ready)

    def _ready(self) -> None:
        """Input, the end of stream or the idle deadline: the parked connection's watcher fired.

        In the event loop's greenlet, which switches to a reader at once, as
        gevent wakes a greenlet waiting on a socket, and gets back control when
        it parks or waits: a loop callback fewer for every input.
        """
        if self._greenlet is None:
            self._unwatch()
            runner = self._greenlet = self._readers.take()
            runner.switch(self)

    def _unwatch(self) -> None:
        for watcher in (self._watcher, self._timer):
            if watcher is not None:
                watcher.stop()

    def _read_until_blocked(self) -> Optional[str]:
        """Handle input until the reader parks (None) or the connection must end (why).

        Input is read only when every frame read before has been handled, and
        then, under a rate limit, only about as much as may be handled at once
        (the tokens in the bucket, at least room for one whole frame). The
        reader waits for the token of a frame before handling it, and
        meanwhile the rest stays in the kernel. The end of stream (or a FIN
        noticed while waiting) is the end of the connection: frames still
        waiting for the rate limit then are dropped, so input cannot keep a
        departed client here. Once the chat is closing, frames are read and
        dropped, with no rate limit.
        """
        connection = self._connection
        dialect = self._dialect
        recv = self._recv
        held = self._held
        framer = self._framer
        chat = self._chat
        bucket = self._bucket
        idle = self._idle
        timed = bucket is not None or idle
        now = 0.0
        handled = False
        while connection.state is OPEN and self._input is not HUNG_UP:
            if timed:
                now = time.monotonic()
            frame = framer.next()
            if frame is None:
                if self._input is ENDED:
                    return CLOSED
                if idle and now >= self._deadline:
                    # No whole frame came in time (frames in hand do count).
                    dialect.timed_out()
                    return IDLE_TIMEOUT
                if handled and (held is None or not held()):
                    # Back through the event loop before reading more: the
                    # flusher flushes what was handled, and the next read comes
                    # in the next loop turn, with every other connection's input
                    # that is ready by then (the watcher fires at once if more is
                    # waiting). gevent's recv returns at once while data waits, so
                    # reading on would starve the others; so would yielding with
                    # gevent.sleep(0), which stays among the loop's callbacks, run
                    # until none is left: each flush of a big room came back to a
                    # sending client's next read while the others' input waited
                    # (seconds, in a capacity run: tests/perf/README.md).
                    self._park()
                    return None
                try:
                    data = recv(self._recv_size(now))
                except BlockingIOError:
                    self._park()
                    return None
                except OSError:
                    return CLOSED
                if data:
                    framer.feed(data)
                else:
                    self._input = ENDED
                    framer.finish()
                continue
            if bucket is not None and not chat.closing:
                wait = bucket.take(now)
                if wait:
                    if self._input is ENDED:
                        return CLOSED
                    if not self.hold(wait):
                        break
                    now += wait
            if not chat.closing:
                dialect.handle(frame)
            handled = True
            if idle:
                self._deadline = now + idle
        return SHUTDOWN if chat.closing else CLOSED

    def _recv_size(self, now: float) -> int:
        """How much to read: what the rate limit lets through now, so the rest waits in the kernel.

        At most as many bytes as there are tokens (a frame is at least a
        byte), but always room to complete one frame of the front-end's
        largest size.
        """
        bucket = self._bucket
        if bucket is None:
            return RECV_SIZE
        tokens = int(bucket.available(now))
        if tokens >= RECV_SIZE:
            return RECV_SIZE
        return min(max(tokens, self._dialect.max_frame - self._framer.buffered), RECV_SIZE)
