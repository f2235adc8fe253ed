"""One connection: a reader greenlet, a writer greenlet and the queue between.

The reader (the StreamServer handler greenlet) frames, sanitizes and parses
what the client sends and hands commands to the hub. The hub fans lines out by
calling ``deliver``, which only appends to this session's queue, so a sender
never waits on a recipient's socket. The writer drains the queue, sending all
that has piled up in one ``sendall``.

A client that reads too slowly is cut off as soon as more than
``max_backlog`` bytes wait for it; one that is done (``/quit``, idle timeout,
server shutdown) is closed gracefully: its last lines are flushed, a FIN is
sent, and what it still sends is read and discarded for a bounded time so the
kernel does not answer it with a reset that could destroy those last lines.
"""

import logging
import socket
import time
from typing import Optional, Union

import gevent
from gevent.queue import SimpleQueue

from gchat import replies
from gchat.commands import parse
from gchat.config import Config
from gchat.framing import Frame, LineFramer, TooLong
from gchat.hub import Client, Hub
from gchat.ratelimit import TokenBucket
from gchat.sanitize import sanitize

log = logging.getLogger("gchat")

RECV_SIZE = 65536
CLOSED = "connection closed"
SHUTDOWN = "server shutdown"


class SessionEnd(Exception):
    """Raised into the reader when the connection must end for ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Close:
    """Queued after the last line: the writer sends a FIN once it reaches it."""


_CLOSE = _Close()


class Session:
    __slots__ = (
        "_aborted",
        "_backlog",
        "_closed",
        "_config",
        "_eof",
        "_hub",
        "_peer",
        "_queue",
        "_reader",
        "_sock",
        "_writer",
    )

    def __init__(self, sock: socket.socket, peer: str, hub: Hub, config: Config) -> None:
        self._sock = sock
        self._peer = peer
        self._hub = hub
        self._config = config
        self._queue: SimpleQueue[Union[bytes, _Close]] = SimpleQueue()
        self._backlog = 0
        self._closed = False
        self._aborted: Optional[str] = None
        self._eof = False
        self._reader = gevent.getcurrent()
        self._writer: Optional[gevent.Greenlet] = None

    def deliver(self, data: bytes) -> None:
        if self._closed:
            return
        self._backlog += len(data)
        if self._backlog > self._config.max_backlog:
            self._abort("slow consumer")
        else:
            self._queue.put_nowait(data)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put_nowait(_CLOSE)

    def serve(self) -> None:
        """Chat until the client has left the hub; never raises for client behaviour."""
        self._writer = gevent.spawn(self._write_loop)
        self.deliver(replies.WELCOME)
        client = self._hub.connect(self)
        if log.isEnabledFor(logging.INFO):
            log.info("%s connected as %s", self._peer, client.nick)
        reason = CLOSED
        try:
            reason = self._read_loop(client)
        except SessionEnd as end:
            reason = end.reason
        except gevent.GreenletExit:
            self._aborted = self._aborted or SHUTDOWN
            raise
        except Exception:
            log.exception("%s: internal error", self._peer)
            self._aborted = "server error"
        finally:
            self._hub.leave(client, self._aborted or reason)
            if log.isEnabledFor(logging.INFO):
                log.info("%s %s disconnected (%s)", self._peer, client.nick, client.quit_reason)

    def finish(self) -> None:
        """Flush what the client is still owed, within ``shutdown_timeout``.

        A session that was aborted (slow consumer, broken socket, killed at
        the end of a shutdown) is owed nothing and is dropped at once.
        """
        try:
            if self._aborted is None:
                self.close()
                self._linger()
        except SessionEnd:
            pass
        finally:
            if self._writer is not None:
                self._writer.kill(block=False)

    def _abort(self, reason: str) -> None:
        """Drop the connection now: nothing more is owed to this client."""
        if self._aborted is not None:
            return
        self._aborted = reason
        self._closed = True
        # Either greenlet may be the one calling (the writer on a send error,
        # the reader when its own reply overflows): it ends by itself then.
        current = gevent.getcurrent()
        if self._writer is not None and self._writer is not current:
            self._writer.kill(block=False)
        if self._reader is not current:
            self._reader.kill(SessionEnd(reason), block=False)

    def _read_loop(self, client: Client) -> str:
        config = self._config
        sock = self._sock
        framer = LineFramer(config.max_line)
        bucket = TokenBucket(config.rate, config.burst, time.monotonic()) if config.rate else None
        idle = config.idle_timeout
        deadline = time.monotonic() + idle
        while not self._closed:
            if idle:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.deliver(replies.IDLE_TIMEOUT)
                    return "idle timeout"
                sock.settimeout(remaining)
            try:
                data = sock.recv(RECV_SIZE)
            except socket.timeout:
                continue
            except OSError:
                return CLOSED
            if not data:
                self._eof = True
                self._handle_all(client, framer.finish(), None)
                return CLOSED
            frames = framer.feed(data)
            if frames:
                self._handle_all(client, frames, bucket)
                deadline = time.monotonic() + idle
        return SHUTDOWN if self._hub.closing else CLOSED

    def _handle_all(self, client: Client, frames: "list[Frame]", bucket: Optional[TokenBucket]) -> None:
        hub = self._hub
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
            if command is not None:
                hub.execute(client, command)

    def _write_loop(self) -> None:
        queue = self._queue
        sock = self._sock
        try:
            while True:
                chunks = [queue.get()]
                while queue.qsize():
                    chunks.append(queue.get_nowait())
                closing = chunks[-1] is _CLOSE
                if closing:
                    chunks.pop()
                if chunks:
                    data = b"".join(chunks)
                    sock.sendall(data)
                    self._backlog -= len(data)
                if closing:
                    sock.shutdown(socket.SHUT_WR)
                    return
        except OSError:
            self._abort(CLOSED)

    def _linger(self) -> None:
        """Wait for the writer to flush, reading and discarding meanwhile.

        Bounded by ``shutdown_timeout``: a client that neither reads nor closes
        cannot hold the connection open.
        """
        assert self._writer is not None
        deadline = time.monotonic() + self._config.shutdown_timeout
        if not self._eof:
            discard_until_eof(self._sock, deadline)
        self._writer.join(max(deadline - time.monotonic(), 0.0))


def discard_until_eof(sock: socket.socket, deadline: float) -> None:
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
