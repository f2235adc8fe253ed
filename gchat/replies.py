"""Every line the server sends, formatted in one place.

These strings are the user-visible contract (PROTOCOL.md), checked byte for
byte from outside the project, so none of them is spelled anywhere else.
Functions return ``bytes`` ready for the wire: a broadcast line is encoded once
and the same object is queued for every recipient.
"""

from collections.abc import Iterable
from typing import Any, Callable

from gchat import news as news_

WELCOME_TEXT = "Welcome to the chatroom!"

HELP_TEXT = (
    "*** Commands:",
    "***   /nick NAME       change your nickname",
    "***   /join ROOM       leave this room and join ROOM (created on demand)",
    "***   /rooms           list rooms and how many are in each",
    "***   /who             list the users in this room",
    "***   /msg NICK TEXT   send TEXT to NICK alone",
    "***   /me TEXT         act: others see '* NICK TEXT'",
    "***   /quit [REASON]   leave the server",
    "***   /help            this list",
    "***   /topic [TEXT]    show this room's topic (operators: set it)",
    "***   /pass SECRET     the server's password, if it asks for one",
    "*** Operators: /oper NAME PASSWORD, /kick NICK [REASON], /ban NICK, /unban ADDRESS",
    "*** A line starting with // sends a message starting with /.",
)


def line(text: str) -> bytes:
    return (text + "\n").encode("utf-8")


WELCOME = line(WELCOME_TEXT)
HELP = b"".join(line(text) for text in HELP_TEXT)
BYE = line("*** Bye!")
SERVER_FULL = line("!!! server full, try again later")
TOO_MANY_FROM_ADDRESS = line("!!! too many connections from your address")
CONNECTING_TOO_FAST = line("!!! connecting too fast from your address, try again later")
IDLE_TIMEOUT = line("*** disconnected: idle timeout")
SHUTTING_DOWN = line("*** server shutting down")
NEEDS_PASSWORD = line("*** This server needs a password: /pass SECRET")
PASSWORD_REQUIRED = line("!!! password required")
WRONG_PASSWORD = line("!!! wrong password")
PASSWORD_ACCEPTED_ALREADY = line("!!! password already accepted")
NOW_OPERATOR = line("*** You are now an operator")
WRONG_OPERATOR = line("!!! wrong operator name or password")
PERMISSION_DENIED = line("!!! permission denied")
BANNED = line("!!! you are banned from this server")
LINK_LOST = line("*** cluster link lost, local only")
LINK_RESTORED = line("*** cluster link restored")
TOO_MANY_JOINS = line("!!! too many joins from your address, try again later")
NO_PASSWORD_NEEDED = line("!!! no password needed")
NO_MORE_OPER_TRIES = line("!!! no more /oper tries on this connection")


def status(nick: str, room: str) -> bytes:
    return line(f"*** You are {nick} in {room}. Type /help for commands.")


def chat(nick: str, text: str) -> bytes:
    return line(f"<{nick}> {text}")


def action(nick: str, text: str) -> bytes:
    return line(f"* {nick} {text}")


def private(sender: str, text: str) -> bytes:
    return line(f"*{sender}* {text}")


def joined(nick: str, room: str) -> bytes:
    return line(f"*** {nick} joined {room}")


def left(nick: str, room: str) -> bytes:
    return line(f"*** {nick} left {room}")


def quit_notice(nick: str, reason: str) -> bytes:
    return line(f"*** {nick} quit ({reason})")


def renamed(old: str, new: str) -> bytes:
    return line(f"*** {old} is now known as {new}")


def you_are_now(nick: str) -> bytes:
    return line(f"*** You are now {nick}")


def now_in(room: str, users: int) -> bytes:
    return line(f"*** You are now in {room} ({_users(users)})")


def rooms(counts: Iterable[tuple[str, int]]) -> bytes:
    listing = [f"{room} ({users})" for room, users in counts]
    return line(f"*** rooms ({len(listing)}): {', '.join(listing)}")


def who(room: str, nicks: "list[str]") -> bytes:
    return line(f"*** users in {room} ({len(nicks)}): {', '.join(nicks)}")


def line_too_long(limit: int) -> bytes:
    return line(f"!!! line too long (max {limit} bytes)")


def usage(syntax: str) -> bytes:
    return line(f"!!! usage: {syntax}")


def unknown_command(word: str) -> bytes:
    return line(f"!!! unknown command: /{word} (try /help)")


def nick_in_use(nick: str) -> bytes:
    return line(f"!!! nickname in use: {nick}")


def invalid_nick(nick: str) -> bytes:
    return line(f"!!! invalid nickname: {nick}")


def invalid_room(room: str) -> bytes:
    return line(f"!!! invalid room: {room}")


def already_in(room: str) -> bytes:
    return line(f"!!! you are already in {room}")


def no_such_user(nick: str) -> bytes:
    return line(f"!!! no such user: {nick}")


def too_many_messages(nick: str) -> bytes:
    return line(f"!!! too many messages to {nick} from your address, try again later")


def kicked(nick: str, by: str, reason: str) -> bytes:
    return line(f"*** {nick} was kicked by {by} ({reason})")


def banned(address: str) -> bytes:
    return line(f"*** banned {address}")


def unbanned(address: str) -> bytes:
    return line(f"*** unbanned {address}")


def not_banned(address: str) -> bytes:
    return line(f"!!! not banned: {address}")


def topic(room: str, text: str) -> bytes:
    return line(f"*** topic for {room}: {text}")


def no_topic(room: str) -> bytes:
    return line(f"*** no topic for {room}")


def own_address(address: str) -> bytes:
    return line(f"!!! cannot ban your own address: {address}")


def _users(count: int) -> str:
    return "1 user" if count == 1 else f"{count} users"


def not_in(room: str) -> bytes:
    return line(f"!!! you are not in {room}")


def too_many_rooms(room: str) -> bytes:
    return line(f"!!! too many rooms, cannot join {room}")


def older_lines(room: str, lines: "Iterable[news_.Message]") -> bytes:
    """/history's answer: a count, then the lines as a join replays them, oldest first."""
    parts = [_message(message) for message in lines]
    if not parts:
        return line(f"*** no older lines in {room}")
    count = "1 older line" if len(parts) == 1 else f"{len(parts)} older lines"
    return b"".join([line(f"*** {count} in {room}:"), *parts])


_ACTION = news_.Kind.ACTION


def _message(news: "news_.Message") -> bytes:
    if news.kind is _ACTION:
        return action(news.nick, news.text)
    return chat(news.nick, news.text)


def _private(news: "news_.Private") -> bytes:
    if news.kind is _ACTION:
        return private(news.nick, f"* {news.nick} {news.text}")
    return private(news.nick, news.text)


def _arrived(news: "news_.Arrived") -> bytes:
    first = status(news.nick, news.room) if news.first else now_in(news.room, len(news.members))
    parts = [first]
    if news.topic:
        parts.append(topic(news.room, news.topic))
    parts.extend(_message(message) for message in news.history)
    return b"".join(parts)


_NOTICES = {
    news_.Notice.SHUTTING_DOWN: SHUTTING_DOWN,
    news_.Notice.LINK_LOST: LINK_LOST,
    news_.Notice.LINK_RESTORED: LINK_RESTORED,
    news_.Notice.TOO_MANY_JOINS: TOO_MANY_JOINS,
    news_.Notice.NOW_OPERATOR: NOW_OPERATOR,
    news_.Notice.WRONG_OPERATOR: WRONG_OPERATOR,
    news_.Notice.NO_MORE_OPER_TRIES: NO_MORE_OPER_TRIES,
    news_.Notice.PERMISSION_DENIED: PERMISSION_DENIED,
    news_.Notice.BYE: BYE,
}

_SHARED: "dict[type, Callable[[Any], bytes]]" = {
    news_.Message: _message,
    news_.Entered: lambda news: joined(news.nick, news.room),
    news_.Parted: lambda news: left(news.nick, news.room),
    news_.Gone: lambda news: quit_notice(news.nick, news.reason),
    news_.Renamed: lambda news: renamed(news.old, news.new),
    news_.TopicChanged: lambda news: topic(news.room, news.text),
    news_.Kicked: lambda news: kicked(news.nick, news.by, news.reason),
}

_PERSONAL: "dict[type, Callable[[Any], bytes]]" = {
    **_SHARED,
    news_.Notice: _NOTICES.__getitem__,
    news_.Arrived: _arrived,
    news_.Left: lambda news: left(news.nick, news.room),
    news_.NickChanged: lambda news: you_are_now(news.new),
    news_.Private: _private,
    news_.RoomList: lambda news: rooms((name, count) for name, count, _ in news.rooms),
    news_.MemberList: lambda news: who(news.room, [member.nick for member in news.members]),
    news_.TopicIs: lambda news: topic(news.room, news.text) if news.text else no_topic(news.room),
    news_.NoSuchNick: lambda news: no_such_user(news.nick),
    news_.NickInUse: lambda news: nick_in_use(news.nick),
    news_.InvalidNick: lambda news: invalid_nick(news.nick),
    news_.InvalidRoom: lambda news: invalid_room(news.room),
    news_.AlreadyIn: lambda news: already_in(news.room),
    news_.NotIn: lambda news: not_in(news.room),
    news_.TooManyRooms: lambda news: too_many_rooms(news.room),
    news_.TooManyMessages: lambda news: too_many_messages(news.nick),
    news_.AddressBanned: lambda news: banned(news.address),
    news_.AddressUnbanned: lambda news: unbanned(news.address),
    news_.NotBanned: lambda news: not_banned(news.address),
    news_.OwnAddress: lambda news: own_address(news.address),
}


class LineStyle:
    """The line protocol's rendering of the chat's news: the lines above.

    One instance serves every line client (``LINES``), so a fan-out renders each line once.
    """

    __slots__ = ()
    echo = False

    def render(self, news: "news_.Shared") -> bytes:
        return _SHARED[type(news)](news)

    def tell(self, news: "news_.Personal", nick: str) -> bytes:
        return _PERSONAL[type(news)](news)


LINES = LineStyle()
