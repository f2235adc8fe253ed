"""The listening side: admission limits, one Session per connection, shutdown.

Built on gevent's StreamServer, which accepts in the event loop and spawns the
handler in a greenlet from our pool; the pool is what lets ``shutdown`` wait
for every session and then cut off the ones that would not finish in time.
"""

import logging
import socket
import time
from collections import Counter

from gevent.pool import Pool
from gevent.server import StreamServer
from gevent.socket import socket as GreenSocket

from gchat import replies
from gchat.config import Config
from gchat.hub import Hub
from gchat.session import Outbox, Session, discard_until_eof, format_peer

log = logging.getLogger("gchat")

LISTEN_BACKLOG = 4096
REJECT_TIMEOUT = 2.0


class ChatServer:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.hub = Hub(history=config.history)
        self._pool = Pool()
        self._outbox = Outbox()
        self._per_address: Counter[str] = Counter()
        self._connections = 0
        self._server = StreamServer(
            (config.host, config.port), self._handle, spawn=self._pool, backlog=LISTEN_BACKLOG
        )

    def start(self) -> None:
        """Bind and listen; raises OSError (e.g. address in use) before serving anyone."""
        self._server.start()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.address[:2]
        return host, port

    def shutdown(self) -> None:
        """Stop accepting, tell everyone, and wait for them up to shutdown_timeout."""
        self._server.close()
        self.hub.shutdown()
        self._pool.join(timeout=self.config.shutdown_timeout)
        self._pool.kill(block=True, timeout=1)

    def _handle(self, sock: GreenSocket, address: tuple[str, int]) -> None:
        try:
            self._serve(sock, address)
        finally:
            sock.close()

    def _serve(self, sock: GreenSocket, address: tuple[str, int]) -> None:
        if self.hub.closing:
            return
        config = self.config
        host = address[0]
        if self._connections >= config.max_clients:
            _reject(sock, replies.SERVER_FULL)
            return
        if config.max_per_ip and self._per_address[host] >= config.max_per_ip:
            _reject(sock, replies.TOO_MANY_FROM_ADDRESS)
            return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._connections += 1
        self._per_address[host] += 1
        session = Session(sock, format_peer(address), self.hub, config, self._outbox)
        try:
            session.serve()
        finally:
            # The place is free once the user has left, even while the
            # socket lingers (for at most shutdown_timeout) to flush.
            self._connections -= 1
            self._per_address[host] -= 1
            if not self._per_address[host]:
                del self._per_address[host]
            session.finish()


def _reject(sock: GreenSocket, line: bytes) -> None:
    """Send the one refusal line and close without a reset that could eat it."""
    deadline = time.monotonic() + REJECT_TIMEOUT
    sock.settimeout(REJECT_TIMEOUT)
    try:
        sock.sendall(line)
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        return
    discard_until_eof(sock, deadline)
