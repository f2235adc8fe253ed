"""Every numeric reply and fixed text the IRC front-end sends, in one place.

Like ``gchat.replies`` for the line protocol: the names below are the
numerics of RFC 1459/2812 as modern.ircdocs.horse lists them, and every
refusal of the line protocol has its numeric here. Functions return wire
bytes (CR LF ended) ready to queue.
"""

import re
from typing import NamedTuple

from gchat import __version__, news, reasons
from gchat.chat import MAX_ROOMS
from gchat.commands import NICK_MAX, ROOM_MAX
from gchat.irc import chathistory
from gchat.irc.message import MAX_BODY, Message, serialize
from gchat.irc.text import shorten

SERVER = "gchat.irc"
NETWORK = "gchat"
VERSION = f"gchat-{__version__}"
_MIDDLE = re.compile(r"[^:\x00\r\n ][^\x00\r\n ]*")
# The most of a client's word (a command, a nick asked for) a numeric quotes back, in bytes:
# with the other parameters, any numeric then fits in 512 bytes.
MAX_ECHOED = 64
# Before registration a numeric names its target '*'.
UNREGISTERED = "*"

# The most a topic set from IRC may be (TOPICLEN): with the longest nick,
# room and address it still fits every line that carries it. A longer
# topic set by a line client is shown cut to fit.
TOPICLEN = 300
# Channel modes, all fixed: only operators set topics (t), only members
# send to a room (n). ``o`` is a prefix mode: the chat's operators.
CHANNEL_MODES = "nt"
USER_MODES = "o"
OPER_PREFIX = "@"

ISUPPORT = (
    "CASEMAPPING=ascii",
    "CHANTYPES=#",
    f"CHANLIMIT=#:{MAX_ROOMS}",
    f"NICKLEN={NICK_MAX}",
    f"CHANNELLEN={ROOM_MAX + 1}",
    f"TOPICLEN={TOPICLEN}",
    f"PREFIX=(o){OPER_PREFIX}",
    f"CHANMODES=,,,{CHANNEL_MODES}",
    f"NETWORK={NETWORK}",
    f"LINELEN={MAX_BODY + 2}",
    "UTF8ONLY",
    f"CHATHISTORY={chathistory.MAX_LIMIT}",
    f"MSGREFTYPES={chathistory.MSGREFTYPES}",
)

# Numerics (RFC 2812, modern.ircdocs.horse).
RPL_WELCOME = "001"
RPL_YOURHOST = "002"
RPL_CREATED = "003"
RPL_MYINFO = "004"
RPL_ISUPPORT = "005"
RPL_UMODEIS = "221"
RPL_LUSERCLIENT = "251"
RPL_LUSERCHANNELS = "254"
RPL_LUSERME = "255"
RPL_TRYAGAIN = "263"
RPL_AWAY = "301"
RPL_USERHOST = "302"
RPL_ISON = "303"
RPL_UNAWAY = "305"
RPL_NOWAWAY = "306"
RPL_WHOISUSER = "311"
RPL_WHOISSERVER = "312"
RPL_WHOISOPERATOR = "313"
RPL_ENDOFWHO = "315"
RPL_ENDOFWHOIS = "318"
RPL_WHOISCHANNELS = "319"
RPL_LISTSTART = "321"
RPL_LIST = "322"
RPL_LISTEND = "323"
RPL_CHANNELMODEIS = "324"
RPL_NOTOPIC = "331"
RPL_TOPIC = "332"
RPL_WHOREPLY = "352"
RPL_NAMREPLY = "353"
RPL_ENDOFNAMES = "366"
RPL_ENDOFBANLIST = "368"
RPL_YOUREOPER = "381"
ERR_NOSUCHNICK = "401"
ERR_NOSUCHCHANNEL = "403"
ERR_TOOMANYCHANNELS = "405"
ERR_CANNOTSENDTOCHAN = "404"
ERR_NOORIGIN = "409"
ERR_INVALIDCAPCMD = "410"
ERR_NORECIPIENT = "411"
ERR_NOTEXTTOSEND = "412"
ERR_INPUTTOOLONG = "417"
ERR_UNKNOWNCOMMAND = "421"
ERR_NOMOTD = "422"
ERR_NONICKNAMEGIVEN = "431"
ERR_ERRONEUSNICKNAME = "432"
ERR_NICKNAMEINUSE = "433"
ERR_USERNOTINCHANNEL = "441"
ERR_NOTONCHANNEL = "442"
ERR_NOTREGISTERED = "451"
ERR_NEEDMOREPARAMS = "461"
ERR_ALREADYREGISTERED = "462"
ERR_PASSWDMISMATCH = "464"
ERR_YOUREBANNEDCREEP = "465"
ERR_UNKNOWNMODE = "472"
ERR_BADCHANNAME = "479"
ERR_NOPRIVILEGES = "481"
ERR_CHANOPRIVSNEEDED = "482"
ERR_NOOPERHOST = "491"
ERR_UMODEUNKNOWNFLAG = "501"
ERR_USERSDONTMATCH = "502"

# Their texts, where fixed.
NO_ORIGIN = "No origin specified"
NO_SUCH_NICK = "No such nick/channel"
NO_SUCH_CHANNEL = "No such channel"
BAD_CHANNEL_NAME = "Illegal channel name"
CANNOT_SEND = "Cannot send to channel"
TOO_MANY_CHANNELS = "You have joined too many channels"
NOT_ON_CHANNEL = "You're not on that channel"
USER_NOT_IN_CHANNEL = "They aren't on that channel"
NICK_IN_USE = "Nickname is already in use"
ERRONEOUS_NICK = "Erroneous nickname"
NO_NICK_GIVEN = "No nickname given"
NEED_MORE_PARAMS = "Not enough parameters"
NOT_REGISTERED = "You have not registered"
ALREADY_REGISTERED = "You may not reregister"
UNKNOWN_COMMAND = "Unknown command"
INPUT_TOO_LONG = "Input line was too long"
NO_RECIPIENT = "No recipient given"
NO_TEXT = "No text to send"
NO_MOTD = "MOTD File is missing"
PASSWORD_MISMATCH = "Password incorrect"
YOU_ARE_BANNED = "You are banned from this server"
NO_PRIVILEGES = "Permission Denied- You're not an IRC operator"
CHANOP_NEEDED = "You're not channel operator"
NO_MORE_OPER_TRIES = "No more OPER tries on this connection"
UNKNOWN_MODE = "is not a mode this server lets you set"
UNKNOWN_UMODE = "Unknown MODE flag"
USERS_DONT_MATCH = "Cant change mode for other users"
INVALID_CAP = "Invalid CAP command"
YOURE_OPER = "You are now an IRC operator"
NOW_AWAY = "You have been marked as being away"
UNAWAY = "You are no longer marked as being away"
TRY_JOIN_LATER = "Too many joins from your address, try again later"
END_OF_NAMES = "End of /NAMES list"
END_OF_WHO = "End of /WHO list"
END_OF_WHOIS = "End of /WHOIS list"
END_OF_LIST = "End of /LIST"
END_OF_BANS = "End of channel ban list"
NO_TOPIC = "No topic is set"
IS_OPERATOR = "is an IRC operator"
SUPPORTED = "are supported by this server"
INVALID_UTF8 = "Invalid UTF-8 was replaced with U+FFFD"
LINK_LOST = "Cluster link lost, local only"
LINK_RESTORED = "Cluster link restored"
SHUTTING_DOWN = "Server shutting down"
BYE = "Bye!"


def numeric(code: str, target: str, *params: str) -> bytes:
    """``:SERVER CODE TARGET PARAMS...``; the last parameter is cut to fit the line.

    A middle parameter that no line can carry (a client's nick or room as
    typed, refused for that very reason) is sent as ``*``; one a client made
    long is cut to ``MAX_ECHOED`` bytes.
    """
    *middle, last = (target, *params)
    return fit(Message(code, (*(_token(word) for word in middle), last), SERVER))


def _token(word: str) -> str:
    """``word`` as a middle parameter: ``*`` if no line can carry it, cut if a client made it long."""
    return shorten(word, MAX_ECHOED) if _MIDDLE.fullmatch(word) else UNREGISTERED


def fit(message: Message) -> bytes:
    """``message`` serialized, its last parameter shortened so that the line stays in 512 bytes."""
    *head, last = message.params
    room = MAX_BODY - len(serialize(Message(message.command, (*head, ""), message.source))) + 2
    return serialize(Message(message.command, (*head, shorten(last, room)), message.source, message.tags))


def notice(target: str, text: str) -> bytes:
    """A server NOTICE: how the line protocol's informational lines reach IRC."""
    return numeric("NOTICE", target, text)


def invalid_utf8(command: str) -> bytes:
    """IRCv3 standard reply: ``command``'s line was not UTF-8 (``UTF8ONLY``); it was taken with U+FFFD."""
    return standard("WARN", command, "INVALID_UTF8", INVALID_UTF8)


def chathistory_fail(failure: chathistory.Fail) -> bytes:
    return standard("FAIL", chathistory.COMMAND, failure.code, *failure.context, failure.text)


def standard(verb: str, command: str, code: str, *context: str) -> bytes:
    """An IRCv3 standard reply (``FAIL``, ``WARN``, ``NOTE``): ``context``'s last word is its text.

    A client's word quoted back as context is cut, or ``*`` if no line can carry it, as in a numeric.
    """
    *words, text = context
    return fit(Message(verb, (_token(command), code, *map(_token, words), text), SERVER))


def error(text: str) -> bytes:
    """``ERROR``: the last thing a client is sent before the server closes the link."""
    return serialize(Message("ERROR", (text,)))


# What a connection turned away at accept is sent, by reason (gchat.reasons), on an IRC port.
REFUSALS = {
    reasons.FULL: error("Closing link: server full, try again later"),
    reasons.TOO_MANY: error("Closing link: too many connections from your address"),
    reasons.TOO_FAST: error("Closing link: connecting too fast from your address, try again later"),
    reasons.BANNED: error("Closing link: you are banned from this server"),
}


def too_many_messages(target: str, nick: str) -> bytes:
    text = f"Too many messages to {nick} from your address, try again later"
    return numeric(RPL_TRYAGAIN, target, "PRIVMSG", text)


def welcome(nick: str, host: str, created: str, counts: "Counts") -> bytes:
    """001 to 005, LUSERS and 422: what a client gets once registered."""
    return b"".join(
        [
            numeric(RPL_WELCOME, nick, f"Welcome to the {NETWORK} IRC network, {nick}!{nick}@{host}"),
            numeric(RPL_YOURHOST, nick, f"Your host is {SERVER}, running version {VERSION}"),
            numeric(RPL_CREATED, nick, f"This server was created {created}"),
            numeric(RPL_MYINFO, nick, SERVER, VERSION, USER_MODES, CHANNEL_MODES + "o", "o"),
            numeric(RPL_ISUPPORT, nick, *ISUPPORT, SUPPORTED),
            lusers(nick, counts),
            numeric(ERR_NOMOTD, nick, NO_MOTD),
        ]
    )


class Counts(NamedTuple):
    """What LUSERS counts: everyone in the chat, on how many nodes (IRC's servers), this node's
    own clients, and the rooms."""

    users: int
    servers: int
    clients: int
    rooms: int


def lusers(nick: str, counts: Counts) -> bytes:
    """251, 254, 255: a cluster's nodes are the network's servers, all linked to this one."""
    users, servers = counts.users, counts.servers
    return b"".join(
        [
            numeric(RPL_LUSERCLIENT, nick, f"There are {users} users and 0 invisible on {servers} servers"),
            numeric(RPL_LUSERCHANNELS, nick, str(counts.rooms), "channels formed"),
            numeric(RPL_LUSERME, nick, f"I have {counts.clients} clients and {servers - 1} servers"),
        ]
    )


def names(nick: str, room: str, entries: "list[str]") -> bytes:
    """353 lines (as many as the names need, none cut) and 366: ``entries`` already prefixed."""
    room_left = MAX_BODY + 2 - len(serialize(Message(RPL_NAMREPLY, (nick, "=", room, ""), SERVER)))
    lines: list[bytes] = []
    batch = ""
    for entry in entries:
        if batch and len(batch) + 1 + len(entry) > room_left:
            lines.append(numeric(RPL_NAMREPLY, nick, "=", room, batch))
            batch = ""
        batch = f"{batch} {entry}" if batch else entry
    if batch:
        lines.append(numeric(RPL_NAMREPLY, nick, "=", room, batch))
    lines.append(numeric(RPL_ENDOFNAMES, nick, room, END_OF_NAMES))
    return b"".join(lines)


def topic(nick: str, room: str, text: str) -> bytes:
    """332, or 331 when ``text`` is empty."""
    if text:
        return numeric(RPL_TOPIC, nick, room, text)
    return numeric(RPL_NOTOPIC, nick, room, NO_TOPIC)


def kicked(nick: str, by: str, reason: str) -> str:
    return f"{nick} was kicked by {by} ({reason})"


def banned(address: str) -> str:
    return f"Banned {address}"


def unbanned(address: str) -> str:
    return f"Unbanned {address}"


def not_banned(address: str) -> str:
    return f"Not banned: {address}"


def own_address(address: str) -> str:
    return f"Cannot ban your own address: {address}"


def irc_host(host: str) -> str:
    """``host`` as an IRC word: an IPv6 address starting with ``:`` gets a ``0`` in front, as servers do."""
    return "0" + host if host.startswith(":") else host


def member_entry(member: news.Person, userhost: bool) -> str:
    """A member as NAMES lists it: ``@`` for an operator; ``nick!nick@host`` with ``userhost-in-names``."""
    entry = (OPER_PREFIX if member.oper else "") + member.nick
    return f"{entry}!{member.nick}@{irc_host(member.host)}" if userhost else entry


def room_list(nick: str, rooms: "tuple[tuple[str, int, str], ...]") -> bytes:
    """LIST's answer: 321, a 322 per room (name, members, topic), 323."""
    lines = [numeric(RPL_LIST, nick, room, str(count), text) for room, count, text in rooms]
    start = numeric(RPL_LISTSTART, nick, "Channel", "Users  Name")
    return b"".join([start, *lines, numeric(RPL_LISTEND, nick, END_OF_LIST)])


def who_entry(nick: str, channel: str, member: news.Person) -> bytes:
    """352 for one member: H (here) or G (gone: away), ``*`` and ``@`` for an operator."""
    flags = ("G" if member.away else "H") + ("*" + OPER_PREFIX if member.oper else "")
    name, host = member.nick, irc_host(member.host)
    return numeric(RPL_WHOREPLY, nick, channel, name, host, SERVER, name, flags, f"0 {name}")


def whois(nick: str, member: news.Person, rooms: "tuple[str, ...]") -> bytes:
    """311, 319 (its rooms), 312, 313 (operator), 301 (away), 318."""
    name = member.nick
    prefix = OPER_PREFIX if member.oper else ""
    lines = [numeric(RPL_WHOISUSER, nick, name, name, irc_host(member.host), "*", name)]
    if rooms:
        lines.append(numeric(RPL_WHOISCHANNELS, nick, name, " ".join(prefix + room for room in rooms)))
    lines.append(numeric(RPL_WHOISSERVER, nick, name, SERVER, NETWORK))
    if member.oper:
        lines.append(numeric(RPL_WHOISOPERATOR, nick, name, IS_OPERATOR))
    if member.away:
        lines.append(numeric(RPL_AWAY, nick, name, member.away))
    lines.append(numeric(RPL_ENDOFWHOIS, nick, name, END_OF_WHOIS))
    return b"".join(lines)


def userhost(member: news.Person) -> str:
    """``nick[*]=+nick@host`` (``*``: operator; ``-`` instead of ``+``: away), as 302 lists it."""
    oper = "*" if member.oper else ""
    here = "-" if member.away else "+"
    return f"{member.nick}{oper}={here}{member.nick}@{irc_host(member.host)}"
