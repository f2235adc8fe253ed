"""IRCv3 capability negotiation (``CAP``) as a pure state machine.

The session keeps a ``Caps`` and hands each ``CAP`` message's parameters to
``negotiate``, which returns the new state and the reply bytes. While
``holding`` is set (a client sent ``CAP LS`` or ``CAP REQ`` before it
registered) registration waits for ``CAP END``, as the spec asks. Our caps
never change while the server runs, so ``cap-notify`` (implied by ``302``)
never has a ``NEW`` or ``DEL`` to send.
"""

from dataclasses import dataclass, replace
from typing import Optional

from gchat.irc import chathistory, replies
from gchat.irc.message import Message

BATCH = "batch"
CAP_NOTIFY = "cap-notify"
ECHO_MESSAGE = "echo-message"
MESSAGE_TAGS = "message-tags"
MULTI_PREFIX = "multi-prefix"
SERVER_TIME = "server-time"
USERHOST_IN_NAMES = "userhost-in-names"

SUPPORTED = frozenset(
    {
        BATCH,
        CAP_NOTIFY,
        chathistory.CAP,
        ECHO_MESSAGE,
        MESSAGE_TAGS,
        MULTI_PREFIX,
        SERVER_TIME,
        USERHOST_IN_NAMES,
    }
)
# CAP LS without a version is 301; 302 and above turn cap-notify on by themselves.
BASE_VERSION = 301
NOTIFY_VERSION = 302


@dataclass(frozen=True)
class Caps:
    enabled: "frozenset[str]" = frozenset()
    version: int = 0
    holding: bool = False


# What every client starts with: one object for all, since most never negotiate.
NONE = Caps()


def negotiate(caps: Caps, params: "tuple[str, ...]", nick: str) -> "tuple[Caps, bytes]":
    """The state after ``CAP params`` from the client called ``nick`` (``*`` before NICK), and the reply."""
    if not params:
        return caps, replies.numeric(replies.ERR_NEEDMOREPARAMS, nick, "CAP", replies.NEED_MORE_PARAMS)
    sub = params[0].upper() if params[0].isascii() else params[0]
    if sub == "LS":
        version = max(caps.version, _version(params[1:]))
        enabled = caps.enabled | {CAP_NOTIFY} if version >= NOTIFY_VERSION else caps.enabled
        return Caps(enabled, version, True), _cap(nick, "LS", " ".join(sorted(SUPPORTED)))
    if sub == "LIST":
        return caps, _cap(nick, "LIST", " ".join(sorted(caps.enabled)))
    if sub == "REQ":
        asked = params[1] if len(params) > 1 else ""
        granted = _request(caps.enabled, asked.split())
        if granted is None:
            return replace(caps, holding=True), _cap(nick, "NAK", asked)
        return Caps(granted, caps.version or BASE_VERSION, True), _cap(nick, "ACK", asked)
    if sub == "END":
        return replace(caps, holding=False), b""
    return caps, replies.numeric(replies.ERR_INVALIDCAPCMD, nick, params[0], replies.INVALID_CAP)


def _version(rest: "tuple[str, ...]") -> int:
    word = rest[0] if rest else ""
    return int(word) if word.isdigit() and len(word) < 6 else BASE_VERSION


def _request(enabled: "frozenset[str]", tokens: "list[str]") -> "Optional[frozenset[str]]":
    """The caps after a REQ, or None if any is unknown: a REQ is granted whole or not at all."""
    adding: set[str] = set()
    removing: set[str] = set()
    for token in tokens:
        name = token[1:] if token.startswith("-") else token
        if name not in SUPPORTED:
            return None
        (removing if token.startswith("-") else adding).add(name)
    return frozenset((enabled | adding) - removing)


def _cap(nick: str, sub: str, text: str) -> bytes:
    return replies.fit(Message("CAP", (nick, sub, text), replies.SERVER))
