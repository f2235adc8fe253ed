"""The page's events in: one JSON object per WebSocket message, parsed into a request.

Pure, like ``gchat.commands`` for the line protocol. Requests that mean what a line command means are
its dataclass (``gchat.commands``). Names (nicks, rooms) are
passed on as given: the chat judges them, with the same rules and replies for
every front-end. Text is made safe as a line client's is (no control
characters, so nothing a web user sends can break a line or drive a
terminal), and a lone surrogate, which JSON can carry but UTF-8 cannot,
becomes U+FFFD. Members a request does not use are ignored.
"""

import json
import math
from dataclasses import dataclass
from typing import Callable, NamedTuple, Optional, Union

from gchat.commands import (
    DEFAULT_QUIT_REASON,
    HISTORY_LINES,
    HISTORY_MAX,
    Ban,
    Join,
    Kick,
    Nick,
    Oper,
    Pass,
    Quit,
    Rooms,
    Unban,
)
from gchat.news import Kind
from gchat.sanitize import strip_controls


class Say(NamedTuple):
    """``say`` and ``me`` to a room.

    A named tuple, not a frozen dataclass like the rest, as ``news.Message``: one is made for every
    chat line, in a third of the time.
    """

    room: str
    text: str
    kind: Kind


class Private(NamedTuple):
    """``msg``, and ``me`` to a nick (a named tuple, as ``Say``)."""

    nick: str
    text: str
    kind: Kind


@dataclass(frozen=True)
class Part:
    room: str
    reason: str


@dataclass(frozen=True)
class Who:
    room: str


@dataclass(frozen=True)
class Topic:
    """``text`` None: tell the topic; else set it (operators)."""

    room: str
    text: Optional[str]


@dataclass(frozen=True)
class Away:
    """``text`` empty: back."""

    text: str


@dataclass(frozen=True)
class History:
    """The page scrolled up: ``room``'s lines older than the oldest it shows (``before``, Unix time).

    The page says where it is, rather than the server keeping a place as for
    ``/history``: it keeps its lines across a reconnection, which the server
    does not know of. ``limit`` is bounded as ``/history``'s count is.
    """

    room: str
    before: float
    limit: int


@dataclass(frozen=True)
class Ping:
    """Answered with ``pong`` and the same ``id``: everything sent before it has been handled."""

    id: str


@dataclass(frozen=True)
class Malformed:
    """Not a request; ``reason`` is sent back in an ``error`` event."""

    reason: str


Request = Union[
    Say, Private, Nick, Join, Part, Who, Rooms, Topic, Oper, Kick, Ban, Unban, Away, Quit, Pass, Ping, History
]

DEFAULT_PART_REASON = "leaving"
NOT_JSON = "not JSON"
NOT_AN_OBJECT = 'expected a JSON object with a string "type"'


class _Invalid(Exception):
    """A member is absent, of the wrong kind, (text) blank, or (a count) out of bounds."""


class _Fields:
    __slots__ = ("_obj",)

    def __init__(self, obj: "dict[str, object]") -> None:
        self._obj = obj

    def get(self, name: str, default: Optional[str] = None) -> str:
        value = self._obj.get(name, default)
        if not isinstance(value, str):
            raise _Invalid(f"{name} must be a string")
        return safe(value)

    def text(self) -> str:
        """A message's text: a blank one is refused, as a blank line is ignored."""
        text = self.get("text")
        if not text.strip():
            raise _Invalid("text is empty")
        return text

    def time(self, name: str) -> float:
        """A Unix time in microseconds, as events give it, in seconds.

        A finite number (Python's JSON takes NaN and Infinity, JSON does not), and an integer no
        float can hold is none.
        """
        value = self._obj.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                seconds = value / 1_000_000
            except OverflowError:
                pass
            else:
                if math.isfinite(seconds):
                    return seconds
        raise _Invalid(f"{name} must be a number")

    def limit(self) -> int:
        """How many lines: bounded as ``/history``'s count, so no request reads much of the disk."""
        value = self._obj.get("limit", HISTORY_LINES)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= HISTORY_MAX:
            raise _Invalid(f"limit must be an integer from 1 to {HISTORY_MAX}")
        return value

    def optional(self, name: str) -> Optional[str]:
        return self.get(name) if self._obj.get(name) is not None else None

    def has(self, name: str) -> bool:
        return name in self._obj


def safe(text: str) -> str:
    """``text`` with no control character and no lone surrogate."""
    if text.isprintable():
        # Neither (both are Unicode's category C): almost every text, in a C loop, no regular expression.
        return text
    if not text.isascii():
        text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return strip_controls(text)


# The kinds as constants: an enum member read from its class is a descriptor call, on every line.
_SAY, _ACTION = Kind.SAY, Kind.ACTION


def _me(f: _Fields) -> Request:
    if f.has("nick"):
        return Private(f.get("nick"), f.text(), _ACTION)
    return Say(f.get("room"), f.text(), _ACTION)


_PARSERS: "dict[str, Callable[[_Fields], Request]]" = {
    "say": lambda f: Say(f.get("room"), f.text(), _SAY),
    "me": _me,
    "msg": lambda f: Private(f.get("nick"), f.text(), _SAY),
    "nick": lambda f: Nick(f.get("nick")),
    "join": lambda f: Join(f.get("room")),
    "part": lambda f: Part(f.get("room"), f.get("reason", DEFAULT_PART_REASON)),
    "who": lambda f: Who(f.get("room")),
    "rooms": lambda f: Rooms(),
    "topic": lambda f: Topic(f.get("room"), f.optional("text")),
    "oper": lambda f: Oper(f.get("name"), f.get("password")),
    "kick": lambda f: Kick(f.get("nick"), f.get("reason")) if f.has("reason") else Kick(f.get("nick")),
    "ban": lambda f: Ban(f.get("nick")),
    "unban": lambda f: Unban(f.get("address")),
    "away": lambda f: Away(f.get("text", "")),
    "quit": lambda f: Quit(f.get("reason", DEFAULT_QUIT_REASON) or DEFAULT_QUIT_REASON),
    "pass": lambda f: Pass(f.get("password")),
    "ping": lambda f: Ping(f.get("id", "")),
    "history": lambda f: History(f.get("room"), f.time("before"), f.limit()),
}
TYPES = tuple(_PARSERS)
# json.loads with its defaults, less the checks of its arguments on every message.
_DECODER = json.JSONDecoder()
# Its C scanner: one JSON value from an index, and where the value ends.
_SCAN: "Callable[[str, int], tuple[object, int]]" = _DECODER.scan_once  # type: ignore[attr-defined]


def _decode(message: str) -> object:
    """``json.loads(message)``: the scanner alone for a value with nothing around it (what the page's
    ``JSON.stringify`` sends), without ``decode``'s two regular expressions for the whitespace,
    a fifth of a ``say``'s parse; the decoder for the rest, which raises if it is not JSON.
    """
    try:
        obj, end = _SCAN(message, 0)
    except StopIteration:
        end = -1
    return obj if end == len(message) else _DECODER.decode(message)


def parse(message: str) -> "Union[Request, Malformed]":
    """What one message from the page asks for."""
    try:
        obj = _decode(message)
    except (ValueError, RecursionError):
        return Malformed(NOT_JSON)
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        return Malformed(NOT_AN_OBJECT)
    kind = obj["type"]
    parser = _PARSERS.get(kind)
    if parser is None:
        return Malformed(f"unknown type: {safe(kind)}")
    try:
        return parser(_Fields(obj))
    except _Invalid as missing:
        return Malformed(f"{kind}: {missing}")
