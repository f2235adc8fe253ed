"""One IRC message: parsed from a client's line, serialized for the wire.

Pure and total: ``parse`` takes any bytes and returns a ``Message`` or one of
the errors below, never raises, so a hostile client can only ever get the
standard answer (``417`` for a line over the limits, nothing for an empty
one). Grammar as modern.ircdocs.horse and IRCv3 message-tags write it:

    [@tags SPACE] [:source SPACE] COMMAND [params] [SPACE :trailing]

Limits: the part after the tags is 512 bytes with its CR LF (510 without);
the tags a client sends are 4094 bytes at most (8191 with the ``@`` and the
space, the whole tags section a server may send).
"""

import re
import time
from dataclasses import dataclass
from typing import Union

from gchat.news import micros

# The part after the tags, without its CR LF.
MAX_BODY = 510
# What a client may send as tag data (without '@' and the space after it), IRCv3.
MAX_CLIENT_TAGS = 4094
# The longest line a client may send, without its CR LF: '@', tags, space, body.
MAX_LINE = 1 + MAX_CLIENT_TAGS + 1 + MAX_BODY

_SPACE = " "
_ESCAPES = {";": "\\:", " ": "\\s", "\\": "\\\\", "\r": "\\r", "\n": "\\n"}
_UNESCAPES = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}
_TO_ESCAPE = re.compile(r"[; \\\r\n]")
_ESCAPED = re.compile(r"\\(.?)", re.DOTALL)
# A tag key: optional client prefix '+', optional vendor (a host name) and '/', a name.
_TAG_KEY = re.compile(r"\+?(?:[A-Za-z0-9.-]+/)?[A-Za-z0-9-]+", re.ASCII)
_FORBIDDEN = re.compile(r"[\x00\r\n]")
_CUT = re.compile(rb"[\x00\r]")


@dataclass(frozen=True)
class Message:
    """``command`` is upper-cased; ``source`` is "" when absent; tag values "" when absent."""

    command: str
    params: "tuple[str, ...]" = ()
    source: str = ""
    tags: "tuple[tuple[str, str], ...]" = ()


class Empty:
    """A line with no command (blank, or tags alone): ignored, as servers do."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "EMPTY"


class InputTooLong:
    """Tags over ``MAX_CLIENT_TAGS`` or the rest over ``MAX_BODY``: answered ``417``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "INPUT_TOO_LONG"


EMPTY = Empty()
INPUT_TOO_LONG = InputTooLong()

Parsed = Union[Message, Empty, InputTooLong]


def parse(line: bytes) -> Parsed:
    """The message ``line`` (without its LF) stands for.

    Bytes are UTF-8 with U+FFFD for anything invalid; what the text may show is
    the session's business (``text.clean``), not the grammar's.
    """
    # Nothing after a CR or NUL is part of the message (RFC 1459 forbids both
    # inside one), so no parameter can carry them into a line sent on.
    line = _CUT.split(line, 1)[0]
    tags: tuple[tuple[str, str], ...] = ()
    if line.startswith(b"@"):
        end = line.find(b" ")
        raw_tags = line[1:] if end < 0 else line[1:end]
        if len(raw_tags) > MAX_CLIENT_TAGS:
            return INPUT_TOO_LONG
        tags = parse_tags(raw_tags.decode("utf-8", "replace"))
        line = b"" if end < 0 else line[end + 1 :]
    if len(line) > MAX_BODY:
        return INPUT_TOO_LONG
    text = line.decode("utf-8", "replace").lstrip(_SPACE)
    source = ""
    if text.startswith(":"):
        source, _, text = text[1:].partition(_SPACE)
        text = text.lstrip(_SPACE)
    command, _, text = text.partition(_SPACE)
    if not command:
        return EMPTY
    params: list[str] = []
    while True:
        text = text.lstrip(_SPACE)
        if not text:
            break
        if text.startswith(":"):
            params.append(text[1:])
            break
        word, _, text = text.partition(_SPACE)
        params.append(word)
    return Message(_upper(command), tuple(params), source, tags)


def parse_tags(raw: str) -> "tuple[tuple[str, str], ...]":
    """Tags in the order sent, the last of a repeated key winning; malformed keys dropped."""
    found: dict[str, str] = {}
    for item in raw.split(";"):
        key, _, value = item.partition("=")
        if _TAG_KEY.fullmatch(key):
            found.pop(key, None)
            found[key] = unescape(value)
    return tuple(found.items())


def unescape(value: str) -> str:
    """IRCv3 unescaping: ``\\:`` ``\\s`` ``\\\\`` ``\\r`` ``\\n``; ``\\x`` is x; a lone ``\\`` goes."""
    if "\\" not in value:
        return value
    return _ESCAPED.sub(lambda m: _UNESCAPES.get(m.group(1), m.group(1)), value)


def escape(value: str) -> str:
    return _TO_ESCAPE.sub(lambda m: _ESCAPES[m.group(0)], value)


def serialize(message: Message) -> bytes:
    """The wire form with CR LF; the last parameter is written trailing (``:``) always.

    Raises ValueError on a message no line can carry (a middle parameter that
    is empty, has a space or starts with ``:``; CR, LF or NUL anywhere): a bug
    in the caller, never a client's doing, since client text is cleaned first.
    """
    parts: list[str] = []
    if message.tags:
        parts.append("@" + ";".join(_tag(key, value) for key, value in message.tags))
    if message.source:
        parts.append(":" + _word(message.source))
    parts.append(_word(message.command))
    params = message.params
    for param in params[:-1]:
        parts.append(_word(param))
    if params:
        last = params[-1]
        if _FORBIDDEN.search(last):
            raise ValueError(f"cannot carry {last!r}")
        parts.append(":" + last)
    return (_SPACE.join(parts) + "\r\n").encode("utf-8")


def _tag(key: str, value: str) -> str:
    if not _TAG_KEY.fullmatch(key):
        raise ValueError(f"not a tag key: {key!r}")
    return f"{key}={escape(value)}" if value else key


def _word(word: str) -> str:
    if not word or word.startswith(":") or _SPACE in word or _FORBIDDEN.search(word):
        raise ValueError(f"not a middle parameter: {word!r}")
    return word


def _upper(word: str) -> str:
    # ASCII only: "privmsg" is PRIVMSG, but no Unicode case mapping turns
    # some other word into a command (as ``commands.parse`` does for /nick).
    return word.upper() if word.isascii() else word


def server_time(at: float) -> str:
    """An IRCv3 ``server-time`` value: UTC, milliseconds, ``Z``.

    Taken from the time in whole microseconds (``news.micros``), as the store keeps it: a line
    shows the same millisecond live and read back, and ``CHATHISTORY`` finds it by that value.
    """
    whole, fraction = divmod(micros(at), 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{fraction // 1000:03d}Z"
