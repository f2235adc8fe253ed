"""The listening side: admission limits, one Connection per client with its front-end, shutdown.

Built on gevent's StreamServer, which accepts in the event loop and spawns the
handler in a greenlet: the connection's first reader. The server keeps the set
of open connections so that ``shutdown`` can wait for every one and then cut
off the ones that would not finish in time. Each listening port has its
front-end (the line protocol; IRC on ``--irc-port``, and over TLS on
``--ircs-port``; the web page on ``--web-port``): the limits, places and bans
are the same for all of them.
"""

import socket
import ssl
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Optional

from gevent.event import Event
from gevent.socket import socket as GreenSocket

from gchat import replies
from gchat.acceptor import Acceptor, refuse
from gchat.addresses import format_peer, sources
from gchat.budget import budget
from gchat.bus import Bus, LocalBus
from gchat.chat import LOBBY, Chat
from gchat.config import Config
from gchat.connection import Connection, Dialect
from gchat.gate import Door
from gchat.heap import HeapTrimmer
from gchat.meter import meter_for
from gchat.operators import OperatorCheck
from gchat.output import Chorus, Flusher
from gchat.reader import Readers
from gchat.reasons import BANNED, FULL, SHUTDOWN, TOO_FAST, TOO_MANY
from gchat.session import Session
from gchat.tls import accept_tls

if TYPE_CHECKING:
    from gchat.store import Store

LISTEN_BACKLOG = 4096
# TLS handshakes at once whose only purpose is to deliver a refusal line, one per address at
# most; beyond them a refused TLS connection is closed without its line. Part of rlimit.RESERVED_FDS.
TLS_REFUSALS = 16
# Seconds a TLS client that is being refused gets for its handshake (less if --handshake-timeout is).
TLS_REFUSAL_TIMEOUT = 2.0


# What a connection turned away at accept is sent, by reason, on a line client's port.
LINE_REFUSALS = {
    FULL: replies.SERVER_FULL,
    TOO_MANY: replies.TOO_MANY_FROM_ADDRESS,
    TOO_FAST: replies.CONNECTING_TOO_FAST,
    BANNED: replies.BANNED,
}
# The web page's front-end, by name (the log line gives its URL).
WEB = "web"


class CannotListen(Exception):
    """A port cannot be listened on (e.g. it is in use); the message is one line for the user."""


@dataclass(frozen=True)
class _Front:
    """A listening port's front-end: what it is called in the log, its protocol, TLS, refusal lines."""

    name: str
    port: int
    dialect: "Callable[[Connection], Dialect[Any]]"
    tls: Optional[ssl.SSLContext]
    refusals: "Mapping[str, bytes]"


class _SessionServer(Acceptor):
    """An Acceptor that leaves the socket open when the handler returns, and may screen first.

    The handler is only a connection's first reader: a connection that goes
    idle parks without a greenlet, so the connection, not the handler, closes it.
    ``screen``, if given, sees each connection in the accept loop, before a
    greenlet is spawned for it, and says whether it dealt with it (a refusal):
    spawning one was a third of a plain refusal's cost, and a refusal is what
    a client connecting in a loop costs the server.
    """

    def __init__(
        self,
        listener: GreenSocket,
        handle: "Callable[[GreenSocket, tuple[str, int]], None]",
        screen: "Optional[Callable[[GreenSocket, tuple[str, int]], bool]]" = None,
    ) -> None:
        super().__init__(listener, handle)
        self._screen = screen

    def do_handle(self, sock: GreenSocket, address: "tuple[str, int]") -> None:
        if self._screen is None or not self._screen(sock, address):
            super().do_handle(sock, address)

    def do_close(self, sock: GreenSocket, *args: object) -> None:
        pass


class ChatServer:
    def __init__(
        self,
        config: Config,
        tls: Optional[ssl.SSLContext] = None,
        password: Optional[str] = None,
        operators: "Optional[dict[str, str]]" = None,
        store: "Optional[Store]" = None,
    ) -> None:
        self.config = config
        # What --max-per-ip and the other per-address limits count a client's address as.
        self._source = sources(config.ipv4_prefix, config.ipv6_prefix)
        self._door = Door(password, self._source) if password is not None else None
        self._meter = meter_for(config)
        self._bus = self._meter.bus(_make_bus(config))
        self._flusher = Flusher()
        flusher = self._flusher
        self.chat = Chat(
            history=config.history,
            bus=self._bus,
            announce_limit=config.announce_limit,
            joins=budget(config.join_rate, config.join_burst),
            messages=budget(config.msg_rate, config.msg_burst),
            announcements=budget(config.announce_rate, config.announce_burst),
            operators=OperatorCheck(operators, source=self._source) if operators else None,
            on_ban=self._banned,
            # Each room's clients of one style share each loop turn's lines (see gchat.output).
            audience=lambda style: Chorus(flusher),
            keeper=store,
            source=self._source,
        )
        if store is not None:
            self.chat.restore(store.bans(), store.room(LOBBY, config.history))
        self._readers = Readers()
        self._heap = HeapTrimmer()
        self._fronts = self._front_ends(config, tls)
        # Places taken under --max-clients and --max-per-ip: connections, and TLS handshakes in
        # progress; per address, by source (see gchat.addresses.sources).
        self._per_address: Counter[str] = Counter()
        self._connections = 0
        # Connections each source may open (--connect-rate): one connecting and closing in a
        # loop would make the server admit, greet and see off each one (160 µs of CPU here);
        # a refusal costs a line and a close (50 µs).
        self._connects = budget(config.connect_rate, config.connect_burst)
        # Sources with a TLS handshake in progress only to be refused (see TLS_REFUSALS).
        self._refusing: set[str] = set()
        self._open: set[Connection] = set()
        self._all_closed = Event()
        self._all_closed.set()
        # One bound method each for every connection to hold, not one apiece (a few hundred
        # bytes a connection, with a closure).
        self._on_left = self._left
        self._on_closed = self._closed
        self._servers: list[tuple[_Front, _SessionServer]] = []

    def _front_ends(self, config: Config, tls: Optional[ssl.SSLContext]) -> "list[_Front]":
        """The line protocol on ``--port``; IRC on ``--irc-port`` and, over TLS, on ``--ircs-port``;
        the web page on ``--web-port`` (HTTPS with a certificate)."""
        fronts = [
            _Front(
                "",
                config.port,
                partial(Session, chat=self.chat, config=config, door=self._door),
                tls,
                LINE_REFUSALS,
            )
        ]
        # The IRC and web front-ends' modules (and the web's WebSocket and HTTP libraries) are
        # imported only for a port that serves them: a server without them imports in 140 ms,
        # not 200 (the suite starts hundreds of servers), and holds none of their code.
        irc_ports: list[tuple[str, int, Optional[ssl.SSLContext]]] = []
        if config.irc_port is not None:
            irc_ports.append(("IRC", config.irc_port, None))
        if config.ircs_port is not None and tls is not None:
            irc_ports.append(("IRC over TLS", config.ircs_port, tls))
        if irc_ports:
            from gchat.irc import replies as irc_replies
            from gchat.irc.session import IrcSession

            irc = partial(
                IrcSession,
                chat=self.chat,
                config=config,
                door=self._door,
                created=time.strftime("%a %b %d %Y at %H:%M:%S UTC", time.gmtime()),
            )
            fronts += [
                _Front(name, port, irc, context, irc_replies.REFUSALS) for name, port, context in irc_ports
            ]
        if config.web_port:
            from gchat.web.session import WebSession
            from gchat.web.wire import Page, parse_origins, refusal_response

            # The page's files are read once, here.
            page = Page.load(parse_origins(config.web_origin), tls is not None, config.max_line)
            web = partial(WebSession, chat=self.chat, config=config, page=page, door=self._door)
            # The line port's refusals, in an HTTP 503 (the page tries again later).
            refusals = {reason: refusal_response(line) for reason, line in LINE_REFUSALS.items()}
            fronts.append(_Front(WEB, config.web_port, web, tls, refusals))
        return fronts

    def start(self) -> None:
        """Bind every port, serve metrics, join the bus, serve.

        Raises CannotListen (e.g. address in use), MetricsError or BusError before serving anyone.
        """
        listening: list[GreenSocket] = []
        try:
            for front in self._fronts:
                listening.append(_listen(self.config.host, front.port, self.config.reuse_port))
            self._meter.start(self.chat, self._open)
            self._bus.start()
        except BaseException:
            for sock in listening:
                sock.close()
            raise
        for front, sock in zip(self._fronts, listening):
            # A plain port's refusals are sent from the accept loop; a TLS port's need a
            # handshake first, in the connection's greenlet.
            screen = partial(self._screen, front=front) if front.tls is None else None
            server = _SessionServer(sock, partial(self._handle, front=front), screen)
            server.start()
            self._servers.append((front, server))
        self._heap.start()

    @property
    def address(self) -> tuple[str, int]:
        """The line protocol's address."""
        return self.listening()[0][1]

    def listening(self) -> "list[tuple[str, tuple[str, int]]]":
        """Each front-end's name ("" for the line protocol) and the address it listens on."""
        return [(front.name, tuple(server.address[:2])) for front, server in self._servers]

    def shutdown(self) -> None:
        """Stop accepting, tell everyone, and wait for them up to shutdown_timeout."""
        assert self._servers
        for _, server in self._servers:
            server.close()
        self.chat.shutdown()
        for connection in list(self._open):
            connection.shut_down()
        self._all_closed.wait(self.config.shutdown_timeout)
        for connection in list(self._open):
            connection.terminate()
        self.chat.close(SHUTDOWN)
        self._heap.stop()

    def _screen(self, sock: GreenSocket, address: tuple[str, int], front: _Front) -> bool:
        """Refuse a newcomer, or take its place: whether it is done with (refused, or shutting down).

        The check and the place go together, with no switch between them, or
        the newcomers of one round of accepts would all pass the limits. The
        place is taken before a TLS handshake, so that handshakes in progress
        count against the limits: a stalled one holds a place for
        --handshake-timeout at most.
        """
        if self._shutting_down(sock):
            return True
        reason = self._refusal(address[0])
        if reason is not None:
            self._meter.refused(reason)
            self._refuse(sock, address, front.refusals[reason], front.tls)
            return True
        self._take_place(address[0])
        return False

    def _handle(self, sock: GreenSocket, address: tuple[str, int], front: _Front) -> None:
        """A newcomer in its own greenlet: screened by the accept loop already, but on a TLS port."""
        host = address[0]
        if front.tls is not None:
            if self._screen(sock, address, front):
                return
            tls_sock = accept_tls(front.tls, sock, format_peer(address), self.config.handshake_timeout)
            if tls_sock is None or self._shutting_down(tls_sock):
                self._free_place(host)
                return
            sock = tls_sock
        elif self._shutting_down(sock):  # since the accept loop screened it
            self._free_place(host)
            return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection = self._meter.connection_class(
            sock,
            address,
            self.config,
            self._flusher,
            self._readers,
            self.chat,
            self._on_left,
            self._on_closed,
            front.dialect,
        )
        self._open.add(connection)
        self._all_closed.clear()
        connection.start()

    def _refusal(self, host: str) -> Optional[str]:
        """Why a newcomer from ``host`` is turned away; None to let it in."""
        config = self.config
        if self._connections >= config.max_clients:
            return FULL
        source = self._source(host)
        if config.max_per_ip and self._per_address[source] >= config.max_per_ip:
            return TOO_MANY
        if self._connects is not None and not self._connects.allow(source, time.monotonic()):
            return TOO_FAST
        if self.chat.banned(host):
            return BANNED
        return None

    def _refuse(
        self, sock: GreenSocket, address: tuple[str, int], line: bytes, tls: Optional[ssl.SSLContext]
    ) -> None:
        """Send the refusal ``line`` and close; over TLS only while that stays cheap.

        A TLS client can read the line only after a handshake, which may stall:
        the handshakes of refused clients are limited apart from the places
        (TLS_REFUSALS, one per address, each under TLS_REFUSAL_TIMEOUT), and a
        refused client beyond them is closed at once, without its line.
        """
        source = self._source(address[0])
        if tls is None:
            refuse(sock, line)
            return
        if source in self._refusing or len(self._refusing) >= TLS_REFUSALS:
            sock.close()
            return
        self._refusing.add(source)
        try:
            timeout = min(self.config.handshake_timeout, TLS_REFUSAL_TIMEOUT)
            tls_sock = accept_tls(tls, sock, format_peer(address), timeout)
            if tls_sock is not None:
                refuse(tls_sock, line)
        finally:
            self._refusing.discard(source)

    def _shutting_down(self, sock: GreenSocket) -> bool:
        """True, having closed ``sock``, if the server is shutting down: no newcomer then."""
        if not self.chat.closing:
            return False
        self._meter.refused(SHUTDOWN)
        sock.close()
        return True

    def _take_place(self, host: str) -> None:
        self._connections += 1
        self._per_address[self._source(host)] += 1

    def _free_place(self, host: str) -> None:
        self._connections -= 1
        source = self._source(host)
        self._per_address[source] -= 1
        if not self._per_address[source]:
            del self._per_address[source]

    def _banned(self, address: str) -> None:
        for connection in list(self._open):
            connection.banned(address)

    def _left(self, connection: Connection, cause: str) -> None:
        # The place is free once the user has left, even while the
        # socket lingers (for at most shutdown_timeout) to flush.
        self._meter.left(cause)
        self._free_place(connection.host)

    def _closed(self, connection: Connection) -> None:
        self._open.discard(connection)
        if not self._open:
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
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = GreenSocket(family, kind, proto)
    except OSError as err:
        raise _cannot_listen(host, port, err) from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(LISTEN_BACKLOG)
    except BaseException as err:
        sock.close()
        if isinstance(err, OSError):
            raise _cannot_listen(host, port, err) from None
        raise
    return sock


def _cannot_listen(host: str, port: int, err: OSError) -> CannotListen:
    # gevent appends the address to strerror; the original text is in args.
    reason = err.args[1] if len(err.args) == 2 else str(err)
    return CannotListen(f"cannot listen on {format_peer((host, port))}: {reason}")
