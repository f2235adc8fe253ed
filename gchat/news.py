"""What happened in the chat, as the hub tells it: no wire format here.

The hub decides who is told what; each front-end (the line protocol, IRC,
the web page) decides how it looks on its wire. A front-end renders news
with a ``Style``: news for a room (``Shared``) is rendered once per style
per fan-out and the same ``bytes`` object is queued for every client of that
style in the room; news for one client (``Personal``) is rendered for that
client alone, since some wire formats (IRC numerics) name the recipient.

Pure: frozen dataclasses, an enum, and the protocol a style implements.
"""

import enum
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol, Union


class Kind(enum.Enum):
    """How a message was sent: a plain line, an action (``/me``), a notice (IRC ``NOTICE``)."""

    SAY = "say"
    ACTION = "action"
    NOTICE = "notice"


# Beyond any time (microseconds): what an unbounded time (math.inf) becomes, as a whole number.
FAR = float(2**62)


def micros(at: float) -> int:
    """A time in whole microseconds, as the chat compares and keeps them: a line's time read back
    from the store, or shown to the millisecond, falls on the same side of any bound as it did live.
    """
    return round(max(-FAR, min(at * 1e6, FAR)))


# --- Shared: told to everyone in a room (or sharing a room with someone) ---------------


class Message(NamedTuple):
    """A line to ``room``. ``at`` is when the sender's node took it (Unix time, seconds).

    A named tuple, not a frozen dataclass like the rest: one is made for every
    chat line, and a tuple is made in half the time.
    """

    room: str
    nick: str
    host: str
    text: str
    kind: Kind
    at: float


@dataclass(frozen=True)
class Entered:
    """``nick`` joined ``room``."""

    room: str
    nick: str
    host: str


@dataclass(frozen=True)
class Parted:
    """``nick`` left ``room`` but not the chat (a line client's ``/join``, an IRC ``PART``)."""

    room: str
    nick: str
    host: str
    reason: str


@dataclass(frozen=True)
class Gone:
    """``nick`` left the chat; told once to everyone who shared a room with it."""

    nick: str
    host: str
    reason: str


@dataclass(frozen=True)
class Renamed:
    """``old`` is now ``new``; told once to everyone else who shares a room with them."""

    old: str
    new: str
    host: str


@dataclass(frozen=True)
class TopicChanged:
    """An operator (``by``) set ``room``'s topic."""

    room: str
    text: str
    by: str
    host: str


@dataclass(frozen=True)
class Kicked:
    """An operator (``by``) removed ``nick`` from the chat; told in each of its rooms.

    The operator is told too when it shares none of them.
    """

    room: str
    nick: str
    by: str
    host: str
    reason: str


Shared = Union[Message, Entered, Parted, Gone, Renamed, TopicChanged, Kicked]


# --- Personal: told to one client ------------------------------------------------------


class Notice(enum.Enum):
    """Fixed things one client is told."""

    SHUTTING_DOWN = "shutting down"
    LINK_LOST = "link lost"
    LINK_RESTORED = "link restored"
    TOO_MANY_JOINS = "too many joins"
    NOW_OPERATOR = "now operator"
    WRONG_OPERATOR = "wrong operator"
    NO_MORE_OPER_TRIES = "no more oper tries"
    PERMISSION_DENIED = "permission denied"
    BYE = "bye"


class Person(Protocol):
    """One user as a listing shows it (the hub's own record of the user, read at once)."""

    @property
    def nick(self) -> str: ...

    @property
    def host(self) -> str: ...

    @property
    def oper(self) -> bool: ...

    @property
    def away(self) -> str:
        """Why the user is away (IRC ``AWAY``); empty while here."""


@dataclass(frozen=True)
class Arrived:
    """This client entered ``room``: the room's state and its history, oldest first.

    ``first`` on the room a client is put in when it connects (the line
    protocol's status line); ``members`` includes the client itself. The
    collections are the hub's live ones, not copies (a join into a room of
    thousands must not copy it for a front-end that shows only a count): a
    style reads them when it is told, never later.
    """

    room: str
    nick: str
    host: str
    members: "Collection[Person]"
    topic: str
    history: "Sequence[Message]"
    first: bool


@dataclass(frozen=True)
class Left:
    """This client left ``room`` (and is still in the chat)."""

    room: str
    nick: str
    host: str
    reason: str


@dataclass(frozen=True)
class NickChanged:
    """This client's own nick is now ``new``."""

    old: str
    new: str
    host: str


@dataclass(frozen=True)
class Private:
    """A message to this client alone, from ``nick``."""

    nick: str
    host: str
    to: str
    text: str
    kind: Kind
    at: float


@dataclass(frozen=True)
class RoomList:
    """Every room with its member count and topic, sorted by name."""

    rooms: "tuple[tuple[str, int, str], ...]"


@dataclass(frozen=True)
class MemberList:
    """The members of ``room``, sorted by nick ignoring case."""

    room: str
    members: "Sequence[Person]"


@dataclass(frozen=True)
class TopicIs:
    """``room``'s topic, asked for; empty: none set."""

    room: str
    text: str


@dataclass(frozen=True)
class NoSuchNick:
    nick: str


@dataclass(frozen=True)
class NickInUse:
    nick: str


@dataclass(frozen=True)
class InvalidNick:
    nick: str


@dataclass(frozen=True)
class InvalidRoom:
    room: str


@dataclass(frozen=True)
class AlreadyIn:
    room: str


@dataclass(frozen=True)
class NotIn:
    """A command names a room this client is not in (IRC: ``PART``, ``PRIVMSG``, ``TOPIC``)."""

    room: str


@dataclass(frozen=True)
class TooManyRooms:
    """This client is in as many rooms as one client may be."""

    room: str


@dataclass(frozen=True)
class TooManyMessages:
    """Private messages to ``nick`` from this client's address are over their budget."""

    nick: str


@dataclass(frozen=True)
class AddressBanned:
    address: str


@dataclass(frozen=True)
class AddressUnbanned:
    address: str


@dataclass(frozen=True)
class NotBanned:
    address: str


@dataclass(frozen=True)
class OwnAddress:
    """An operator tried to ban the address it is connected from."""

    address: str


Personal = Union[
    Notice,
    Arrived,
    Left,
    NickChanged,
    Private,
    RoomList,
    MemberList,
    TopicIs,
    NoSuchNick,
    NickInUse,
    InvalidNick,
    InvalidRoom,
    AlreadyIn,
    NotIn,
    TooManyRooms,
    TooManyMessages,
    AddressBanned,
    AddressUnbanned,
    NotBanned,
    OwnAddress,
    Shared,
]


class Style(Protocol):
    """How one front-end (with one set of options) renders news.

    Clients of one style in a room share each rendering, so a style must be
    hashable and equal only to styles that render everything the same way;
    a front-end keeps one instance per combination of options.
    """

    @property
    def echo(self) -> bool:
        """Whether a sender is sent its own room messages (IRCv3 ``echo-message``)."""

    def render(self, news: Shared) -> bytes:
        """What every client of this style is sent: the same for all of them."""

    def tell(self, news: Personal, nick: str) -> bytes:
        """What the client called ``nick`` is sent; may be empty (nothing to send)."""
