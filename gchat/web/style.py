"""The page's events out: the chat's news as JSON objects, each one WebSocket text frame.

An event is a JSON object whose ``type`` names the news (``message``,
``entered``, ... see ``TYPES``) and whose other members are the news' fields,
so the protocol follows ``gchat.news`` mechanically: a kind or notice is its
name in lower case, a member ``{"nick"}`` with ``"oper": true`` and
``"away": TEXT`` only when so, a history a list of ``message`` events. An
arrival lists at most ``ARRIVED_MEMBERS`` of the room's members, with their
``count``, as large chat services load member lists lazily: a join into a
room of n members costs the server O(1) output rather than O(n), so a join
storm into a room of thousands queues kilobytes per joiner, not the room's
whole list each (O(n²) in all), and one user joining and leaving in a loop
cannot make the server write a big room's list each time. ``who`` still
lists every member. Addresses (``host``) are left out: a browser user has no
use for everyone's IP address. Every event has ``at`` (Unix time in whole
microseconds, as the chat compares and keeps times, so a ``history``
request's ``before`` is exact): the sender's time for a message, the time it
was rendered for the rest. A message's ``kind`` is left out when it is
``say``. Both are for the bytes and the CPU: every chat line is sent to
every member, and what the kernel copies per delivery is most of a big
room's cost (``"kind":"say"`` and a float's digits were a tenth of a 64-byte
line's event, and a float's ``repr`` a sixth of its rendering).

Server-to-client frames are never masked (RFC 6455 section 5.1) and no
extension is negotiated, so a frame's bytes do not depend on the connection:
the style encodes each event once and the same ``bytes`` object is queued for
every web client of a room. The two notices the chat always closes a
connection after (``bye``, ``shutting_down``) are followed by a close frame
(1000, 1001), RFC 6455's closing handshake, since the chat closes the
connection with no word of the wire.
"""

import dataclasses
import enum
import functools
import itertools
import json
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring
from typing import Callable, Union, cast

from websockets.frames import Close, CloseCode, Frame, Opcode

from gchat import news
from gchat.news import Kind, micros

Json = Union[None, bool, int, float, str, "list[Json]", "dict[str, Json]"]

TYPES: "dict[type, str]" = {
    news.Message: "message",
    news.Entered: "entered",
    news.Parted: "parted",
    news.Gone: "gone",
    news.Renamed: "renamed",
    news.TopicChanged: "topic_changed",
    news.Kicked: "kicked",
    news.Notice: "notice",
    news.Arrived: "arrived",
    news.Left: "left",
    news.NickChanged: "nick_changed",
    news.Private: "private",
    news.RoomList: "room_list",
    news.MemberList: "member_list",
    news.TopicIs: "topic_is",
    news.NoSuchNick: "no_such_nick",
    news.NickInUse: "nick_in_use",
    news.InvalidNick: "invalid_nick",
    news.InvalidRoom: "invalid_room",
    news.AlreadyIn: "already_in",
    news.NotIn: "not_in",
    news.TooManyRooms: "too_many_rooms",
    news.TooManyMessages: "too_many_messages",
    news.AddressBanned: "address_banned",
    news.AddressUnbanned: "address_unbanned",
    news.NotBanned: "not_banned",
    news.OwnAddress: "own_address",
}
# The answer to the page's ``history`` request (not news: the chat is not asked, its keeper is).
OLDER_LINES = "older_lines"
# The notices the chat closes a client's connection after, and the close code that follows them.
_LAST_WORDS = {news.Notice.BYE: CloseCode.NORMAL_CLOSURE, news.Notice.SHUTTING_DOWN: CloseCode.GOING_AWAY}
# Fields no web client is sent (see the module's docstring).
_HIDDEN = frozenset({"host"})
# The field of a listing (``Arrived``, ``MemberList``) that holds its people.
_MEMBERS = "members"
# The most members an ``arrived`` lists (the earliest to come); its ``count`` says how many there are.
ARRIVED_MEMBERS = 100
# The field beside an arrival's members that counts them all.
COUNT = "count"


_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


# A chat line's event: the ``kind`` member (empty for ``say``; a ``news.Kind`` value has no character
# to escape), then ``at`` in microseconds.
_MESSAGE = '{"type":"message","room":%s,"nick":%s,"text":%s%s,"at":%d}'
_KIND = ',"kind":"%s"'
# The field of a message left out when it is the default, and that default.
_KIND_FIELD, _SAY = "kind", Kind.SAY
# The field that holds an event's time.
_AT = "at"
# A string as JSON (quoted, escaped) with ensure_ascii off: the encoder's own C function.
_string: Callable[[str], str] = encode_basestring


def text_frame(event: "dict[str, Json]") -> bytes:
    """One event as the bytes of a final, unmasked WebSocket text frame."""
    return _text(_JSON.encode(event))


def _text(json_text: str) -> bytes:
    payload = json_text.encode()
    return _text_header(len(payload)) + payload


# Lengths whose header is kept: every length a chat line's event has at --max-line's default, but
# for escapes; about 160 bytes each with the cache's own, so 650 KB at most however lines vary.
_HEADERS = 4096


@functools.lru_cache(maxsize=_HEADERS)
def _text_header(length: int) -> bytes:
    """The header the library writes before a final, unmasked text frame of ``length`` bytes.

    It depends on the length alone, so the library is asked once per length: its ``serialize``
    (a frame object, its checks, a ``BytesIO``) was 40% of rendering a chat line's event.
    """
    frame = Frame(Opcode.TEXT, bytes(length)).serialize(mask=False)
    return frame[: len(frame) - length]


def close_frame(code: int, reason: str) -> bytes:
    """A server's close frame (unmasked), as ``wire`` sends when it closes a connection itself."""
    return Frame(Opcode.CLOSE, Close(code, reason).serialize()).serialize(mask=False)


def event(kind: str, at: float, **fields: Json) -> bytes:
    """A frame for an event that is not news (session replies such as ``pong`` or ``error``)."""
    return text_frame({"type": kind, **fields, _AT: micros(at)})


def older_lines(room: str, lines: "Sequence[news.Message]", more: bool, at: float) -> bytes:
    """``lines`` as an arrival's ``history`` has them, oldest first; ``more``: older ones remain."""
    return event(OLDER_LINES, at, room=room, history=_value(lines), more=more)


def _value(value: object) -> Json:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, enum.Enum):
        return str(value.value) if isinstance(value, news.Kind) else value.name.lower()
    if isinstance(value, news.Message) or (dataclasses.is_dataclass(value) and not isinstance(value, type)):
        return _object(value)
    if isinstance(value, Collection):
        return [_value(item) for item in value]
    return _person(cast(news.Person, value))


def _person(person: news.Person) -> "dict[str, Json]":
    """A member of a listing (the chat's own record, read now: ``Arrived`` holds live collections)."""
    obj: dict[str, Json] = {"nick": person.nick}
    if person.oper:
        obj["oper"] = True
    if person.away:
        obj["away"] = person.away
    return obj


def _object(item: object) -> "dict[str, Json]":
    obj: dict[str, Json] = {}
    if type(item) in TYPES:
        obj["type"] = TYPES[type(item)]
    if isinstance(item, news.Message):
        names: Iterable[str] = item._fields
    else:
        names = (field.name for field in dataclasses.fields(item))  # type: ignore[arg-type]
    for name in names:
        if name == _MEMBERS:
            # Straight to each member's object: the generic walk's tests per item took 6 ms
            # of a join into a room of 3,000.
            people: Iterable[news.Person] = getattr(item, name)
            if isinstance(item, news.Arrived):
                obj[COUNT] = len(item.members)
                people = itertools.islice(people, ARRIVED_MEMBERS)
            obj[name] = [_person(person) for person in people]
        elif name == _AT:
            obj[name] = micros(getattr(item, name))
        elif name not in _HIDDEN and not (name == _KIND_FIELD and getattr(item, name) is _SAY):
            obj[name] = _value(getattr(item, name))
    return obj


@dataclass(frozen=True)
class WebStyle:
    """How news looks to the page; one instance serves every web client.

    ``echo``: a sender is sent its own room messages, so the page shows
    what the room saw (sanitized, with the server's time) rather than what
    was typed.
    """

    clock: Callable[[], float] = time.time
    echo: bool = True

    def render(self, item: news.Shared) -> bytes:
        if type(item) is news.Message:
            # Every chat line: its JSON written by template, as the encoder would write its dict
            # (same members, order and separators) for 40% of the cost: no dict, no encoder object.
            kind = item.kind
            return _text(
                _MESSAGE
                % (
                    _string(item.room),
                    _string(item.nick),
                    _string(item.text),
                    "" if kind is _SAY else _KIND % kind.value,
                    micros(item.at),
                )
            )
        return self._frame(item)

    def tell(self, item: news.Personal, nick: str) -> bytes:
        return self._frame(item)

    def _frame(self, item: "Union[news.Personal, news.Shared]") -> bytes:
        if isinstance(item, news.Notice):
            obj: dict[str, Json] = {"type": TYPES[news.Notice], "code": _value(item)}
            obj[_AT] = micros(self.clock())
            code = _LAST_WORDS.get(item)
            if code is not None:
                return text_frame(obj) + close_frame(code, item.value)
        else:
            obj = _object(item)
        obj.setdefault(_AT, micros(self.clock()))
        return text_frame(obj)
