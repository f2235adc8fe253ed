"""One connection: a reader greenlet while it has input, a writer while it has a backlog.

A reader frames, sanitizes and parses what the client sends and hands commands
to the hub. The hub fans lines out by calling ``deliver``, which only appends
to this session's pending list, so a sender never waits on a recipient's
socket. When the socket has no more input the reader ends and the session
parks on an io watcher, holding no greenlet until the client sends again.

Output is coalesced: everything delivered during one loop iteration goes out
with one non-blocking ``send`` per recipient when the shared ``Outbox``
flushes. What the kernel does not take is the backlog; only then is a writer
greenlet spawned to push it out, and it exits when the backlog is gone. A line
to a client that keeps up costs no greenlet switch at all.

A client that reads too slowly is cut off as soon as more than
``max_backlog`` bytes wait for it; one that is done (``/quit``, idle timeout,
server shutdown) is closed gracefully: its last lines are flushed, a FIN is
sent, and what it still sends is read and discarded for a bounded time so the
kernel does not answer it with a reset that could destroy those last lines.
"""

import logging
import socket
import time
from typing import Any, Callable, Optional

import gevent
from gevent.socket import socket as GreenSocket
from gevent.socket import wait_write

from gchat import replies
from gchat.addresses import canonical
from gchat.commands import Command, Pass, parse
from gchat.config import Config
from gchat.framing import Frame, LineFramer, TooLong
from gchat.gate import Door, PasswordGate, Verdict
from gchat.hub import BANNED, KICKED, Client, Hub
from gchat.ratelimit import TokenBucket
from gchat.sanitize import sanitize

log = logging.getLogger("gchat")

RECV_SIZE = 65536
CLOSED = "connection closed"
SHUTDOWN = "server shutdown"
# What on_left is told when a client left by /quit (its room was told the client's own
# words), and when the password gate closed the connection after the last wrong try.
QUIT = "quit"
WRONG_PASSWORD = "wrong password"


class Outbox:
    """Sessions with pending output, flushed together once per loop iteration.

    The flush is a loop callback scheduled by the first delivery, so it runs
    after every greenlet that was ready in this iteration (readers with a
    chunk of input, handlers of connections just accepted) has had its turn:
    a burst of lines or of join notices costs one ``send`` per recipient,
    not one per line, as in Redis's event loop.
    """

    __slots__ = ("_dirty", "_scheduled")

    def __init__(self) -> None:
        self._dirty: list[Session] = []
        self._scheduled = False

    def mark(self, session: "Session") -> None:
        if not self._scheduled:
            self._scheduled = True
            gevent.get_hub().loop.run_callback(self.flush)
        self._dirty.append(session)

    def flush(self) -> None:
        self._scheduled = False
        dirty = self._dirty
        if dirty:
            self._dirty = []
            for session in dirty:
                session.flush()


class Session:
    """A connection's state, which outlives any one greenlet.

    While the client sends nothing the session holds no greenlet at all, only
    an io watcher on its socket (and a timer with ``--idle-timeout``): on
    CPython 3.11+ a parked greenlet costs 6-8 KiB (its saved C stack and a
    page of frame stack), several times everything else a connection needs.
    Input wakes a fresh reader greenlet that runs until the socket would block
    again. The StreamServer handler greenlet is simply the first reader.
    """

    __slots__ = (
        "_aborted",
        "_backlog",
        "_bucket",
        "_client",
        "_closed",
        "_config",
        "_deadline",
        "_eof",
        "_framer",
        "_gate",
        "_host",
        "_hub",
        "_left",
        "_max_backlog",
        "_on_closed",
        "_on_left",
        "_outbox",
        "_peer",
        "_pending",
        "_reader",
        "_sock",
        "_timer",
        "_turned_away",
        "_watcher",
        "_writer",
    )

    def __init__(
        self,
        sock: GreenSocket,
        address: "tuple[str, int]",
        hub: Hub,
        config: Config,
        outbox: Outbox,
        on_left: Callable[[str], None],
        on_closed: Callable[["Session"], None],
        door: Optional[Door] = None,
    ) -> None:
        self._sock = sock
        self._host = address[0]
        self._peer = format_peer(address)
        # With a server password the client stays outside the hub until it knows it.
        self._gate = PasswordGate(door, self._host) if door is not None else None
        self._hub = hub
        self._config = config
        self._outbox = outbox
        self._on_left = on_left
        self._on_closed = on_closed
        self._max_backlog = config.max_backlog
        self._pending: list[bytes] = []
        # Bytes delivered but not yet taken by the kernel: pending + in the writer.
        self._backlog = 0
        self._closed = False
        self._aborted: Optional[str] = None
        # Why the connection was closed before it got into the chat, if it was.
        self._turned_away: Optional[str] = None
        self._eof = False
        self._left = False
        self._framer = LineFramer(config.max_line)
        now = time.monotonic()
        self._bucket = TokenBucket(config.rate, config.burst, now) if config.rate else None
        self._deadline = now + config.idle_timeout
        self._client: Optional[Client] = None
        self._reader: Optional[gevent.Greenlet] = None
        self._writer: Optional[gevent.Greenlet] = None
        self._watcher: Any = None
        self._timer: Any = None

    def deliver(self, data: bytes) -> None:
        if self._closed:
            return
        backlog = self._backlog + len(data)
        self._backlog = backlog
        if backlog > self._max_backlog:
            self._abort("slow consumer")
            return
        if not self._pending and self._writer is None:
            self._outbox.mark(self)
        self._pending.append(data)

    @property
    def queued(self) -> int:
        """Bytes delivered for the client that the kernel has not taken yet."""
        return self._backlog if self._aborted is None else 0

    def close(self) -> None:
        """No more output after what is pending; then a FIN."""
        if self._closed:
            return
        self._closed = True
        if not self._pending and self._writer is None:
            self._shutdown_output()
        if self._reader is None and self._watcher is not None:
            # Parked (the hub closed an idle client, e.g. a kick): a reader must
            # end the session, or it would hold its place until the client spoke.
            self._wake()

    def flush(self) -> None:
        """Try to hand everything pending to the kernel now, without waiting.

        Runs in whatever greenlet flushes the outbox (even the event loop's),
        so it must never block: the part the kernel refuses goes to a writer.
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
            self._abort(CLOSED)
            return
        self._backlog -= sent
        if sent < len(data):
            pending.append(data[sent:])
            self._writer = gevent.spawn(self._write_backlog)
        elif self._closed and self._aborted is None:
            self._shutdown_output()

    def start(self) -> None:
        """Greet and admit the client, then read; called in the StreamServer handler."""
        self._reader = gevent.getcurrent()
        self._sock.settimeout(0.0)
        self.deliver(replies.WELCOME)
        if self._gate is None:
            self._admit()
        else:
            self.deliver(replies.NEEDS_PASSWORD)
        self._read()

    def _admit(self) -> None:
        if self._hub.banned(self._host):
            # Every way into the chat checks the bans here, whatever was checked at accept.
            self._turn_away(replies.BANNED, BANNED)
            return
        client = self._client = self._hub.connect(self, self._host)
        if log.isEnabledFor(logging.INFO):
            log.info("%s connected as %s", self._peer, client.nick)

    def terminate(self) -> None:
        """Cut the connection at once (the end of a shutdown's grace period)."""
        self._aborted = self._aborted or SHUTDOWN
        self._closed = True
        for greenlet in (self._reader, self._writer):
            if greenlet is not None and greenlet is not gevent.getcurrent():
                greenlet.kill(block=False)
        self._release()

    def _read(self) -> None:
        """The body of every reader greenlet: read until parked, or end the session."""
        try:
            reason = self._read_until_blocked()
            if reason is None:
                self._park()
                return
        except gevent.GreenletExit:
            return
        except Exception:
            log.exception("%s: internal error", self._peer)
            self._aborted = self._aborted or "server error"
            reason = CLOSED
        self._end(reason)

    def _park(self) -> None:
        self._reader = None
        loop = gevent.get_hub().loop
        if self._watcher is None:
            self._watcher = loop.io(self._sock.fileno(), 1)
        self._watcher.start(self._wake)
        if self._config.idle_timeout:
            if self._timer is not None:
                self._timer.close()
            self._timer = loop.timer(max(self._deadline - time.monotonic(), 0.0))
            self._timer.start(self._wake)

    def _wake(self) -> None:
        """Input, end of stream, the idle deadline or an abort: a reader takes over."""
        if self._reader is not None:
            return
        self._unwatch()
        self._reader = gevent.spawn(self._read)

    def _unwatch(self) -> None:
        for watcher in (self._watcher, self._timer):
            if watcher is not None:
                watcher.stop()

    def _abort(self, reason: str) -> None:
        """Drop the connection now: nothing more is owed to this client."""
        if self._aborted is not None:
            return
        self._aborted = reason
        self._closed = True
        self._pending.clear()
        # A running reader sees _closed at its next check (it never blocks on
        # the socket; at worst it finishes a rate-limit pause); a parked session
        # gets a reader now. No exception is thrown into a reader: one that was
        # spawned but not yet started would never run, and never leave the hub.
        writer = self._writer
        if writer is not None and writer is not gevent.getcurrent():
            writer.kill(block=False)
        if self._reader is None:
            self._wake()

    def _read_until_blocked(self) -> Optional[str]:
        """Handle input until the socket has none (None) or the session must end (why)."""
        sock = self._sock
        framer = self._framer
        idle = self._config.idle_timeout
        while not self._closed:
            if idle and time.monotonic() >= self._deadline:
                self.deliver(replies.IDLE_TIMEOUT)
                return "idle timeout"
            try:
                data = sock.recv(RECV_SIZE)
            except BlockingIOError:
                return None
            except OSError:
                return CLOSED
            if not data:
                self._eof = True
                self._handle_all(framer.finish())
                return CLOSED
            frames = framer.feed(data)
            if frames:
                self._handle_all(frames)
                if idle:
                    self._deadline = time.monotonic() + idle
                # Let every other ready greenlet run, and then the outbox flush
                # them all: gevent's recv returns at once while data is waiting,
                # so a flooding client would otherwise starve the other readers.
                gevent.sleep(0)
        return SHUTDOWN if self._hub.closing else CLOSED

    def _handle_all(self, frames: "list[Frame]") -> None:
        hub = self._hub
        client = self._client
        bucket = self._bucket
        for frame in frames:
            if bucket is not None:
                wait = bucket.take(time.monotonic())
                if wait:
                    gevent.sleep(wait)
            if self._closed or hub.closing:
                return
            if isinstance(frame, TooLong):
                self.deliver(replies.line_too_long(self._config.max_line))
                continue
            command = parse(sanitize(frame))
            if command is None:
                continue
            if client is not None:
                hub.execute(client, command)
            else:
                client = self._knock(command)

    def _knock(self, command: Command) -> Optional[Client]:
        """A line before the password: the gate answers; the right password admits."""
        gate = self._gate
        assert gate is not None
        if isinstance(command, Pass):
            # Wrong tries from this address, on any connection, delay its next check.
            while not self._closed and (pause := gate.turn(time.monotonic())) > 0:
                gevent.sleep(pause)
            if self._closed:
                return None
        reply, verdict = gate.knock(command, time.monotonic())
        if verdict is Verdict.WRONG or verdict is Verdict.LAST:
            log.warning(
                "%s wrong password; next try from %s checked in %.1f s",
                self._peer,
                self._host,
                gate.turn(time.monotonic()),
            )
        if verdict is Verdict.ADMIT:
            self._admit()
        elif verdict is Verdict.QUIT or verdict is Verdict.LAST:
            self._turn_away(reply, QUIT if verdict is Verdict.QUIT else WRONG_PASSWORD)
        elif reply is not None:
            self.deliver(reply)
        return self._client

    def _turn_away(self, line: Optional[bytes], reason: str) -> None:
        """Close a connection that never got into the chat, ``line`` its last."""
        if line is not None:
            self.deliver(line)
        self._turned_away = reason
        self.close()

    def banned(self, address: str) -> None:
        """A ban of ``address`` (canonical) reaches a client still at the password prompt.

        Clients in the chat are kicked by the hub; this one is known to no one but its session.
        """
        if (
            self._client is None
            and self._gate is not None
            and not self._closed
            and canonical(self._host) == address
        ):
            self._turn_away(replies.BANNED, BANNED)

    def _end(self, reason: str) -> None:
        """Leave the chat, then give the client its last lines (in a reader greenlet)."""
        client = self._client
        if not self._left:
            self._left = True
            cause = self._cause(reason)
            if client is not None:
                self._hub.leave(client, cause)
            self._on_left(cause)
            if log.isEnabledFor(logging.INFO):
                who = client.nick if client is not None else "(no password)"
                why = client.quit_reason if client is not None else cause
                log.info("%s %s disconnected (%s)", self._peer, who, why)
        try:
            if self._aborted is None:
                self.close()
                self._linger()
        finally:
            self._release()

    def _cause(self, reason: str) -> str:
        """Why the client goes, in the server's words: never a /quit's reason, which is free text."""
        client = self._client
        if client is not None and not client.connected:
            # The hub let it go already: by its /quit, or an operator's /kick or /ban.
            return KICKED if client.kicked else QUIT
        return self._aborted or self._turned_away or reason

    def _release(self) -> None:
        """Free everything the connection holds; the last step, whatever the path."""
        self._closed = True
        self._pending.clear()
        for watcher in (self._watcher, self._timer):
            if watcher is not None:
                watcher.close()
        self._watcher = self._timer = None
        writer = self._writer
        if writer is not None and writer is not gevent.getcurrent():
            writer.kill(block=False)
        self._sock.close()
        self._on_closed(self)

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
            if self._closed and self._aborted is None:
                self._shutdown_output()
        except OSError:
            self._abort(CLOSED)

    def _shutdown_output(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._abort(CLOSED)

    def _linger(self) -> None:
        """Let the client take its last lines, reading and discarding meanwhile.

        Bounded by ``shutdown_timeout``: a client that neither reads nor closes
        cannot hold the connection open.
        """
        deadline = time.monotonic() + self._config.shutdown_timeout
        self.flush()
        if not self._eof:
            discard_until_eof(self._sock, deadline)
        writer = self._writer
        if writer is not None:
            writer.join(max(deadline - time.monotonic(), 0.0))


def discard_until_eof(sock: GreenSocket, deadline: float) -> None:
    """Read and drop input until the peer closes or ``deadline`` (monotonic) passes.

    Closing a socket with unread input makes the kernel send a reset, which may
    destroy the last lines the peer has not read yet; draining first avoids it.
    """
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            sock.settimeout(remaining)
            if not sock.recv(RECV_SIZE):
                return
    except OSError:
        return


def format_peer(address: tuple[str, int]) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
