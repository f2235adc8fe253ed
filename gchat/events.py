"""What hubs tell each other: chat events and their wire form on the bus.

Every change a client makes to the chat (entering a room, a line, a nick
change, leaving) is an event. A hub publishes its clients' events to the bus
and applies events only as the bus hands them back, its own included, so
every node applies one and the same sequence and every room member sees one
order. This module is pure: dataclasses, and bytes in and out.

Wire form: fields joined by NUL, a one-letter tag first. NUL cannot occur in
a field: nicks and rooms are ASCII names, and sanitizing removes every C0
control but TAB from chat text. A field that carries whole lines (a chat
line, a room's history) comes last, so it may be any bytes but NUL.
"""

from dataclasses import dataclass
from typing import Optional, Union

SEP = b"\0"


@dataclass(frozen=True)
class Joined:
    """A client entered ``room``: on connect, or by /join (leaving its old room).

    ``history`` is the room's last lines as the bus had them when the join was
    ordered; None means the bus keeps no history and the hub uses its own.
    """

    node: str
    cid: int
    nick: str
    room: str
    history: Optional[bytes] = None


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
    """A /msg line for whoever holds the nick ``target`` when this is applied."""

    target: str
    line: bytes


@dataclass(frozen=True)
class Asked:
    """A /who or /rooms, answered when applied: after the asker's earlier events."""

    node: str
    cid: int
    what: str


@dataclass(frozen=True)
class NodeLost:
    """``node`` stopped sending heartbeats: its clients are gone."""

    node: str


Event = Union[Joined, Said, Renamed, Quit, Private, Asked, NodeLost]


class DecodeError(ValueError):
    """Bytes on the bus that no hub could have published."""


def encode(event: Event) -> bytes:
    if isinstance(event, Said):
        return _join(b"S", event.node, str(event.cid), event.room, tail=event.line)
    if isinstance(event, Joined):
        return _join(b"J", event.node, str(event.cid), event.nick, event.room, tail=event.history or b"")
    if isinstance(event, Renamed):
        return _join(b"R", event.old, event.new)
    if isinstance(event, Quit):
        return _join(b"Q", event.nick, event.reason)
    if isinstance(event, Private):
        return _join(b"P", event.target, tail=event.line)
    if isinstance(event, Asked):
        return _join(b"A", event.node, str(event.cid), event.what)
    return _join(b"L", event.node)


def decode(data: bytes) -> Event:
    tag, _, rest = data.partition(SEP)
    try:
        if tag == b"S":
            node, cid, room, line = rest.split(SEP, 3)
            return Said(node.decode(), int(cid), room.decode(), line)
        if tag == b"J":
            node, cid, nick, room, history = rest.split(SEP, 4)
            return Joined(node.decode(), int(cid), nick.decode(), room.decode(), history)
        if tag == b"R":
            old, new = rest.split(SEP)
            return Renamed(old.decode(), new.decode())
        if tag == b"Q":
            nick, reason = rest.split(SEP)
            return Quit(nick.decode(), reason.decode())
        if tag == b"P":
            target, line = rest.split(SEP, 1)
            return Private(target.decode(), line)
        if tag == b"A":
            node, cid, what = rest.split(SEP)
            return Asked(node.decode(), int(cid), what.decode())
        if tag == b"L" and SEP not in rest:
            return NodeLost(rest.decode())
    except ValueError as err:  # too few or too many fields, a bad number, bad UTF-8
        raise DecodeError(f"malformed {tag!r} event: {err}") from None
    raise DecodeError(f"unknown event {data[:20]!r}")


def _join(tag: bytes, *fields: str, tail: Optional[bytes] = None) -> bytes:
    parts = [tag, *(field.encode() for field in fields)]
    if tail is not None:
        parts.append(tail)
    return SEP.join(parts)
