"""One client connection of any front-end: its output, its reader, its lifecycle.

A ``Connection`` is what the StreamServer's handler starts for each socket
(the design card's "greenlet per connection", except that the greenlet only
lives while there is input: see ``gchat.reader``). It owns the socket, the
``Output`` (the hub's ``Mailbox``, see ``gchat.output``), the ``Reader``, and
the lifecycle state (``gchat.lifecycle.State``); what the bytes mean is left
to its front-end's ``Dialect``.

Writing a front-end (the line protocol, IRC, WebSocket) is implementing
``Dialect`` and passing a factory for it to the ``Connection``::

    class IrcSession:                          # one per connection
        framer: Framer[F]                      # its frames: bytes, TooLong, a text message...
        max_frame: int                         # bytes of the longest frame, its end included
        def __init__(self, connection, ...)    # connection.output is the mailbox to deliver to
        def start(self) -> None                # greet; join the chat (chat.connect) or wait
        def handle(self, frame: F) -> None     # one frame (an over-long one too, e.g. TooLong),
                                               # never once the chat is closing
        def timed_out(self) -> None            # --idle-timeout: deliver the last words
        def shut_down(self) -> None            # server shutdown (the chat tells those in it)
        def banned(self, address: str) -> None # a ban; the chat kicks those in it
        def leave(self, cause: str) -> str     # the connection is over: leave the chat; the cause

Its tools are on the connection: ``output.deliver(bytes)`` (never blocks),
``close(reason)`` (the last lines, then a FIN; ``reason`` from
``gchat.reasons`` if the client never got into the chat), ``abort(reason)``,
``reader.hold(seconds)`` (a pause that reads nothing, cut short by a hangup),
``state``, ``host``, ``peer``. Reading, rate limiting, the idle timer, the
once-per-turn flush, the slow-consumer cut-off, the linger after the last
line and every release are the connection's, the same for every front-end.

A client that is done (``/quit``, idle timeout, server shutdown) is closed
gracefully: its last lines are flushed, a FIN is sent, and what it still
sends is read and discarded until it closes or has acknowledged everything
(bounded in time), so the kernel does not answer it with a reset that could
destroy those last lines.
"""

import fcntl
import logging
import socket
import termios
import time
from typing import Any, Callable, Optional, Protocol

from gevent.socket import socket as GreenSocket

from gchat.addresses import format_peer
from gchat.config import Config
from gchat.lifecycle import ABORTED, CLOSED, CLOSING, LINGERING, OPEN
from gchat.output import Flusher, Output
from gchat.reader import RECV_SIZE, Closing, F, Framer, Reader, Readers

log = logging.getLogger("gchat")

# A lingering connection is checked at once, then at intervals that double up to the last.
LINGER_FIRST_CHECK = 0.01
LINGER_LAST_CHECK = 0.5
# An int for ioctl to fill in, as bytes: zero.
_ZERO = bytes(4)


class Dialect(Protocol[F]):
    """A front-end's protocol on one connection: the only part that knows what the bytes mean."""

    @property
    def framer(self) -> Framer[F]:
        """Its framer, made for the connection: it holds the unfinished frame."""

    @property
    def max_frame(self) -> int:
        """Bytes of the longest frame, its end included: the reader always reads enough for one."""

    def start(self) -> None:
        """The connection is up (in its first reader greenlet): greet, join the chat or wait."""

    def handle(self, frame: F) -> None:
        """One frame of input; may deliver, close, hold. Never called once the chat is closing."""

    def timed_out(self) -> None:
        """No whole frame for ``--idle-timeout``: deliver the last words (the connection then ends)."""

    def shut_down(self) -> None:
        """The server is shutting down: the chat tells its clients; a client outside it is told here."""

    def banned(self, address: str) -> None:
        """``address`` (or a network: gchat.bans) is banned: the chat kicks its clients, one outside goes."""

    def leave(self, cause: str) -> str:
        """The connection is over: leave the chat with ``cause``; the cause to count and log.

        ``cause`` is the server's word (``gchat.reasons``); a front-end may know
        better (a client the chat let go already left by QUIT or KICKED).
        """


class Connection:
    """A connection's state, which outlives any one greenlet."""

    # The output's class; a meter counts deliveries with a subclass.
    output_class: "type[Output]" = Output

    __slots__ = (
        "_dialect",
        "_on_closed",
        "_on_left",
        "_shutdown_timeout",
        "host",
        "output",
        "peer",
        "reader",
        "reason",
        "sock",
        "state",
    )

    def __init__(
        self,
        sock: GreenSocket,
        address: "tuple[str, int]",
        config: Config,
        flusher: Flusher,
        readers: Readers,
        chat: Closing,
        on_left: Callable[["Connection", str], None],
        on_closed: Callable[["Connection"], None],
        dialect: "Callable[[Connection], Dialect[Any]]",
    ) -> None:
        self.sock = sock
        self.host = address[0]
        self.peer = format_peer(address)
        self.state = OPEN
        # Why the connection ends, if the server decided (an abort, a refusal at the password).
        self.reason: Optional[str] = None
        self._on_left = on_left
        self._on_closed = on_closed
        self._shutdown_timeout = config.shutdown_timeout
        self.output = self.output_class(self, sock, flusher, config.max_backlog)
        self._dialect = dialect(self)
        self.reader: Reader[Any] = Reader(self, self._dialect, sock, config, chat, readers)

    @property
    def queued(self) -> int:
        """Bytes delivered for the client that the kernel has not taken yet."""
        return self.output.queued

    def start(self) -> None:
        """Greet and read; called in the StreamServer handler."""
        self.sock.settimeout(0.0)
        self.reader.start()

    def close(self, reason: Optional[str] = None) -> None:
        """No more output after what is queued; then a FIN, and the reader ends the connection."""
        if self.state is not OPEN:
            return
        self.state = CLOSING
        self.output.stop()
        if reason is not None:
            self.reason = reason
        if self.output.written():
            self.output.finish()
        # Parked (the chat closed an idle client, e.g. a kick): a reader must end the
        # connection, or it would hold its place until the client spoke; one waiting
        # for the rate limit must not wait on.
        self.reader.wake()

    def abort(self, reason: str) -> None:
        """Drop the connection now: nothing more is owed to this client."""
        if self.state is ABORTED or self.state is CLOSED:
            return
        self.state = ABORTED
        self.reason = reason
        self.output.drop()
        # A running reader sees the state at its next check (it never blocks on
        # the socket), one waiting for the rate limit stops waiting, a parked
        # connection gets a reader now. No exception is thrown into a reader: one
        # spawned but not yet started would never run, and never leave the chat.
        self.reader.wake()

    def shut_down(self) -> None:
        self._dialect.shut_down()

    def banned(self, address: str) -> None:
        self._dialect.banned(address)

    def terminate(self) -> None:
        """Cut the connection at once (the end of a shutdown's grace period)."""
        self.reader.kill()
        self.release()

    def end(self, reason: str) -> None:
        """Leave the chat, then give the client its last lines (in the reader's greenlet)."""
        self._on_left(self, self._dialect.leave(self.reason or reason))
        try:
            if self.state is not ABORTED:
                self.close()
                if self.state is CLOSING:
                    self.state = LINGERING
                self._linger()
        finally:
            self.release()

    def release(self) -> None:
        """Free everything the connection holds; the last step, whatever the path."""
        if self.state is CLOSED:
            return
        self.state = CLOSED
        self.output.drop()
        self.reader.release()
        self.sock.close()
        self._on_closed(self)

    def _linger(self) -> None:
        """Let the client take its last lines, reading and discarding meanwhile.

        Over when the client has closed, or has everything (see ``linger``);
        bounded by ``shutdown_timeout``: a client that neither reads nor closes
        cannot hold the connection open.
        """
        deadline = time.monotonic() + self._shutdown_timeout
        output = self.output
        output.flush_now()
        if not self.reader.ended:
            linger(self.sock, deadline, output.written)
        output.join(max(deadline - time.monotonic(), 0.0))


def linger(sock: GreenSocket, deadline: float, written: Callable[[], bool]) -> None:
    """Read and drop input until the peer is done with the connection, or ``deadline`` (monotonic).

    Done means it closed its end, or, once ``written()``, it has acknowledged
    every byte and the FIN, with nothing of its input left unread: closing
    then costs it nothing. Closing with input unread makes the kernel send a
    reset instead of a FIN, which may destroy the last lines the peer has not
    read yet, hence the draining. The kernel gives no event for "acknowledged",
    so it is asked between reads, at once and then at doubling intervals.
    """
    check = LINGER_FIRST_CHECK
    try:
        while not (written() and _settled(sock.fileno())):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            sock.settimeout(min(check, remaining))
            try:
                if not sock.recv(RECV_SIZE):
                    return
            except socket.timeout:
                check = min(check * 2, LINGER_LAST_CHECK)
    except OSError:
        return


def _settled(fileno: int) -> bool:
    """Whether the peer acknowledged all that was sent and nothing it sent waits unread.

    SIOCOUTQ (TIOCOUTQ) counts bytes sent but not acknowledged, the FIN
    included; SIOCINQ (FIONREAD) bytes received but not read. Where the kernel
    cannot tell, never: then only the peer's close or the deadline ends a linger.
    """
    try:
        unacknowledged = fcntl.ioctl(fileno, termios.TIOCOUTQ, _ZERO)
        unread = fcntl.ioctl(fileno, termios.FIONREAD, _ZERO)
    except OSError:
        return False
    return unacknowledged == unread == _ZERO
