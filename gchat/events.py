"""What hubs tell each other: chat events and their wire form on the bus.

Every change a client makes to the chat (entering a room, a line, a nick
change, leaving) is an event. A hub publishes its clients' events to the bus
and applies events only as the bus hands them back, its own included, so
every node applies one and the same sequence and every room member sees one
order. This module is pure: dataclasses, and bytes in and out.

Wire form: a one-letter tag, which each event declares as ``TAG``, then its
fields in declaration order, joined by NUL. NUL cannot occur in a field:
nicks and rooms are ASCII names, and sanitizing removes every C0 control
but TAB from chat text. Every event is small and bounded (a chat line at
most ``--max-line``): nothing that grows with a room or the chat, such as a
room's history, is ever on the bus, so no user can make the bus carry more
than their own lines. Events say what happened, in no client's wire format:
each node renders them for its own clients.
"""

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Union

from gchat.news import Kind, Message

SEP = b"\0"


@dataclass(frozen=True)
class Joined:
    """A client entered ``room``, or the chat with no room (``room`` empty: an IRC client).

    ``switch``: it left every other room (the line protocol's ``/join``).
    """

    TAG: ClassVar[bytes] = b"J"
    node: str
    cid: int
    nick: str
    room: str
    address: str = ""
    host: str = ""
    switch: bool = True


@dataclass(frozen=True)
class Parted:
    """A client left ``room`` and stays in the chat."""

    TAG: ClassVar[bytes] = b"E"
    node: str
    cid: int
    nick: str
    room: str
    reason: str


@dataclass(frozen=True)
class Said:
    """A line from client ``cid`` of ``node``: the message every node tells its room."""

    TAG: ClassVar[bytes] = b"S"
    node: str
    cid: int
    message: Message


@dataclass(frozen=True)
class Renamed:
    TAG: ClassVar[bytes] = b"R"
    old: str
    new: str


@dataclass(frozen=True)
class Left:
    """``nick`` left the chat."""

    TAG: ClassVar[bytes] = b"Q"
    nick: str
    reason: str


@dataclass(frozen=True)
class Private:
    """A private line for whoever holds the nick ``target`` when this is applied.

    Looked up in bus order, on every node alike: the sender (client ``cid``
    of ``node``) is told "no such user" only if no one holds it at that point.
    """

    TAG: ClassVar[bytes] = b"P"
    target: str
    nick: str
    host: str
    kind: Kind
    at: float
    node: str
    cid: int
    text: str


@dataclass(frozen=True)
class Asked:
    """A question (``what``) about ``room`` or the chat.

    Answered when applied: after the asker's earlier events.
    """

    TAG: ClassVar[bytes] = b"A"
    node: str
    cid: int
    what: str
    room: str = ""


@dataclass(frozen=True)
class Kicked:
    """An operator (client ``cid`` of ``node``, nick ``by``) removed ``nick`` from the chat."""

    TAG: ClassVar[bytes] = b"K"
    nick: str
    by: str
    reason: str
    node: str
    cid: int
    host: str = ""


@dataclass(frozen=True)
class Banned:
    """``address`` may not connect any more; everyone from it is kicked."""

    TAG: ClassVar[bytes] = b"B"
    address: str
    by: str
    node: str
    cid: int
    host: str = ""


@dataclass(frozen=True)
class Unbanned:
    TAG: ClassVar[bytes] = b"U"
    address: str
    node: str
    cid: int


@dataclass(frozen=True)
class TopicSet:
    TAG: ClassVar[bytes] = b"T"
    room: str
    text: str
    by: str = ""
    host: str = ""


@dataclass(frozen=True)
class Opered:
    """``nick`` became an operator: listings on every node mark it."""

    TAG: ClassVar[bytes] = b"O"
    nick: str


@dataclass(frozen=True)
class Away:
    """``nick`` is away (``text``), or back (empty)."""

    TAG: ClassVar[bytes] = b"W"
    nick: str
    text: str


@dataclass(frozen=True)
class NodeLost:
    """``node`` stopped sending heartbeats: its clients are gone."""

    TAG: ClassVar[bytes] = b"L"
    node: str


@dataclass(frozen=True)
class Resynced:
    """``node`` replaced all its users in the shared state with the ones it has now.

    Published after a lost link, when what the node did meanwhile never
    reached the others; they read the node's new list from the bus's store.
    """

    TAG: ClassVar[bytes] = b"Y"
    node: str


Event = Union[
    Joined,
    Parted,
    Said,
    Renamed,
    Left,
    Private,
    Asked,
    Kicked,
    Banned,
    Unbanned,
    TopicSet,
    Opered,
    Away,
    NodeLost,
    Resynced,
]

_EVENTS: "tuple[type[Any], ...]" = Event.__args__  # type: ignore[attr-defined]


class DecodeError(ValueError):
    """Bytes on the bus that no hub could have published."""


def _encoder(kind: Any) -> "Callable[[Any], bytes]":
    if kind is str:
        return str.encode
    if kind is int:
        return lambda value: str(value).encode()
    if kind is float:
        return lambda value: repr(value).encode()
    if kind is bool:
        return lambda value: b"1" if value else b""
    if kind is Kind:
        return lambda value: value.value.encode()
    raise TypeError(f"no wire form for {kind!r}")


def _decoder(kind: Any) -> "Callable[[bytes], Any]":
    if kind is str:
        return bytes.decode
    if kind is int:
        return int
    if kind is float:
        return float
    if kind is bool:
        return bool
    if kind is Kind:
        return lambda value: Kind(value.decode())
    raise TypeError(f"no wire form for {kind!r}")


def _types(event: "type[Any]") -> "list[Any]":
    """The types of an event's fields in wire order; a named tuple's fields stand in for it."""
    hints = typing.get_type_hints(event)
    names = event._fields if _is_tuple(event) else [field.name for field in dataclasses.fields(event)]
    found: list[Any] = []
    for name in names:
        kind = hints[name]
        found.extend(_types(kind) if _is_tuple(kind) else [kind])
    return found


def _is_tuple(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, tuple) and hasattr(kind, "_fields")


def _flat(event: Event) -> "list[Any]":
    values: list[Any] = []
    for field in dataclasses.fields(event):
        value = getattr(event, field.name)
        values.extend(value if isinstance(value, tuple) else [value])
    return values


def _builder(event: "type[Any]") -> "Callable[[list[Any]], Any]":
    """Makes an event from its flat field values, gathering a named tuple's back into one."""
    hints = typing.get_type_hints(event)
    parts = [hints[field.name] for field in dataclasses.fields(event)]
    if not any(map(_is_tuple, parts)):
        return lambda values: event(*values)

    def build(values: "list[Any]") -> Any:
        args, at = [], 0
        for kind in parts:
            if _is_tuple(kind):
                size = len(kind._fields)
                args.append(kind(*values[at : at + size]))
                at += size
            else:
                args.append(values[at])
                at += 1
        return event(*args)

    return build


# Per event class: its field encoders; per tag: the class's builder and its field decoders.
_ENCODERS = {event: [_encoder(kind) for kind in _types(event)] for event in _EVENTS}
_DECODERS = {event.TAG: (_builder(event), [_decoder(kind) for kind in _types(event)]) for event in _EVENTS}
assert len(_DECODERS) == len(_EVENTS), "two events share a tag"


def encode(event: Event) -> bytes:
    encoders = _ENCODERS[type(event)]  # KeyError for anything but an Event: no fall-through
    return SEP.join(
        [event.TAG, *(encode_field(value) for encode_field, value in zip(encoders, _flat(event)))]
    )


def decode(data: bytes) -> Event:
    tag, _, rest = data.partition(SEP)
    known = _DECODERS.get(tag)
    if known is None:
        raise DecodeError(f"unknown event {data[:20]!r}")
    build, decoders = known
    fields = rest.split(SEP)
    if len(fields) != len(decoders):
        raise DecodeError(f"malformed {tag!r} event: {len(fields)} fields, not {len(decoders)}")
    try:
        return build([decode_field(field) for decode_field, field in zip(decoders, fields)])  # type: ignore[no-any-return]
    except ValueError as err:  # a bad number or kind, bad UTF-8
        raise DecodeError(f"malformed {tag!r} event: {err}") from None
