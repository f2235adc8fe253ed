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

Input is read only as fast as ``--rate`` lets it be handled: a reader that
must wait for a token holds at most the few bytes it read last and waits
without reading, leaving the rest in the kernel (TCP back-pressure on the
sender), while a ``HangupWatch`` notices at once if the client closes or
resets meanwhile.

A client that reads too slowly is cut off as soon as more than
``max_backlog`` bytes wait for it; one that is done (``/quit``, idle timeout,
server shutdown) is closed gracefully: its last lines are flushed, a FIN is
sent, and what it still sends is read and discarded until it closes or has
acknowledged everything (bounded in time), so the kernel does not answer it
with a reset that could destroy those last lines.
"""

import fcntl
import logging
import select
import socket
import termios
import time
from typing import Any, Callable, Optional

import gevent
from gevent.hub import Waiter
from gevent.monkey import get_original
from gevent.socket import socket as GreenSocket
from gevent.socket import wait_write

from gchat import line, replies
from gchat.addresses import canonical
from gchat.chat import BANNED, KICKED, Chat, Client
from gchat.commands import Command, Pass, parse
from gchat.config import Config
from gchat.framing import Frame, LineFramer, TooLong
from gchat.gate import Door, PasswordGate, Verdict
from gchat.ratelimit import TokenBucket
from gchat.sanitize import sanitize

log = logging.getLogger("gchat")

RECV_SIZE = 65536
CLOSED = "connection closed"
SHUTDOWN = "server shutdown"
# A lingering connection is checked at once, then at intervals that double up to the last.
LINGER_FIRST_CHECK = 0.01
LINGER_LAST_CHECK = 0.5
# FIN (EPOLLRDHUP), reset (EPOLLERR, with EPOLLHUP): never plain input.
_HANGUP = select.EPOLLRDHUP | select.EPOLLERR | select.EPOLLHUP
_RESET = select.EPOLLERR | select.EPOLLHUP
# An int for ioctl to fill in, as bytes: zero.
_ZERO = bytes(4)
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


class HangupWatch:
    """Notices clients that close or reset while their input waits for the rate limit.

    Such a client's socket stays readable all along (its input is left in the
    kernel on purpose), so an io watcher for input would fire at once; what
    matters is only whether the peer sent a FIN (EPOLLRDHUP) or a reset
    (EPOLLERR, EPOLLHUP). One epoll set asks for exactly that, and the event
    loop watches its descriptor: the waiting sessions together cost one
    descriptor and one watcher, and a hangup is seen as it arrives, with no
    polling and however slow ``--rate`` is.
    """

    __slots__ = ("_epoll", "_sessions", "_watcher")

    def __init__(self) -> None:
        # gevent's monkey-patching hides epoll, since it cannot make it cooperative;
        # it need not: the set is only ever polled when the event loop says it is ready.
        self._epoll = get_original("select", "epoll")()
        self._sessions: dict[int, Session] = {}
        self._watcher = gevent.get_hub().loop.io(self._epoll.fileno(), 1)

    def add(self, fileno: int, session: "Session") -> None:
        """Watch ``fileno`` until discarded (kept across a client's holds: no syscall per line)."""
        if fileno in self._sessions:
            return
        self._epoll.register(fileno, _HANGUP)
        self._sessions[fileno] = session
        if len(self._sessions) == 1:
            self._watcher.start(self._ready)

    def discard(self, fileno: int) -> None:
        """Stop watching ``fileno`` (before it is closed: a new connection may reuse the number)."""
        if self._sessions.pop(fileno, None) is not None:
            self._epoll.unregister(fileno)
            if not self._sessions:
                self._watcher.stop()

    def _ready(self) -> None:
        for fileno, events in self._epoll.poll(0):
            session = self._sessions.get(fileno)
            if session is not None:
                self.discard(fileno)
                session.hung_up(reset=bool(events & _RESET))


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
        "_hangup",
        "_hangups",
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
        "_unheld",
        "_watcher",
        "_writer",
    )

    def __init__(
        self,
        sock: GreenSocket,
        address: "tuple[str, int]",
        hub: Chat,
        config: Config,
        outbox: Outbox,
        hangups: HangupWatch,
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
        self._hangups = hangups
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
        # The client closed or half-closed while its input waited for the rate limit.
        self._hangup = False
        self._left = False
        self._framer = LineFramer(config.max_line)
        # While the reader waits for the rate limit: switching it ends the wait early.
        self._unheld: Optional[Waiter] = None
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
        # Parked (the hub closed an idle client, e.g. a kick): a reader must end
        # the session, or it would hold its place until the client spoke; one
        # waiting for the rate limit must not wait on.
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
        client = self._client = self._hub.connect(self, self._host, replies.LINES)
        assert client is not None  # a guest nick is never taken
        if log.isEnabledFor(logging.INFO):
            log.info("%s connected as %s", self._peer, client.nick)

    def shut_down(self) -> None:
        """Server shutdown, for a client still outside the hub (no password yet): the hub tells the others."""
        if self._client is None:
            self.deliver(replies.SHUTTING_DOWN)
            self.close()

    def terminate(self) -> None:
        """Cut the connection at once (the end of a shutdown's grace period)."""
        self._aborted = self._aborted or SHUTDOWN
        self._closed = True
        for greenlet in (self._reader, self._writer):
            if greenlet is not None and greenlet is not gevent.getcurrent():
                greenlet.kill(block=False)
        self._release()

    def hung_up(self, reset: bool) -> None:
        """The client reset, or closed its end, while its input waited for the rate limit.

        Either way it is gone: what it sent beyond what the rate limit let
        through is never handled. After a reset it is owed nothing more; after
        a FIN it may still be reading, so it gets its last lines as usual.
        """
        if reset:
            self._abort(CLOSED)
        elif self._unheld is not None:
            self._hangup = True
            self._wake()
        # Else its reader is running within the rate: it reads up to the end of stream itself.

    def _read(self) -> None:
        """The body of every reader greenlet: read until parked, or end the session."""
        try:
            reason = self._read_until_blocked()
            if reason is None:
                return
        except gevent.GreenletExit:
            return
        except Exception:
            log.exception("%s: internal error", self._peer)
            self._aborted = self._aborted or "server error"
            reason = CLOSED
        self._end(reason)

    def _park(self) -> None:
        """No input: wait for some (or the end of stream) without a greenlet."""
        self._reader = None
        # The input watcher sees a hangup now: the kernel holds no input of the client's.
        self._hangups.discard(self._sock.fileno())
        if self._watcher is None:
            self._watcher = gevent.get_hub().loop.io(self._sock.fileno(), 1)
        self._watcher.start(self._wake)
        if self._config.idle_timeout:
            self._set_timer(self._deadline - time.monotonic())

    def _hold(self, wait: float) -> bool:
        """Wait ``wait`` seconds for a token, reading nothing: the client's input stays in the kernel.

        The kernel stops the client when its buffers fill, and the hangup watch
        ends the wait early if the client goes away (as do a close or an abort).
        The reader greenlet waits: the client is busy, not idle, and parking it
        for every line would cost more than the wait.
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
        return not (self._closed or self._hangup)

    def _set_timer(self, seconds: float) -> None:
        if self._timer is not None:
            self._timer.close()
        self._timer = gevent.get_hub().loop.timer(max(seconds, 0.0))
        self._timer.start(self._wake)

    def _wake(self) -> None:
        """Input, end of stream, the idle deadline, a hangup or an abort: a reader takes over.

        If the reader is waiting for the rate limit, it stops waiting.
        """
        if self._reader is None:
            self._unwatch()
            self._reader = gevent.spawn(self._read)
        elif self._unheld is not None:
            # From the event loop: this may run in any greenlet. A switch that comes
            # after the timer's is ignored (the waiter is done then).
            gevent.get_hub().loop.run_callback(self._unheld.switch, None)

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
        # the socket), one waiting for the rate limit stops waiting, a parked
        # session gets a reader now. No exception is thrown into a reader: one
        # spawned but not yet started would never run, and never leave the hub.
        writer = self._writer
        if writer is not None and writer is not gevent.getcurrent():
            writer.kill(block=False)
        self._wake()

    def _read_until_blocked(self) -> Optional[str]:
        """Handle input until the session parks (None) or must end (why).

        Input is read only when every line read before has been handled, and
        then, under a rate limit, only about as much as may be handled at once
        (the tokens in the bucket, at least room for one ``--max-line`` line).
        The reader waits for the token of a line before handling it, and
        meanwhile the rest stays in the kernel. The end of stream (or a FIN noticed while
        waiting) is the end of the session: lines still waiting for the rate
        limit then are dropped, so input cannot keep a departed client here.
        """
        sock = self._sock
        framer = self._framer
        bucket = self._bucket
        idle = self._config.idle_timeout
        timed = bucket is not None or idle
        now = 0.0
        handled = False
        while not self._closed and not self._hangup:
            if timed:
                now = time.monotonic()
            frame = framer.next()
            if frame is None:
                if self._eof:
                    return CLOSED
                if idle and now >= self._deadline:
                    # No whole line came in time (lines in hand do count).
                    self.deliver(replies.IDLE_TIMEOUT)
                    return "idle timeout"
                if handled:
                    # Let every other ready greenlet run, and then the outbox
                    # flush them all: gevent's recv returns at once while data
                    # is waiting, so a flooding client would starve the others.
                    handled = False
                    gevent.sleep(0)
                    continue
                try:
                    data = sock.recv(self._recv_size(now))
                except BlockingIOError:
                    self._park()
                    return None
                except OSError:
                    return CLOSED
                if data:
                    framer.feed(data)
                else:
                    self._eof = True
                    framer.finish()
                continue
            if bucket is not None and not self._hub.closing:
                wait = bucket.take(now)
                if wait:
                    if self._eof:
                        return CLOSED
                    if not self._hold(wait):
                        break
                    now += wait
            self._handle(frame)
            handled = True
            if idle:
                self._deadline = now + idle
        return SHUTDOWN if self._hub.closing else CLOSED

    def _recv_size(self, now: float) -> int:
        """How much to read: what the rate limit lets through now, so the rest waits in the kernel.

        At most as many bytes as there are tokens (a line is at least a byte),
        but always room to complete one line of ``--max-line`` bytes.
        """
        bucket = self._bucket
        if bucket is None:
            return RECV_SIZE
        room = self._config.max_line + 2 - self._framer.buffered
        return min(max(int(bucket.available(now)), room), RECV_SIZE)

    def _handle(self, frame: Frame) -> None:
        """One line of input; after shutdown began, nothing is handled any more."""
        if self._hub.closing:
            return
        if isinstance(frame, TooLong):
            self.deliver(replies.line_too_long(self._config.max_line))
            return
        command = parse(sanitize(frame))
        if command is None:
            return
        client = self._client
        if client is not None:
            line.execute(self._hub, client, command, self._gate is not None)
        else:
            self._knock(command)

    def _knock(self, command: Command) -> None:
        """A line before the password: the gate answers; the right password admits."""
        gate = self._gate
        assert gate is not None
        if isinstance(command, Pass) and not gate.opens(command):
            # Wrong tries from this address, on any connection, delay the answer to its
            # next wrong one (a right one is let in at once, even from a guesser's address,
            # behind a NAT); the reader reads nothing meanwhile, so one connection has one
            # guess in flight. The wait is a hold like the rate limit's: a hangup ends it.
            while (pause := gate.turn(time.monotonic())) > 0:
                if not self._hold(pause):
                    return
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
        self._hangups.discard(self._sock.fileno())
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

        Over when the client has closed, or has everything (see ``linger``);
        bounded by ``shutdown_timeout``: a client that neither reads nor closes
        cannot hold the connection open.
        """
        deadline = time.monotonic() + self._config.shutdown_timeout
        self.flush()
        if not self._eof:
            linger(self._sock, deadline, self._written)
        writer = self._writer
        if writer is not None:
            writer.join(max(deadline - time.monotonic(), 0.0))

    def _written(self) -> bool:
        """Whether every byte owed to the client is in the kernel (and so is the FIN)."""
        return self._writer is None and not self._pending


def _nothing_owed() -> bool:
    return True


def linger(sock: GreenSocket, deadline: float, written: Callable[[], bool] = _nothing_owed) -> None:
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


def format_peer(address: tuple[str, int]) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
