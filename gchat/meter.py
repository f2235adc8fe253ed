"""The server's hooks for metrics, and what they do without ``--metrics-port``: nothing.

The server calls its ``Meter`` only where a connection is turned away or a
client leaves, and takes from it the bus and the class of each connection.
This base class, the meter of a server without metrics, gives the plain bus
and the plain ``Connection`` and counts nothing, so with metrics off
every line read, delivered and sent runs exactly the code it runs without
this module, and prometheus_client is not even imported.
``gchat.metrics.Metrics`` is the meter that counts.
"""

from collections.abc import Collection

from gchat.bus import Bus
from gchat.chat import Chat
from gchat.config import Config
from gchat.connection import Connection


class MetricsError(Exception):
    """The metrics port cannot be served (e.g. it is in use); the message is one line for the user."""


class Meter:
    # The class of each connection admitted, whatever its front-end.
    connection_class: "type[Connection]" = Connection

    def bus(self, bus: Bus) -> Bus:
        """The bus the hub is to use: ``bus`` itself, or one that watches it."""
        return bus

    def refused(self, reason: str) -> None:
        """A connection was turned away (``reason`` from gchat.reasons) instead of being admitted."""

    def left(self, cause: str) -> None:
        """A connection's client left; ``cause`` is the server's word for why, never the client's."""

    def start(self, chat: Chat, connections: Collection[Connection]) -> None:
        """Serve metrics about ``chat`` and the open ``connections`` (a live view); may raise MetricsError."""


def meter_for(config: Config) -> Meter:
    if not config.metrics_port:
        return Meter()
    # Imported only here: a server without metrics never loads prometheus_client.
    from gchat.metrics import Metrics

    return Metrics(config)
