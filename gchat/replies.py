"""Every line the server sends, formatted in one place.

These strings are the user-visible contract (PROTOCOL.md), checked byte for
byte from outside the project, so none of them is spelled anywhere else.
Functions return ``bytes`` ready for the wire: a broadcast line is encoded once
and the same object is queued for every recipient.
"""

from collections.abc import Iterable

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
