"""IRCv3 ``CHATHISTORY`` (``draft/chathistory``): a client's request read into spans of a room's lines.

Pure and total: ``parse`` takes any parameters and returns what to read or why not, never
raises. A message reference is a timestamp only (``MSGREFTYPES=timestamp``): gchat's lines
carry no ``msgid``, and one made up here would not survive a restart or match across a
cluster's nodes. A timestamp names a millisecond, as ``server-time`` shows it, and a line is at
the millisecond it shows: ``BEFORE``, ``AFTER``, ``BETWEEN`` and ``LATEST`` leave out the
lines shown with the reference's own time; ``AROUND`` gives those first after the older half.
Bounds go to the chat as Unix times (``Chat.history``: from ``after`` to before ``before``).
"""

import datetime
import math
import re
from dataclasses import dataclass
from typing import NamedTuple, Optional, Union

from gchat.news import micros

CAP = "draft/chathistory"
COMMAND = "CHATHISTORY"
# Lines one request gets at most (ISUPPORT CHATHISTORY); a bigger limit asked is cut to it.
MAX_LIMIT = 100
MSGREFTYPES = "timestamp"
TARGETS = "TARGETS"
TARGETS_BATCH = "draft/chathistory-targets"

# Standard reply codes and texts (FAIL CHATHISTORY CODE CONTEXT... :TEXT).
UNKNOWN_COMMAND = "UNKNOWN_COMMAND"
NEED_MORE_PARAMS = "NEED_MORE_PARAMS"
INVALID_PARAMS = "INVALID_PARAMS"
INVALID_MSGREFTYPE = "INVALID_MSGREFTYPE"
INVALID_TARGET = "INVALID_TARGET"
UNKNOWN_TEXT = "Unknown command"
MISSING_TEXT = "Missing parameters"
INVALID_TEXT = "Invalid parameters"
MSGREFTYPE_TEXT = "Only timestamp references are supported"
TARGET_TEXT = "Messages could not be retrieved"

# Parameters each subcommand needs, itself included.
_NEEDS = {"BEFORE": 4, "AFTER": 4, "LATEST": 4, "AROUND": 4, "BETWEEN": 5, TARGETS: 4}
_TIMESTAMP = re.compile(r"timestamp=(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?Z", re.ASCII)
_EPOCH = datetime.datetime(1970, 1, 1)
_DIGITS = re.compile(r"[0-9]+", re.ASCII)
# Longer digit strings are surely over MAX_LIMIT (and int() of thousands of digits is refused).
_LIMIT_DIGITS = 6


class Span(NamedTuple):
    """Up to ``limit`` lines from ``after`` to before ``before``: the newest of them, or the oldest.

    A request's later span gets ``limit`` less what the earlier ones found (``AROUND``).
    """

    after: float
    before: float
    limit: int
    newest: bool


@dataclass(frozen=True)
class Query:
    """Lines of one target (a room, or a nick: gchat keeps no private history)."""

    sub: str
    target: str
    spans: "tuple[Span, ...]"


@dataclass(frozen=True)
class Targets:
    """``TARGETS``: the client's rooms whose latest line falls in ``span``, the oldest first."""

    span: Span


@dataclass(frozen=True)
class Fail:
    """A refusal: ``FAIL CHATHISTORY code context... :text``."""

    code: str
    context: "tuple[str, ...]"
    text: str


Request = Union[Query, Targets, Fail]


def parse(params: "tuple[str, ...]") -> Request:
    """What ``CHATHISTORY params`` asks for, or why it cannot be answered."""
    if not params:
        return Fail(NEED_MORE_PARAMS, ("*",), MISSING_TEXT)
    sub = params[0].upper() if params[0].isascii() else params[0]
    needs = _NEEDS.get(sub)
    if needs is None:
        return Fail(UNKNOWN_COMMAND, (params[0],), UNKNOWN_TEXT)
    if len(params) < needs:
        return Fail(NEED_MORE_PARAMS, (sub,), MISSING_TEXT)
    limit = _limit(params[needs - 1])
    if limit is None:
        return Fail(INVALID_PARAMS, (sub, params[needs - 1]), INVALID_TEXT)
    if sub == TARGETS:
        ends = _references(sub, params[1:3])
        if isinstance(ends, Fail):
            return ends
        low, high = sorted(ends)
        return Targets(Span(_after(low), _before(high), limit, False))
    target = params[1]
    if sub == "LATEST" and params[2] == "*":
        return Query(sub, target, (Span(-math.inf, math.inf, limit, True),))
    refs = _references(sub, params[2 : needs - 1])
    if isinstance(refs, Fail):
        return refs
    return Query(sub, target, _spans(sub, refs, limit))


def _spans(sub: str, refs: "list[int]", limit: int) -> "tuple[Span, ...]":
    ref = refs[0]
    if sub == "BEFORE":
        return (Span(-math.inf, _before(ref), limit, True),)
    if sub == "AFTER":
        return (Span(_after(ref), math.inf, limit, False),)
    if sub == "LATEST":
        return (Span(_after(ref), math.inf, limit, True),)
    if sub == "AROUND":
        return (Span(-math.inf, _before(ref), limit // 2, True), Span(_before(ref), math.inf, limit, False))
    # BETWEEN: from the first reference towards the second, either way in time.
    low, high = sorted(refs)
    return (Span(_after(low), _before(high), limit, refs[0] > refs[1]),)


def covers(span: Span, at: float) -> bool:
    """Whether a line at ``at`` falls in ``span``, to the microsecond as the chat compares."""
    return micros(span.after) <= micros(at) < micros(span.before)


def latest(targets: Targets, found: "list[tuple[str, float]]") -> "list[tuple[str, float]]":
    """``TARGETS``' answer from each room's latest line time: those in its span, oldest first."""
    kept = sorted(((at, room) for room, at in found if covers(targets.span, at)))
    return [(room, at) for at, room in kept[: targets.span.limit]]


def invalid_target(sub: str, target: str) -> Fail:
    """A target the client may not read (not a room it is in) or that names no room."""
    return Fail(INVALID_TARGET, (sub, target), TARGET_TEXT)


def _before(millis: int) -> float:
    """The start of a millisecond: lines before it show an earlier time."""
    return millis / 1000


def _after(millis: int) -> float:
    """The end of a millisecond: lines from it on show a later time."""
    return (millis + 1) / 1000


def _limit(word: str) -> Optional[int]:
    if not _DIGITS.fullmatch(word) or not word.strip("0"):
        return None
    return MAX_LIMIT if len(word) > _LIMIT_DIGITS else min(int(word), MAX_LIMIT)


def _references(sub: str, words: "tuple[str, ...]") -> "Union[list[int], Fail]":
    """Each word's millisecond (Unix time), or why one is refused."""
    found: list[int] = []
    for word in words:
        millis = timestamp(word)
        if millis is not None:
            found.append(millis)
        elif word.startswith("msgid="):
            return Fail(INVALID_MSGREFTYPE, (sub, word), MSGREFTYPE_TEXT)
        else:
            return Fail(INVALID_PARAMS, (sub, word), INVALID_TEXT)
    return found


def timestamp(word: str) -> Optional[int]:
    """The Unix time in milliseconds ``timestamp=YYYY-MM-DDThh:mm:ss.sssZ`` names (digits past the
    millisecond dropped), or None if it names none."""
    match = _TIMESTAMP.fullmatch(word)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction = match.groups()
    try:
        when = datetime.datetime(int(year), int(month), int(day), int(hour), int(minute), int(second))
    except ValueError:
        return None
    seconds = (when - _EPOCH) // datetime.timedelta(seconds=1)
    return seconds * 1000 + int(((fraction or "") + "000")[:3])
