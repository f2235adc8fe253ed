"""What hubs tell each other: chat events and their wire form on the bus.

Every change a client makes to the chat (entering a room, a line, a nick
change, leaving) is an event. A hub publishes its clients' events to the bus
and applies events only as the bus hands them back, its own included, so
every node applies one and the same sequence and every room member sees one
order. This module is pure: dataclasses, and bytes in and out.

Wire form: fields joined by NUL, a one-letter tag first. NUL cannot occur in
a field: nicks and rooms are ASCII names, and sanitizing removes every C0
control but TAB from chat text. A field that carries whole lines (a chat
line) comes last, so it may be any bytes but NUL. Every event is small and
bounded (a chat line at most ``--max-line``): nothing that grows with a room
or the chat, such as a room's history, is ever on the bus, so no user can
make the bus carry more than their own lines.
"""

from dataclasses import dataclass
from typing import Optional, Union

SEP = b"\0"


@dataclass(frozen=True)
class Joined:
    """A client entered ``room``: on connect, or by /join (leaving its old room)."""

    node: str
    cid: int
    nick: str
    room: str
    address: str = ""


@dataclass(frozen=True)
class Said:
    """A chat or /me line, formatted for the wire, from client ``cid`` of ``node``."""

    node: str
    cid: int
    room: str
    line: bytes


@dataclass(frozen=True)
class Renamed:
    old: str
    new: str


@dataclass(frozen=True)
class Quit:
    nick: str
    reason: str


@dataclass(frozen=True)
class Private:
    """A /msg line for whoever holds the nick ``target`` when this is applied.

    Looked up in bus order, on every node alike: the sender (client ``cid``
    of ``node``) is told "no such user" only if no one holds it at that point.
    """

    target: str
    line: bytes
    node: str
    cid: int


@dataclass(frozen=True)
class Asked:
    """A /who or /rooms, answered when applied: after the asker's earlier events."""

    node: str
    cid: int
    what: str


@dataclass(frozen=True)
class Kicked:
    """An operator (client ``cid`` of ``node``, nick ``by``) removed ``nick`` from the chat."""

    nick: str
    by: str
    reason: str
    node: str
    cid: int


@dataclass(frozen=True)
class Banned:
    """``address`` may not connect any more; everyone from it is kicked."""

    address: str
    by: str
    node: str
    cid: int


@dataclass(frozen=True)
class Unbanned:
    address: str
    node: str
    cid: int


@dataclass(frozen=True)
class TopicSet:
    room: str
    text: str


@dataclass(frozen=True)
class NodeLost:
    """``node`` stopped sending heartbeats: its clients are gone."""

    node: str


@dataclass(frozen=True)
class Resynced:
    """``node`` replaced all its users in the shared state with the ones it has now.

    Published after a lost link, when what the node did meanwhile never
    reached the others; they read the node's new list from the bus's store.
    """

    node: str


Event = Union[
    Joined, Said, Renamed, Quit, Private, Asked, Kicked, Banned, Unbanned, TopicSet, NodeLost, Resynced
]


class DecodeError(ValueError):
    """Bytes on the bus that no hub could have published."""


def encode(event: Event) -> bytes:
    if isinstance(event, Said):
        return _join(b"S", event.node, str(event.cid), event.room, tail=event.line)
    if isinstance(event, Joined):
        return _join(b"J", event.node, str(event.cid), event.nick, event.room, event.address)
    if isinstance(event, Renamed):
        return _join(b"R", event.old, event.new)
    if isinstance(event, Quit):
        return _join(b"Q", event.nick, event.reason)
    if isinstance(event, Private):
        return _join(b"P", event.target, event.node, str(event.cid), tail=event.line)
    if isinstance(event, Asked):
        return _join(b"A", event.node, str(event.cid), event.what)
    if isinstance(event, Kicked):
        return _join(b"K", event.nick, event.by, event.reason, event.node, str(event.cid))
    if isinstance(event, Banned):
        return _join(b"B", event.address, event.by, event.node, str(event.cid))
    if isinstance(event, Unbanned):
        return _join(b"U", event.address, event.node, str(event.cid))
    if isinstance(event, TopicSet):
        return _join(b"T", event.room, event.text)
    if isinstance(event, Resynced):
        return _join(b"Y", event.node)
    return _join(b"L", event.node)


def decode(data: bytes) -> Event:
    tag, _, rest = data.partition(SEP)
    try:
        if tag == b"S":
            node, cid, room, line = rest.split(SEP, 3)
            return Said(node.decode(), int(cid), room.decode(), line)
        if tag == b"J":
            node, cid, nick, room, address = rest.split(SEP)
            return Joined(node.decode(), int(cid), nick.decode(), room.decode(), address.decode())
        if tag == b"R":
            old, new = rest.split(SEP)
            return Renamed(old.decode(), new.decode())
        if tag == b"Q":
            nick, reason = rest.split(SEP)
            return Quit(nick.decode(), reason.decode())
        if tag == b"P":
            target, node, cid, line = rest.split(SEP, 3)
            return Private(target.decode(), line, node.decode(), int(cid))
        if tag == b"A":
            node, cid, what = rest.split(SEP)
            return Asked(node.decode(), int(cid), what.decode())
        if tag == b"K":
            nick, by, reason, node, cid = rest.split(SEP)
            return Kicked(nick.decode(), by.decode(), reason.decode(), node.decode(), int(cid))
        if tag == b"B":
            address, by, node, cid = rest.split(SEP)
            return Banned(address.decode(), by.decode(), node.decode(), int(cid))
        if tag == b"U":
            address, node, cid = rest.split(SEP)
            return Unbanned(address.decode(), node.decode(), int(cid))
        if tag == b"T":
            room, text = rest.split(SEP)
            return TopicSet(room.decode(), text.decode())
        if tag == b"L" and SEP not in rest:
            return NodeLost(rest.decode())
        if tag == b"Y" and SEP not in rest:
            return Resynced(rest.decode())
    except ValueError as err:  # too few or too many fields, a bad number, bad UTF-8
        raise DecodeError(f"malformed {tag!r} event: {err}") from None
    raise DecodeError(f"unknown event {data[:20]!r}")


def _join(tag: bytes, *fields: str, tail: Optional[bytes] = None) -> bytes:
    parts = [tag, *(field.encode() for field in fields)]
    if tail is not None:
        parts.append(tail)
    return SEP.join(parts)
