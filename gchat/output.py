"""One client's output (the design card's per-client queue) and the shared once-per-turn flush.

``Output`` is the hub's ``Mailbox`` for one connection: ``deliver`` only
appends to a list, so a sender never waits on a recipient's socket, and it
never re-enters the hub. Everything delivered during one loop iteration goes
out with one non-blocking ``send`` per client when the shared ``Flusher``
runs. What the kernel does not take is the backlog; only then does the output
get a writer greenlet, which waits on the socket, pushes the backlog out and
exits. A line to a client that keeps up costs no greenlet switch at all.

A client that reads too slowly is cut off (``SLOW_CONSUMER``) as soon as more
than ``--max-backlog`` bytes wait for it; the connection's lifecycle (see
``gchat.lifecycle``) decides whether output is accepted and whether a FIN
follows it.
"""

import logging
import socket
from typing import TYPE_CHECKING, Any, Optional

import gevent
from gevent.socket import wait_write

from gchat.lifecycle import FIN_AFTER_OUTPUT, OPEN
from gchat.reasons import CLOSED, SERVER_ERROR, SLOW_CONSUMER

if TYPE_CHECKING:
    from gchat.connection import Connection

log = logging.getLogger("gchat")


class Flusher:
    """Outputs with something pending, flushed together once per loop iteration.

    The flush is a loop callback scheduled by the first delivery, so it runs
    after every greenlet that was ready in this iteration (readers with a
    chunk of input, handlers of connections just accepted) has had its turn:
    a burst of lines or of join notices costs one ``send`` per recipient, not
    one per line, as in Redis's event loop. One output whose flush fails (a
    bug, never a socket error: those abort in ``Output.flush``) is aborted
    alone; the others flush all the same, or they would never be marked again.
    """

    __slots__ = ("_dirty", "_scheduled")

    def __init__(self) -> None:
        self._dirty: list[Output] = []
        self._scheduled = False

    def mark(self, output: "Output") -> None:
        if not self._scheduled:
            self._scheduled = True
            gevent.get_hub().loop.run_callback(self.flush)
        self._dirty.append(output)

    def flush(self) -> None:
        self._scheduled = False
        dirty = self._dirty
        if dirty:
            self._dirty = []
            for output in dirty:
                try:
                    output.flush()
                except Exception:
                    output.failed()


class Output:
    """The per-client queue; implements the hub's ``Mailbox``."""

    __slots__ = ("_backlog", "_connection", "_flusher", "_max_backlog", "_pending", "_sock", "_writer")

    def __init__(self, connection: "Connection", sock: Any, flusher: Flusher, max_backlog: int) -> None:
        self._connection = connection
        self._sock = sock
        self._flusher = flusher
        self._max_backlog = max_backlog
        self._pending: list[bytes] = []
        # Bytes delivered but not yet taken by the kernel: pending + in the writer.
        self._backlog = 0
        self._writer: Optional[gevent.Greenlet] = None

    def deliver(self, data: bytes) -> None:
        if self._connection.state is not OPEN:
            return
        backlog = self._backlog + len(data)
        self._backlog = backlog
        if backlog > self._max_backlog:
            self._connection.abort(SLOW_CONSUMER)
            return
        if not self._pending and self._writer is None:
            self._flusher.mark(self)
        self._pending.append(data)

    def close(self) -> None:
        """No more output after what is pending; then a FIN."""
        self._connection.close()

    @property
    def queued(self) -> int:
        """Bytes delivered for the client that the kernel has not taken yet."""
        return self._backlog

    def written(self) -> bool:
        """Whether every byte delivered is in the kernel."""
        return self._writer is None and not self._pending

    def flush(self) -> None:
        """Try to hand everything pending to the kernel now, without waiting.

        Runs in whatever greenlet flushes (even the event loop's), so it must
        never block: the part the kernel refuses goes to a writer.
        """
        pending = self._pending
        if not pending or self._writer is not None:
            return
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        try:
            sent = self._sock.send(data, 0, timeout=0.0)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._connection.abort(CLOSED)
            return
        self._backlog -= sent
        if sent < len(data):
            pending.append(data[sent:])
            self._writer = gevent.spawn(self._write_backlog)
        elif self._connection.state in FIN_AFTER_OUTPUT:
            self.finish()

    def failed(self) -> None:
        """A flush raised: a bug, logged; this connection alone is dropped."""
        log.exception("%s: internal error", self._connection.peer)
        self._connection.abort(SERVER_ERROR)

    def finish(self) -> None:
        """The FIN after the last byte (call once ``written``)."""
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._connection.abort(CLOSED)

    def drop(self) -> None:
        """Forget everything queued and stop the writer: nothing more is owed."""
        self._pending.clear()
        self._backlog = 0
        writer = self._writer
        if writer is not None:
            self._writer = None
            if writer is not gevent.getcurrent():
                writer.kill(block=False)

    def join(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the writer, if any, to push the backlog out."""
        writer = self._writer
        if writer is not None:
            writer.join(timeout)

    def _write_backlog(self) -> None:
        """Push the backlog out, waiting on the socket as long as it takes; then exit."""
        pending = self._pending
        sock = self._sock
        fileno = sock.fileno()
        try:
            while pending:
                data = memoryview(b"".join(pending))
                pending.clear()
                while data:
                    # The socket is non-blocking (timeout 0) for the reader's
                    # sake, so wait for room explicitly, for as long as it takes.
                    wait_write(fileno)
                    try:
                        sent = sock.send(data, 0, timeout=0.0)
                    except BlockingIOError:
                        continue
                    self._backlog -= sent
                    data = data[sent:]
            self._writer = None
            if self._connection.state in FIN_AFTER_OUTPUT:
                self.finish()
        except OSError:
            self._connection.abort(CLOSED)
