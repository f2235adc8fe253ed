"""The server's hooks for metrics, and what they do without ``--metrics-port``: nothing.

The server calls its ``Meter`` only where a connection is turned away or a
client leaves, and takes from it the bus and the class of each connection's
session. This base class, the meter of a server without metrics, gives the
plain bus and the plain ``Session`` and counts nothing, so with metrics off
every line read, delivered and sent runs exactly the code it runs without
this module, and prometheus_client is not even imported.
``gchat.metrics.Metrics`` is the meter that counts.
"""

from collections.abc import Collection

from gchat.bus import Bus
from gchat.chat import Chat
from gchat.config import Config
from gchat.session import Session

# Why a connection was turned away (also hub.BANNED, session.SHUTDOWN).
FULL = "server full"
TOO_MANY = "too many from address"


class MetricsError(Exception):
    """The metrics port cannot be served (e.g. it is in use); the message is one line for the user."""


class Meter:
    # The class of the session of each connection admitted.
    session_class: "type[Session]" = Session

    def bus(self, bus: Bus) -> Bus:
        """The bus the hub is to use: ``bus`` itself, or one that watches it."""
        return bus

    def refused(self, reason: str) -> None:
        """A connection was turned away instead of getting a session."""

    def left(self, cause: str) -> None:
        """A session's client left; ``cause`` is the server's word for why, never the client's."""

    def start(self, hub: Chat, sessions: Collection[Session]) -> None:
        """Serve metrics about ``hub`` and the open ``sessions`` (a live view); may raise MetricsError."""


def meter_for(config: Config) -> Meter:
    if not config.metrics_port:
        return Meter()
    # Imported only here: a server without metrics never loads prometheus_client.
    from gchat.metrics import Metrics

    return Metrics(config)
