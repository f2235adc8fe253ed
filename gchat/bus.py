"""The bus between hubs: how one node's events reach every node, its own first.

A hub never applies its clients' events directly: it publishes them and
applies whatever the bus hands back, in the bus's order. With the default
``LocalBus`` that is immediate and the hub is the whole chat; with
``gchat.redisbus.RedisBus`` every node of a cluster applies one sequence.
"""

import os
from dataclasses import dataclass, field
from typing import NamedTuple, Optional, Protocol

from gchat.events import Event, Renamed


class BusError(Exception):
    """The bus cannot be reached at start-up, where that is fatal."""


class Entry(NamedTuple):
    """One user in the shared state: client ``cid`` of ``node``, in ``rooms`` (maybe none).

    ``oper`` and ``away`` ride along so that a node which (re)joins the cluster
    lists other nodes' operators and away users as they are, not as new.
    """

    node: str
    cid: int
    nick: str
    rooms: "tuple[str, ...]"
    address: str
    host: str
    oper: bool = False
    away: str = ""


@dataclass(frozen=True)
class Snapshot:
    """The cluster's shared state at one point of the event sequence."""

    users: "list[Entry]" = field(default_factory=list)
    bans: "list[str]" = field(default_factory=list)
    topics: "dict[str, str]" = field(default_factory=dict)
    # The last lines of every room that has any, as encoded ``Said`` events.
    history: "dict[str, list[bytes]]" = field(default_factory=dict)


class Replica(Protocol):
    """The hub as the bus sees it."""

    def apply(self, event: Event) -> None:
        """Apply one event in bus order; must not block."""

    def link_lost(self) -> None:
        """The cluster is unreachable: forget other nodes' users, serve locally."""

    def local_users(self) -> "list[Entry]":
        """This node's clients as their own commands left them: what the node publishes on resync."""

    def resync(self, renames: "dict[int, str]", snapshot: Snapshot) -> None:
        """The link is back and the shared state holds ``local_users()`` again.

        ``renames`` (client id -> nick) gives fresh nicks to clients whose nick
        another node took meanwhile. ``snapshot`` is the cluster's state right
        after, every user included: it replaces the replica, and no event it
        reflects is applied.
        """

    def resynced(self, node: str, users: "list[Entry]") -> None:
        """Another ``node`` resynced: ``users`` replace all of its users, in bus order."""


class Bus(Protocol):
    node: str

    def start(self) -> None:
        """Join the bus before serving anyone."""

    def attach(self, replica: Replica) -> None: ...

    def publish(self, event: Event) -> None:
        """Order ``event`` for every node; never blocks the caller."""

    def rename(self, old: str, new: str) -> bool:
        """Make ``new`` this node's across the cluster and order ``Renamed(old, new)``, in one step.

        False, with nothing published, when another node holds ``new``: once a
        client is told a nick is in use, a /msg to it reaches the holder. May
        wait on the network (only the calling greenlet waits). The hub has
        already ruled out nicks it knows; True when the bus cannot tell.
        """

    def claim_guest(self) -> Optional[str]:
        """A fresh guest nick claimed cluster-wide, or None to let the hub number one."""

    def close(self) -> None:
        """Deliver what is published so far (bounded in time) and leave the cluster."""


def new_node_id() -> str:
    """A name for this process in the cluster: unique per start, so a restart is a new node."""
    return os.urandom(6).hex()


class LocalBus:
    """The bus of a single server: every event is applied at once, in order."""

    def __init__(self) -> None:
        self.node = new_node_id()
        self._replica: Optional[Replica] = None

    def start(self) -> None:
        pass

    def attach(self, replica: Replica) -> None:
        self._replica = replica

    def publish(self, event: Event) -> None:
        assert self._replica is not None
        self._replica.apply(event)

    def rename(self, old: str, new: str) -> bool:
        self.publish(Renamed(old, new))
        return True

    def claim_guest(self) -> Optional[str]:
        return None

    def close(self) -> None:
        pass
