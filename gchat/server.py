"""The listening side: admission limits, one Session per connection, shutdown.

Built on gevent's StreamServer, which accepts in the event loop and spawns the
handler in a greenlet: the session's first reader. The server keeps the set of
open sessions so that ``shutdown`` can wait for every one and then cut off the
ones that would not finish in time.
"""

import socket
import ssl
import time
from collections import Counter
from typing import Optional

from gevent.event import Event
from gevent.server import StreamServer
from gevent.socket import socket as GreenSocket

from gchat import replies
from gchat.bus import Bus, LocalBus
from gchat.config import Config
from gchat.gate import Door
from gchat.hub import BANNED, Hub
from gchat.meter import FULL, TOO_MANY, meter_for
from gchat.operators import OperatorCheck
from gchat.session import SHUTDOWN, Outbox, Session, discard_until_eof, format_peer
from gchat.tls import accept_tls

LISTEN_BACKLOG = 4096
REJECT_TIMEOUT = 2.0


class _Listener(StreamServer):  # type: ignore[misc]  # gevent is untyped
    """A StreamServer that leaves the socket open when the handler returns.

    The handler is only a session's first reader: a session that goes idle
    parks without a greenlet, so the session, not the handler, closes it.
    """

    def do_close(self, sock: GreenSocket, *args: object) -> None:
        pass


class ChatServer:
    def __init__(
        self,
        config: Config,
        tls: Optional[ssl.SSLContext] = None,
        password: Optional[str] = None,
        operators: "Optional[dict[str, str]]" = None,
    ) -> None:
        self.config = config
        self._tls = tls
        self._door = Door(password) if password is not None else None
        self._meter = meter_for(config)
        self._bus = self._meter.bus(_make_bus(config))
        self.hub = Hub(
            history=config.history,
            bus=self._bus,
            announce_limit=config.announce_limit,
            operators=OperatorCheck(operators) if operators else None,
            locked=password is not None,
            on_ban=self._banned,
        )
        self._outbox = Outbox()
        self._per_address: Counter[str] = Counter()
        self._connections = 0
        self._sessions: set[Session] = set()
        self._all_closed = Event()
        self._all_closed.set()
        self._server: Optional[_Listener] = None

    def start(self) -> None:
        """Bind, serve metrics, join the bus, serve.

        Raises OSError (e.g. address in use), MetricsError or BusError before serving anyone.
        """
        listener = _listen(self.config.host, self.config.port, self.config.reuse_port)
        try:
            self._meter.start(self.hub, self._sessions)
            self._bus.start()
        except BaseException:
            listener.close()
            raise
        self._server = _Listener(listener, self._handle)
        self._server.start()

    @property
    def address(self) -> tuple[str, int]:
        assert self._server is not None
        host, port = self._server.address[:2]
        return host, port

    def shutdown(self) -> None:
        """Stop accepting, tell everyone, and wait for them up to shutdown_timeout."""
        assert self._server is not None
        self._server.close()
        self.hub.shutdown()
        self._all_closed.wait(self.config.shutdown_timeout)
        for session in list(self._sessions):
            session.terminate()
        self.hub.close(SHUTDOWN)

    def _handle(self, sock: GreenSocket, address: tuple[str, int]) -> None:
        config = self.config
        peer = format_peer(address)
        if self._tls is not None:
            # Before any limit: a refusal line must go out over TLS too.
            sock = accept_tls(self._tls, sock, peer, config.handshake_timeout)
            if sock is None:
                return
        host = address[0]
        if self.hub.closing:
            self._meter.refused(SHUTDOWN)
            sock.close()
            return
        if self._connections >= config.max_clients:
            self._meter.refused(FULL)
            _reject(sock, replies.SERVER_FULL)
            return
        if config.max_per_ip and self._per_address[host] >= config.max_per_ip:
            self._meter.refused(TOO_MANY)
            _reject(sock, replies.TOO_MANY_FROM_ADDRESS)
            return
        if self.hub.banned(host):
            self._meter.refused(BANNED)
            _reject(sock, replies.BANNED)
            return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._connections += 1
        self._per_address[host] += 1

        def left(cause: str) -> None:
            # The place is free once the user has left, even while the
            # socket lingers (for at most shutdown_timeout) to flush.
            self._meter.left(cause)
            self._connections -= 1
            self._per_address[host] -= 1
            if not self._per_address[host]:
                del self._per_address[host]

        session = self._meter.session_class(
            sock, address, self.hub, config, self._outbox, left, self._closed, self._door
        )
        self._sessions.add(session)
        self._all_closed.clear()
        session.start()

    def _banned(self, address: str) -> None:
        for session in list(self._sessions):
            session.banned(address)

    def _closed(self, session: Session) -> None:
        self._sessions.discard(session)
        if not self._sessions:
            self._all_closed.set()


def _make_bus(config: Config) -> Bus:
    if not config.bus:
        return LocalBus()
    # Imported only here: redis-py needs gevent's patched sockets (python -m
    # gchat patches them first), and a single server needs no Redis at all.
    from gchat.redisbus import RedisBus

    return RedisBus(config.bus, config.history, config.node_timeout)


def _listen(host: str, port: int, reuse_port: bool) -> GreenSocket:
    """A listening socket; with ``reuse_port`` other nodes may listen on the same port.

    SO_REUSEPORT makes the kernel spread new connections over every socket
    bound to the port, which is how several nodes share one machine's cores.
    """
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = GreenSocket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(LISTEN_BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


def _reject(sock: GreenSocket, line: bytes) -> None:
    """Send the one refusal line and close without a reset that could eat it."""
    deadline = time.monotonic() + REJECT_TIMEOUT
    sock.settimeout(REJECT_TIMEOUT)
    try:
        sock.sendall(line)
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    else:
        discard_until_eof(sock, deadline)
    finally:
        sock.close()
