"""How news looks to an IRC client: ``IrcStyle``, one per set of caps that change it.

Only five negotiated capabilities change the bytes a client is sent:
``server-time`` (a ``time`` tag on messages), ``batch`` (history replayed in
a ``chathistory`` batch), ``echo-message`` (a sender gets its own room
messages), ``userhost-in-names`` (``nick!nick@host`` in NAMES) and
``draft/chathistory`` (no history replayed on join: the client asks for it).
``message-tags`` alone adds nothing (the server sends no other tag) and
``multi-prefix`` neither (``@`` is the only prefix), so clients
that differ only by those share every rendering.

Lines are kept within IRC's 512 bytes: a longer line client's message
reaches IRC as several messages cut between characters, a long topic or
reason is cut short.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable, Optional, cast

from gchat import news
from gchat.irc import caps, chathistory, replies
from gchat.irc.message import MAX_BODY, Message, serialize, server_time
from gchat.irc.text import cut, outgoing

HISTORY_BATCH = "history"
TARGETS_BATCH = "targets"
CHATHISTORY = "chathistory"

_NOTICE_NUMERICS = {
    news.Notice.WRONG_OPERATOR: (replies.ERR_PASSWDMISMATCH, replies.PASSWORD_MISMATCH),
    news.Notice.NO_MORE_OPER_TRIES: (replies.ERR_NOOPERHOST, replies.NO_MORE_OPER_TRIES),
    news.Notice.PERMISSION_DENIED: (replies.ERR_NOPRIVILEGES, replies.NO_PRIVILEGES),
}
_NOTICE_TEXTS = {
    news.Notice.LINK_LOST: replies.LINK_LOST,
    news.Notice.LINK_RESTORED: replies.LINK_RESTORED,
}
_NOTICE_ERRORS = {
    news.Notice.SHUTTING_DOWN: replies.SHUTTING_DOWN,
    news.Notice.BYE: replies.BYE,
}


# A message's tags, as ``Message`` holds them.
Tags = tuple[tuple[str, str], ...]
_SHARED = (news.Message, news.Entered, news.Parted, news.Gone, news.Renamed, news.TopicChanged)


def prefix(nick: str, host: str) -> str:
    """``nick!nick@host``: the user part is the nick, the same on every node of a cluster."""
    return f"{nick}!{nick}@{replies.irc_host(host)}"


@dataclass(frozen=True)
class IrcStyle:
    time: bool = False
    echo: bool = False
    batch: bool = False
    userhost: bool = False
    # draft/chathistory: the client asks for a room's history itself (CHATHISTORY), as Ergo
    # takes it, so a join replays none that it would then get twice.
    asks: bool = False

    @classmethod
    def of(cls, enabled: "frozenset[str]") -> "IrcStyle":
        """The style for a client with ``enabled`` caps: one shared object per combination.

        Thirty-two at most, so a connection holds a reference, not a style of its own.
        """
        key = (
            caps.SERVER_TIME in enabled,
            caps.ECHO_MESSAGE in enabled,
            caps.BATCH in enabled,
            caps.USERHOST_IN_NAMES in enabled,
            chathistory.CAP in enabled,
        )
        style = _STYLES.get(key)
        if style is None:
            style = _STYLES[key] = cls(*key)
        return style

    def render(self, item: news.Shared) -> bytes:
        if isinstance(item, news.Message):
            return self._message(item, item.room, ())
        if isinstance(item, news.Entered):
            return serialize(Message("JOIN", (item.room,), prefix(item.nick, item.host)))
        if isinstance(item, news.Parted):
            return _part(item.room, item.nick, item.host, item.reason)
        if isinstance(item, news.Gone):
            return replies.fit(Message("QUIT", (item.reason,), prefix(item.nick, item.host)))
        if isinstance(item, news.Renamed):
            return _nick(item.old, item.new, item.host)
        if isinstance(item, news.TopicChanged):
            return replies.fit(Message("TOPIC", (item.room, item.text), prefix(item.by, item.host)))
        return replies.fit(Message("KICK", (item.room, item.nick, item.reason), prefix(item.by, item.host)))

    def tell(self, item: news.Personal, nick: str) -> bytes:
        if isinstance(item, news.Notice):
            return _notice(item, nick)
        if isinstance(item, news.Arrived):
            return self._arrived(item)
        if isinstance(item, news.Left):
            return _part(item.room, item.nick, item.host, item.reason)
        if isinstance(item, news.NickChanged):
            # NICK to the nick it has already (same case too) changes nothing an IRC client shows.
            return _nick(item.old, item.new, item.host) if item.old != item.new else b""
        if isinstance(item, news.Private):
            return self._private(item)
        if isinstance(item, news.Kicked):
            # Told alone: an operator who shares none of the kicked one's rooms.
            return replies.notice(nick, replies.kicked(item.nick, item.by, item.reason))
        if isinstance(item, _SHARED):
            return self.render(item)
        if isinstance(item, news.MemberList):
            entries = [replies.member_entry(member, self.userhost) for member in item.members]
            return replies.names(nick, item.room, entries)
        return _answer(item, nick)

    def history(self, room: str, messages: "Sequence[news.Message]") -> bytes:
        """A room's history, with the original times where negotiated, in a batch where negotiated."""
        return self.chathistory(room, messages) if messages else b""

    def chathistory(self, target: str, messages: "Sequence[news.Message]") -> bytes:
        """``CHATHISTORY``'s answer: with ``batch``, a batch even when empty, so the client knows
        there is nothing (without it, the lines alone, which may be none)."""
        return self._batch(
            HISTORY_BATCH,
            (CHATHISTORY, target),
            lambda tags: [self._message(message, target, tags) for message in messages],
        )

    def targets(self, found: "Sequence[tuple[str, float]]") -> bytes:
        """``CHATHISTORY TARGETS``' answer: each room and the time of its latest line."""
        return self._batch(
            TARGETS_BATCH,
            (chathistory.TARGETS_BATCH,),
            lambda tags: [_target(room, at, tags) for room, at in found],
        )

    def _batch(self, ref: str, params: "tuple[str, ...]", lines: "Callable[[Tags], list[bytes]]") -> bytes:
        """``lines`` (given the tags that put them in the batch) in a batch ``ref`` where negotiated."""
        if not self.batch:
            return b"".join(lines(()))
        return b"".join(
            [
                serialize(Message("BATCH", ("+" + ref, *params), replies.SERVER)),
                *lines((("batch", ref),)),
                serialize(Message("BATCH", ("-" + ref,), replies.SERVER)),
            ]
        )

    def _arrived(self, item: news.Arrived) -> bytes:
        members = sorted(item.members, key=lambda member: member.nick.lower())
        entries = [replies.member_entry(member, self.userhost) for member in members]
        return b"".join(
            [
                serialize(Message("JOIN", (item.room,), prefix(item.nick, item.host))),
                replies.numeric(replies.RPL_TOPIC, item.nick, item.room, item.topic) if item.topic else b"",
                replies.names(item.nick, item.room, entries),
                b"" if self.asks else self.history(item.room, item.history),
            ]
        )

    def _private(self, item: news.Private) -> bytes:
        return self._text(item.nick, item.host, item.to, item.text, item.kind, item.at, ())

    def _message(self, item: news.Message, room: str, tags: "tuple[tuple[str, str], ...]") -> bytes:
        return self._text(item.nick, item.host, room, item.text, item.kind, item.at, tags)

    def _text(
        self,
        nick: str,
        host: str,
        target: str,
        text: str,
        kind: news.Kind,
        at: float,
        tags: "tuple[tuple[str, str], ...]",
    ) -> bytes:
        """PRIVMSG (or NOTICE) lines for ``text``: as many as it needs to stay within 512 bytes each."""
        verb = "NOTICE" if kind is news.Kind.NOTICE else "PRIVMSG"
        source = prefix(nick, host)
        if self.time:
            tags = (("time", server_time(at)), *tags)
        if 4 * len(text) + len(source) + len(verb) + len(target) + 24 <= MAX_BODY:
            # Surely one line (see IrcSession._send): most are, and are not measured first.
            return serialize(Message(verb, (target, outgoing(text, kind)), source, tags))
        room = MAX_BODY + 2 - len(serialize(Message(verb, (target, outgoing("", kind)), source)))
        lines = (Message(verb, (target, outgoing(piece, kind)), source, tags) for piece in cut(text, room))
        return b"".join(serialize(line) for line in lines)


# IrcStyle.of's styles, by what they turn on.
_STYLES: "dict[tuple[bool, bool, bool, bool, bool], IrcStyle]" = {}


def _target(room: str, at: float, tags: Tags) -> bytes:
    params = (chathistory.TARGETS, room, server_time(at))
    return serialize(Message(chathistory.COMMAND, params, replies.SERVER, tags))


def _part(room: str, nick: str, host: str, reason: str) -> bytes:
    params = (room, reason) if reason else (room,)
    return replies.fit(Message("PART", params, prefix(nick, host)))


def _nick(old: str, new: str, host: str) -> bytes:
    return serialize(Message("NICK", (new,), prefix(old, host)))


def _notice(item: news.Notice, nick: str) -> bytes:
    if item in _NOTICE_NUMERICS:
        code, text = _NOTICE_NUMERICS[item]
        return replies.numeric(code, nick, text)
    if item in _NOTICE_TEXTS:
        return replies.notice(nick, _NOTICE_TEXTS[item])
    if item in _NOTICE_ERRORS:
        return replies.error(_NOTICE_ERRORS[item])
    if item is news.Notice.TOO_MANY_JOINS:
        return replies.numeric(replies.RPL_TRYAGAIN, nick, "JOIN", replies.TRY_JOIN_LATER)
    assert item is news.Notice.NOW_OPERATOR
    return replies.numeric(replies.RPL_YOUREOPER, nick, replies.YOURE_OPER) + serialize(
        Message("MODE", (nick, "+" + replies.USER_MODES), replies.SERVER)
    )


def _answer(item: news.Personal, nick: str) -> bytes:
    """A reply to one of the client's own requests: a list, or a refusal."""
    if isinstance(item, news.RoomList):
        return replies.room_list(nick, item.rooms)
    if isinstance(item, news.TopicIs):
        return replies.topic(nick, item.room, item.text)
    refusal = _refusal(item, nick)
    if refusal is None:
        return b""
    return refusal


# Refusals an IRC numeric names: the numeric, the field of the news it names, its text.
_NUMERIC_REFUSALS: "dict[type, tuple[str, str, str]]" = {
    news.NoSuchNick: (replies.ERR_NOSUCHNICK, "nick", replies.NO_SUCH_NICK),
    news.NickInUse: (replies.ERR_NICKNAMEINUSE, "nick", replies.NICK_IN_USE),
    news.InvalidNick: (replies.ERR_ERRONEUSNICKNAME, "nick", replies.ERRONEOUS_NICK),
    news.InvalidRoom: (replies.ERR_BADCHANNAME, "room", replies.BAD_CHANNEL_NAME),
    news.TooManyRooms: (replies.ERR_TOOMANYCHANNELS, "room", replies.TOO_MANY_CHANNELS),
    news.NotIn: (replies.ERR_NOTONCHANNEL, "room", replies.NOT_ON_CHANNEL),
}
# Answers about an address (operators' bans), as notices: the text for the address.
_ADDRESS_NOTICES: "dict[type, Callable[[str], str]]" = {
    news.AddressBanned: replies.banned,
    news.AddressUnbanned: replies.unbanned,
    news.NotBanned: replies.not_banned,
    news.OwnAddress: replies.own_address,
}


def _refusal(item: news.Personal, nick: str) -> Optional[bytes]:
    numeric = _NUMERIC_REFUSALS.get(type(item))
    if numeric is not None:
        code, field, text = numeric
        return replies.numeric(code, nick, getattr(item, field), text)
    notice = _ADDRESS_NOTICES.get(type(item))
    if notice is not None:
        return replies.notice(nick, notice(cast(news.AddressBanned, item).address))
    if isinstance(item, news.TooManyMessages):
        return replies.too_many_messages(nick, item.nick)
    # AlreadyIn: IRC servers ignore a JOIN to a channel the client is in.
    return None
