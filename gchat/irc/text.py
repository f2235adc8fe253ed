"""The text of an IRC message: CTCP ACTION, cleaning, and cutting to fit a line.

Pure. Text from an IRC client is cleaned exactly like a line client's (the
decoding already replaced invalid UTF-8; ``sanitize.strip_controls`` removes
escapes and control characters, IRC formatting codes included, and applies
BS and DEL), after the CTCP ``\\x01`` delimiters have been read, so that
nothing an IRC client sends can drive an ``nc`` user's terminal.
"""

from typing import Optional

from gchat.news import Kind
from gchat.sanitize import strip_controls

CTCP = "\x01"
ACTION = "ACTION"


def incoming(text: str, notice: bool) -> "Optional[tuple[Kind, str]]":
    """What a PRIVMSG (or NOTICE) text says, cleaned; None: nothing to relay.

    A CTCP ACTION is an action; any other CTCP (VERSION, PING, ...) is not
    relayed, since the line protocol has nothing to show it as; a text empty
    once cleaned is not relayed either, as a blank line from ``nc`` is not.
    """
    kind = Kind.NOTICE if notice else Kind.SAY
    if text.startswith(CTCP):
        body = text[1:-1] if text.endswith(CTCP) and len(text) > 1 else text[1:]
        verb, _, rest = body.partition(" ")
        if verb.upper() != ACTION or notice:
            return None
        kind, text = Kind.ACTION, rest
    cleaned = strip_controls(text)
    if not cleaned.strip(" \t"):
        return None
    return kind, cleaned


def outgoing(text: str, kind: Kind) -> str:
    """The PRIVMSG/NOTICE text for ``text`` of ``kind`` (an action is a CTCP ACTION)."""
    return f"{CTCP}{ACTION} {text}{CTCP}" if kind is Kind.ACTION else text


def cut(text: str, limit: int) -> "list[str]":
    """``text`` in pieces of at most ``limit`` UTF-8 bytes, cut between characters, none empty.

    A line client's message may be longer than an IRC line can carry; IRC
    clients get it as several messages rather than cut short. A ``limit``
    under 4 is taken as 4: one character always fits.
    """
    limit = max(limit, 4)
    data = text.encode("utf-8")
    if len(data) <= limit:
        return [text]
    pieces: list[str] = []
    start = 0
    while start < len(data):
        end = min(start + limit, len(data))
        # Back up to a character's first byte (not a continuation byte 10xxxxxx).
        while end < len(data) and data[end] & 0xC0 == 0x80:
            end -= 1
        pieces.append(data[start:end].decode("utf-8"))
        start = end
    return pieces


def shorten(text: str, limit: int) -> str:
    """The longest start of ``text`` that is at most ``limit`` UTF-8 bytes."""
    return cut(text, limit)[0] if text else text
