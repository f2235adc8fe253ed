"""Prometheus metrics (``--metrics-port``): counted in the hot paths only when asked for.

``Metrics`` is the server's meter when a metrics port is given, and only then
does any counting enter a hot path: a ``Connection`` subclass counts each
connection and its ``Output`` subclass each delivery, a socket wrapper the bytes of each ``recv`` and
``send``, and a bus wrapper each chat line and, with ``--bus``, how long this
node's own lines take through Redis. All of them add to plain integers in a
``Tally``. A collector turns those, and what can be read off the server at
that moment (connections, rooms, queued bytes), into metric families only
when Prometheus scrapes: between scrapes the cost is the additions, and a
scrape costs one pass over the open connections.

HTTP is gevent's own WSGIServer running prometheus_client's WSGI app: each
request is a greenlet in the server's event loop, with no thread and no
polling, and it needs no monkey-patching. (prometheus_client's
``start_http_server`` would work too under ``python -m gchat``, which patches
threads into greenlets first, but it relies on that patching, and its
``serve_forever`` wakes up twice a second to poll.) Its descriptors come out
of the chat's budget, so the port serves at most ``SCRAPERS`` connections at
once, each for at most ``--metrics-timeout`` seconds whatever it is doing.
"""

import logging
import time
from collections import Counter
from collections.abc import Collection, Iterator
from typing import Any, Optional

import gevent
from gevent.pywsgi import WSGIHandler, WSGIServer
from gevent.socket import socket as GreenSocket
from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    make_wsgi_app,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from gchat.acceptor import Acceptor, refuse
from gchat.addresses import format_peer
from gchat.bus import Bus, Entry, Replica, Snapshot
from gchat.chat import Chat
from gchat.config import Config
from gchat.connection import Connection
from gchat.events import Event, Said
from gchat.meter import Meter, MetricsError
from gchat.output import Output, Turn
from gchat.reasons import COUNTED

log = logging.getLogger("gchat")

# Connections the metrics port serves at once (a few Prometheus servers need a few; part
# of rlimit.RESERVED_FDS), each for --metrics-timeout at most: a scrape takes milliseconds.
SCRAPERS = 16
_BUSY_TEXT = b"too many connections to the metrics port, try again later\n"
BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nConnection: close\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_BUSY_TEXT), _BUSY_TEXT)
)

# From a Redis next door (a fraction of a millisecond) to one in trouble.
LAG_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Tally:
    """The counters, as plain integers that the hot paths bump for the price of an addition."""

    __slots__ = ("bytes_in", "bytes_out", "connections", "deliveries", "disconnects", "messages_in")

    def __init__(self) -> None:
        self.connections = 0
        self.messages_in = 0
        self.deliveries = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.disconnects: Counter[str] = Counter(dict.fromkeys(COUNTED, 0))


class _CountingSocket:
    """A connection's socket that adds up the bytes through it (inside TLS: the plain text)."""

    __slots__ = ("_sock", "_tally")

    def __init__(self, sock: GreenSocket, tally: Tally) -> None:
        self._sock = sock
        self._tally = tally

    def recv(self, size: int, *args: Any) -> bytes:
        data: bytes = self._sock.recv(size, *args)
        self._tally.bytes_in += len(data)
        return data

    def send(self, data: Any, *args: Any, **kwargs: Any) -> int:
        sent: int = self._sock.send(data, *args, **kwargs)
        self._tally.bytes_out += sent
        return sent

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _metered_connection_class(tally: Tally) -> "type[Connection]":
    """A Connection subclass counting into ``tally``: its connections, deliveries and bytes.

    One class per tally, so that counting a delivery costs a closure lookup
    and an addition, with no attribute of the output to fetch.
    """

    class MeteredOutput(Output):
        __slots__ = ()

        def deliver(self, data: bytes) -> None:
            tally.deliveries += 1
            Output.deliver(self, data)

        def owe(self, turn: Turn, slot: int, data: bytes, lines: int) -> None:
            tally.deliveries += lines
            Output.owe(self, turn, slot, data, lines)

    class MeteredConnection(Connection):
        __slots__ = ()
        output_class = MeteredOutput

        def __init__(self, sock: GreenSocket, *rest: Any) -> None:
            tally.connections += 1
            super().__init__(_CountingSocket(sock, tally), *rest)

    return MeteredConnection


class _LagProbe:
    """Times one of this node's chat lines at a time, from publishing it to applying it.

    It stands between the bus and the hub. While the link to Redis is down,
    lines are applied as they are published, without travelling, so none is
    timed; a line in flight when the link goes may never come back, so it is
    forgotten.
    """

    def __init__(self, replica: Replica, histogram: Histogram) -> None:
        self._replica = replica
        self._histogram = histogram
        self._line: Optional[Said] = None
        self._sent = 0.0
        self._up = True

    def published(self, event: Said) -> None:
        if self._line is None and self._up:
            self._line = event
            self._sent = time.monotonic()

    def apply(self, event: Event) -> None:
        if self._line is not None and event == self._line:
            self._histogram.observe(time.monotonic() - self._sent)
            self._line = None
        self._replica.apply(event)

    def link_lost(self) -> None:
        self._up = False
        self._line = None
        self._replica.link_lost()

    def local_users(self) -> "list[Entry]":
        return self._replica.local_users()

    def resync(self, renames: "dict[int, str]", snapshot: Snapshot) -> None:
        self._up = True
        self._replica.resync(renames, snapshot)

    def resynced(self, node: str, users: "list[Entry]") -> None:
        self._replica.resynced(node, users)


class _MeteredBus:
    """The server's bus, counting the chat lines of this node's clients as the hub publishes them."""

    def __init__(self, bus: Bus, tally: Tally, lag: Optional[Histogram]) -> None:
        self._bus = bus
        self.node = bus.node
        self._tally = tally
        self._lag = lag
        self._probe: Optional[_LagProbe] = None

    def start(self) -> None:
        self._bus.start()

    def attach(self, listener: Replica) -> None:
        if self._lag is not None:
            listener = self._probe = _LagProbe(listener, self._lag)
        self._bus.attach(listener)

    def publish(self, event: Event) -> None:
        if isinstance(event, Said):
            self._tally.messages_in += 1
            if self._probe is not None:
                self._probe.published(event)
        self._bus.publish(event)

    def rename(self, old: str, new: str) -> bool:
        return self._bus.rename(old, new)

    def claim_guest(self) -> Optional[str]:
        return self._bus.claim_guest()

    def close(self) -> None:
        self._bus.close()


class _Collector:
    """The server's metric families, made afresh from the tally and the server on every scrape."""

    def __init__(self, tally: Tally, chat: Chat, connections: Collection[Connection]) -> None:
        self._tally = tally
        self._chat = chat
        self._connections = connections

    def collect(self) -> Iterator[Metric]:
        tally = self._tally
        yield GaugeMetricFamily(
            "gchat_connections_open",
            "Connections whose client has not left, at the password prompt too: "
            "the places --max-clients limits.",
            # Each connection's client leaves once, with a cause counted below.
            value=tally.connections - sum(tally.disconnects.values()),
        )
        yield CounterMetricFamily(
            "gchat_connections",
            "Connections accepted, refused ones included (admitted TLS ones once their handshake is done).",
            value=tally.connections,
        )
        disconnects = CounterMetricFamily(
            "gchat_disconnects",
            "Clients gone and connections refused, by the server's reason "
            "(quit: the client's /quit; kicked: an operator's /kick or /ban).",
            labels=["reason"],
        )
        for reason, count in sorted(tally.disconnects.items()):
            disconnects.add_metric([reason], count)
        yield disconnects
        yield CounterMetricFamily(
            "gchat_messages_in",
            "Chat lines (text and /me) from this node's clients, accepted for their room.",
            value=tally.messages_in,
        )
        yield CounterMetricFamily(
            "gchat_deliveries",
            "Lines queued for clients: a chat line once per recipient, every notice and reply; "
            "a room's history replayed on joining counts once.",
            value=tally.deliveries,
        )
        yield CounterMetricFamily(
            "gchat_received_bytes",
            "Bytes read from clients (inside TLS: the plain text).",
            value=tally.bytes_in,
        )
        yield CounterMetricFamily(
            "gchat_sent_bytes",
            "Bytes the kernel took for clients (inside TLS: the plain text).",
            value=tally.bytes_out,
        )
        yield GaugeMetricFamily(
            "gchat_queued_bytes",
            "Bytes delivered for clients that the kernel has not taken yet, all clients together.",
            value=sum(connection.queued for connection in self._connections),
        )
        yield GaugeMetricFamily(
            "gchat_rooms",
            "Rooms: the lobby and every room with members (on any node, with --bus).",
            value=self._chat.room_count,
        )


class _ScrapeHandler(WSGIHandler):  # type: ignore[misc]  # gevent is untyped
    """One metrics connection, closed at its deadline, whether it is reading the request or sending."""

    def handle(self) -> None:
        with gevent.Timeout(self.server.deadline, False):
            super().handle()

    def handle_error(self, kind: Any, error: Any, trace: Any) -> None:
        if isinstance(error, gevent.Timeout):
            raise error  # the deadline, not a bug: no traceback, no 500, just the close
        super().handle_error(kind, error, trace)


class _MetricsServer(Acceptor, WSGIServer):  # type: ignore[misc]  # gevent is untyped
    """The metrics port: at most SCRAPERS connections; one more gets a 503 and is closed at once.

    Accepting and refusing at once, rather than leaving the surplus in the
    listen backlog, keeps the backlog empty: a scrape arriving behind a
    crowd of stalled connections is not queued behind all of them.
    """

    handler_class = _ScrapeHandler

    def __init__(self, *args: Any, deadline: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deadline = deadline
        self._open = 0

    def do_handle(self, sock: GreenSocket, address: Any) -> None:
        if self._open >= SCRAPERS:
            refuse(sock, BUSY)
            return
        self._open += 1  # undone by do_close, which gevent calls on every way out
        super().do_handle(sock, address)

    def do_close(self, sock: GreenSocket, *args: Any) -> None:
        self._open -= 1
        super().do_close(sock, *args)


class Metrics(Meter):
    def __init__(self, config: Config) -> None:
        self._address = (config.host, config.metrics_port)
        self._deadline = config.metrics_timeout
        self._tally = Tally()
        self.connection_class = _metered_connection_class(self._tally)
        # A registry of its own, with what prometheus_client's default one has:
        # the process (CPU, memory, open files), the Python version, the GC.
        self._registry = CollectorRegistry()
        ProcessCollector(registry=self._registry)
        PlatformCollector(registry=self._registry)
        GCCollector(registry=self._registry)
        self._lag = (
            Histogram(
                "gchat_bus_lag_seconds",
                "Time from publishing one of this node's chat lines on the bus to applying it "
                "as it comes back, sampled one line at a time.",
                buckets=LAG_BUCKETS,
                registry=self._registry,
            )
            if config.bus
            else None
        )

    def bus(self, bus: Bus) -> Bus:
        return _MeteredBus(bus, self._tally, self._lag)

    def refused(self, reason: str) -> None:
        self._tally.connections += 1
        self._tally.disconnects[reason] += 1

    def left(self, cause: str) -> None:
        self._tally.disconnects[cause] += 1

    def start(self, chat: Chat, connections: Collection[Connection]) -> None:
        self._registry.register(_Collector(self._tally, chat, connections))
        where = format_peer(self._address)
        # No access log: a scrape every few seconds is not news.
        server = _MetricsServer(
            self._address, make_wsgi_app(self._registry), log=None, error_log=log, deadline=self._deadline
        )
        try:
            server.start()
        except OSError as err:
            raise MetricsError(f"cannot serve metrics on {where}: {err.args[-1]}") from None
        log.info("gchat metrics on http://%s/metrics", where)
