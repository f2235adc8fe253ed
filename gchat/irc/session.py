"""The IRC front-end's session: registration, then each command carried out on the chat.

One ``IrcSession`` per IRC client, the ``Dialect`` of its ``Connection`` (see
``gchat.connection``, which reads, writes, rate-limits and closes, as for a
line client). The client registers (``CAP``, ``PASS``, ``NICK``, ``USER``)
outside the chat; once registered it is a chat client in no room, and its
commands become the chat's calls. What the chat tells it comes back as news,
rendered by its ``IrcStyle``; what only IRC asks (WHO, WHOIS, MODE, ISON,
...) is answered here from the chat's view of the whole cluster.

With ``--idle-timeout T`` the session sends ``PING`` once the client has been
silent for T/2, and the connection drops it (``ERROR``) when nothing, not even
the ``PONG``, has come for T: a dead client goes, a live one answers.
"""

import logging
import math
import time
from typing import Any, Callable, Optional

import gevent

from gchat import news
from gchat.bans import covers
from gchat.chat import Chat, Client
from gchat.commands import DEFAULT_QUIT_REASON, Kick, Pass, nick_key, room_key, valid_nick
from gchat.config import Config
from gchat.connection import Connection
from gchat.framing import Frame, LineFramer, TooLong
from gchat.gate import Door, PasswordGate, Verdict
from gchat.irc import chathistory, replies
from gchat.irc.caps import NONE, negotiate
from gchat.irc.message import EMPTY, INPUT_TOO_LONG, MAX_BODY, MAX_LINE, Message, parse, serialize
from gchat.irc.replies import numeric
from gchat.irc.style import IrcStyle, prefix
from gchat.irc.text import incoming, outgoing, shorten
from gchat.lifecycle import OPEN
from gchat.news import Kind
from gchat.reasons import BANNED, IDLE_TIMEOUT, QUIT, WRONG_PASSWORD
from gchat.sanitize import strip_controls
from gchat.session import leave_chat

log = logging.getLogger("gchat")

# Commands a client may send before it is registered; any other gets 451.
_BEFORE = frozenset({"CAP", "PASS", "NICK", "USER", "PING", "PONG", "QUIT"})
# Parameters each command needs at least (else 461).
_NEEDS = {
    "USER": 4,
    "JOIN": 1,
    "PART": 1,
    "KICK": 2,
    "OPER": 2,
    "TOPIC": 1,
    "MODE": 1,
    "USERHOST": 1,
    "ISON": 1,
    "WHOIS": 1,
    "PASS": 1,
}


class IrcSession:
    """An IRC client: registering (``client`` None), then in the chat."""

    __slots__ = (
        "_caps",
        "_chat",
        "_client",
        "_connection",
        "_created",
        "_gate",
        "_heard",
        "_nick",
        "_output",
        "_ping_after",
        "_secret",
        "_style",
        "_timer",
        "_user",
        "framer",
        "max_frame",
    )

    def __init__(
        self, connection: Connection, chat: Chat, config: Config, door: Optional[Door], created: str
    ) -> None:
        self._connection = connection
        self._output = connection.output
        self._chat = chat
        self._created = created
        self.framer = LineFramer(MAX_LINE)
        self.max_frame = MAX_LINE + 2
        self._gate = PasswordGate(door, connection.host) if door is not None else None
        self._caps = NONE
        self._style = IrcStyle.of(NONE.enabled)
        # What registration has gathered so far.
        self._nick = ""
        self._user = False
        self._secret: Optional[str] = None
        self._client: Optional[Client] = None
        # With --idle-timeout: PING after half of it in silence; the reader drops at the whole.
        self._ping_after = config.idle_timeout / 2
        self._heard = time.monotonic()
        self._timer: Any = None

    # --- The Dialect ----------------------------------------------------------------------

    def start(self) -> None:
        # An IRC client speaks first; nothing is sent before it registers.
        if self._ping_after:
            self._arm(self._ping_after)

    def handle(self, frame: Frame) -> None:
        if self._ping_after:
            self._heard = time.monotonic()
            if self._timer is None:
                self._arm(self._ping_after)
        if isinstance(frame, TooLong):
            self._deliver(numeric(replies.ERR_INPUTTOOLONG, self._name, replies.INPUT_TOO_LONG))
            return
        message = parse(frame)
        if message is EMPTY:
            return
        if message is INPUT_TOO_LONG:
            self._deliver(numeric(replies.ERR_INPUTTOOLONG, self._name, replies.INPUT_TOO_LONG))
            return
        assert isinstance(message, Message)
        command = message.command
        if not frame.isascii() and not _utf8(frame):
            # UTF8ONLY: the bytes were taken with U+FFFD for what was invalid; the client is told.
            self._deliver(replies.invalid_utf8(command))
        client = self._client
        if client is None and command not in _BEFORE:
            self._deliver(numeric(replies.ERR_NOTREGISTERED, self._name, replies.NOT_REGISTERED))
            return
        handler = _COMMANDS.get(command)
        if handler is None:
            self._deliver(numeric(replies.ERR_UNKNOWNCOMMAND, self._name, command, replies.UNKNOWN_COMMAND))
        elif len(message.params) < _NEEDS.get(command, 0):
            self._deliver(numeric(replies.ERR_NEEDMOREPARAMS, self._name, command, replies.NEED_MORE_PARAMS))
        elif client is None or (client.connected and not self._chat.closing):
            handler(self, message.params)

    def timed_out(self) -> None:
        self._deliver(replies.error(f"Closing link: {IDLE_TIMEOUT}"))

    def shut_down(self) -> None:
        """For a client still registering: the chat tells the others."""
        if self._client is None:
            self._deliver(replies.error(replies.SHUTTING_DOWN))
            self._connection.close()

    def banned(self, address: str) -> None:
        """A ban reaches a client still registering; the chat kicks the others."""
        if self._client is None and self._connection.state is OPEN and covers(address, self._connection.host):
            self._turn_away(replies.ERR_YOUREBANNEDCREEP, replies.YOU_ARE_BANNED, BANNED)

    def leave(self, cause: str) -> str:
        if self._timer is not None:
            self._timer.close()
            self._timer = None
        return leave_chat(self._chat, self._client, cause, self._connection.peer, "(unregistered)")

    # --- Helpers -------------------------------------------------------------------------

    @property
    def _name(self) -> str:
        """The client's nick as numerics name it: ``*`` before it has one."""
        client = self._client
        if client is not None:
            return client.nick
        return self._nick or replies.UNREGISTERED

    def _deliver(self, data: bytes) -> None:
        self._output.deliver(data)

    def _arm(self, seconds: float) -> None:
        timer = self._timer = gevent.get_hub().loop.timer(seconds)
        timer.start(self._ping)

    def _ping(self) -> None:
        """Silent for half the idle timeout: ask the client, once, to prove it is there.

        No timer runs after the PING: the client's next line arms one again, and
        if none comes the reader drops the client at the whole idle timeout.
        """
        self._timer.close()
        self._timer = None
        silent = time.monotonic() - self._heard
        if self._connection.state is not OPEN:
            return
        if silent >= self._ping_after:
            self._deliver(serialize(Message("PING", (replies.SERVER,))))
        else:
            self._arm(self._ping_after - silent)

    def _turn_away(self, code: str, text: str, reason: str) -> None:
        """Close a connection that never got into the chat: the numeric, then ERROR."""
        self._deliver(numeric(code, self._name, text) + replies.error(f"Closing link: {reason}"))
        self._connection.close(reason)

    def _channel(self, name: str) -> Optional[str]:
        """``name``'s room, or None after 403 (no ``#``: CHANTYPES) or 479 (not a room name here)."""
        if not name.startswith("#"):
            self._deliver(numeric(replies.ERR_NOSUCHCHANNEL, self._name, name, replies.NO_SUCH_CHANNEL))
            return None
        key = room_key(name)
        if key is None:
            self._deliver(numeric(replies.ERR_BADCHANNAME, self._name, name, replies.BAD_CHANNEL_NAME))
        return key

    def _existing(self, name: str) -> Optional[str]:
        """The room ``name`` names if it exists now (anywhere in the cluster), else None after 403."""
        room = room_key(name) if name.startswith("#") else None
        if room is None or room not in {known for known, _, _ in self._chat.room_names()}:
            self._deliver(numeric(replies.ERR_NOSUCHCHANNEL, self._name, name, replies.NO_SUCH_CHANNEL))
            return None
        return room

    def _member(self, nick: str) -> Any:
        """The user called ``nick`` anywhere in the chat, or None after 401."""
        member = self._chat.member(nick)
        if member is None:
            self._deliver(numeric(replies.ERR_NOSUCHNICK, self._name, nick, replies.NO_SUCH_NICK))
        return member

    def _operator(self, channel: str) -> bool:
        """Whether the client is an operator (a channel operator everywhere), else 482."""
        client = self._client
        assert client is not None
        if not client.oper:
            self._deliver(numeric(replies.ERR_CHANOPRIVSNEEDED, client.nick, channel, replies.CHANOP_NEEDED))
        return client.oper

    # --- Registration --------------------------------------------------------------------

    def _cap(self, params: "tuple[str, ...]") -> None:
        self._caps, reply = negotiate(self._caps, params, self._name)
        if reply:
            self._deliver(reply)
        style = IrcStyle.of(self._caps.enabled)
        if style != self._style:
            self._style = style
            if self._client is not None:
                self._chat.restyle(self._client, style)
        self._register()

    def _pass(self, params: "tuple[str, ...]") -> None:
        if self._client is not None:
            self._deliver(numeric(replies.ERR_ALREADYREGISTERED, self._name, replies.ALREADY_REGISTERED))
        else:
            self._secret = params[0]

    def _nick_command(self, params: "tuple[str, ...]") -> None:
        if not params or not params[0]:
            self._deliver(numeric(replies.ERR_NONICKNAMEGIVEN, self._name, replies.NO_NICK_GIVEN))
            return
        name = params[0]
        client = self._client
        if client is not None:
            self._chat.nick(client, name)
        elif not valid_nick(name):
            self._deliver(numeric(replies.ERR_ERRONEUSNICKNAME, self._name, name, replies.ERRONEOUS_NICK))
        elif self._chat.member(name) is not None:
            self._deliver(numeric(replies.ERR_NICKNAMEINUSE, self._name, name, replies.NICK_IN_USE))
        else:
            self._nick = name
            self._register()

    def _user_command(self, params: "tuple[str, ...]") -> None:
        if self._client is not None:
            self._deliver(numeric(replies.ERR_ALREADYREGISTERED, self._name, replies.ALREADY_REGISTERED))
        elif not params[0] or not params[3]:
            self._deliver(numeric(replies.ERR_NEEDMOREPARAMS, self._name, "USER", replies.NEED_MORE_PARAMS))
        else:
            # The user name and real name are not kept: the prefix is nick!nick@host everywhere.
            self._user = True
            self._register()

    def _register(self) -> None:
        """Into the chat once NICK and USER are in and CAP negotiation (if any) has ended."""
        if self._client is not None or not self._nick or not self._user or self._caps.holding:
            return
        if self._gate is not None and not self._password_ok():
            return
        chat, host = self._chat, self._connection.host
        if chat.banned(host):
            self._turn_away(replies.ERR_YOUREBANNEDCREEP, replies.YOU_ARE_BANNED, BANNED)
            return
        client = chat.connect(self._output, host, self._style, nick=self._nick, lobby=False)
        if client is None:
            # Taken since NICK was checked (on another node, say): the client may try another.
            self._deliver(
                numeric(replies.ERR_NICKNAMEINUSE, replies.UNREGISTERED, self._nick, replies.NICK_IN_USE)
            )
            self._nick = ""
            return
        self._client = client
        self._deliver(replies.welcome(client.nick, client.host, self._created, self._counts()))
        if log.isEnabledFor(logging.INFO):
            log.info("%s connected as %s (IRC)", self._connection.peer, client.nick)

    def _password_ok(self) -> bool:
        """PASS checked at registration, as IRC servers do: a wrong or missing one ends the connection.

        Wrong tries are throttled per address like a line client's ``/pass``.
        """
        gate = self._gate
        assert gate is not None
        tried = Pass(self._secret or "")
        if gate.opens(tried):
            return True
        while (pause := gate.turn(time.monotonic())) > 0:
            if not self._connection.reader.hold(pause):
                return False
        _, verdict = gate.knock(tried, time.monotonic())
        assert verdict is Verdict.WRONG or verdict is Verdict.LAST
        log.warning("%s wrong password (IRC PASS)", self._connection.peer)
        self._turn_away(replies.ERR_PASSWDMISMATCH, replies.PASSWORD_MISMATCH, WRONG_PASSWORD)
        return False

    def _quit(self, params: "tuple[str, ...]") -> None:
        reason = strip_controls(params[0]) if params and params[0] else DEFAULT_QUIT_REASON
        client = self._client
        if client is None:
            self._deliver(replies.error(replies.BYE))
            self._connection.close(QUIT)
        else:
            self._chat.quit(client, reason)

    def _ping_command(self, params: "tuple[str, ...]") -> None:
        if not params:
            self._deliver(numeric(replies.ERR_NOORIGIN, self._name, replies.NO_ORIGIN))
        else:
            self._deliver(serialize(Message("PONG", (replies.SERVER, params[0]), replies.SERVER)))

    def _pong(self, params: "tuple[str, ...]") -> None:
        """A client's answer to PING: its arrival was all that counted."""

    # --- Rooms ---------------------------------------------------------------------------

    def _join(self, params: "tuple[str, ...]") -> None:
        client = self._client
        assert client is not None
        if params[0] == "0":
            for joined in list(client.rooms):
                self._chat.part(client, joined, "")
            return
        for name in params[0].split(","):
            room = self._channel(name)
            if room is not None:
                self._chat.join(client, room, switch=False)

    def _part(self, params: "tuple[str, ...]") -> None:
        client = self._client
        assert client is not None
        reason = strip_controls(params[1]) if len(params) > 1 else ""
        for name in params[0].split(","):
            room = self._channel(name)
            if room is not None:
                self._chat.part(client, room, reason)

    def _names(self, params: "tuple[str, ...]") -> None:
        client = self._client
        assert client is not None
        rooms = params[0].split(",") if params else list(client.rooms)
        for name in rooms:
            room = room_key(name) if name.startswith("#") else None
            if room is None:
                # Not a room name: nobody is in it (RFC 2812 answers NAMES for it with 366 alone).
                self._deliver(numeric(replies.RPL_ENDOFNAMES, client.nick, name, replies.END_OF_NAMES))
            else:
                self._chat.list_members(client, room)

    def _topic(self, params: "tuple[str, ...]") -> None:
        client = self._client
        assert client is not None
        room = self._existing(params[0])
        if room is None:
            return
        if len(params) == 1:
            self._chat.topic(client, room, None)
        elif room not in client.rooms:
            self._deliver(numeric(replies.ERR_NOTONCHANNEL, client.nick, room, replies.NOT_ON_CHANNEL))
        elif self._operator(room):
            self._chat.topic(client, room, shorten(strip_controls(params[1]), replies.TOPICLEN))

    def _list(self, params: "tuple[str, ...]") -> None:
        rooms = self._chat.room_names()
        if params:
            wanted = {room_key(name) for name in params[0].split(",")}
            rooms = tuple(room for room in rooms if room[0] in wanted)
        self._deliver(replies.room_list(self._name, rooms))

    def _kick(self, params: "tuple[str, ...]") -> None:
        client = self._client
        assert client is not None
        room = self._existing(params[0])
        if room is None or not self._operator(room):
            return
        member = self._member(params[1])
        if member is None:
            return
        if room not in self._chat.rooms_of(member.nick):
            self._deliver(
                numeric(
                    replies.ERR_USERNOTINCHANNEL, client.nick, member.nick, room, replies.USER_NOT_IN_CHANNEL
                )
            )
            return
        reason = strip_controls(params[2]) if len(params) > 2 and params[2] else Kick("").reason
        self._chat.kick(client, member.nick, reason)

    # --- Messages ------------------------------------------------------------------------

    def _privmsg(self, params: "tuple[str, ...]") -> None:
        self._send(params, notice=False)

    def _notice(self, params: "tuple[str, ...]") -> None:
        self._send(params, notice=True)

    def _send(self, params: "tuple[str, ...]", notice: bool) -> None:
        """PRIVMSG or NOTICE to rooms and nicks; a NOTICE is never answered with an error (RFC 2812)."""
        client = self._client
        assert client is not None
        name = client.nick
        if not params or not params[0]:
            if not notice:
                self._deliver(numeric(replies.ERR_NORECIPIENT, name, replies.NO_RECIPIENT))
            return
        if len(params) < 2 or not params[1]:
            if not notice:
                self._deliver(numeric(replies.ERR_NOTEXTTOSEND, name, replies.NO_TEXT))
            return
        said = incoming(params[1], notice)
        if said is None:
            return
        kind, text = said
        verb = "NOTICE" if notice else "PRIVMSG"
        source = prefix(name, client.host)
        # More than the relayed line can take but its target (a character is at most 4 bytes,
        # an action's CTCP and the line's punctuation less than 24): most lines are far
        # shorter, and are not serialized here to be measured.
        bound = 4 * len(text) + len(source) + len(verb) + 24
        relayed = 0
        for target in params[0].split(","):
            size = len(target.encode())
            if bound + size > MAX_BODY and not relayed:
                # The relayed line's length but its target's (a one-byte stand-in).
                relayed = len(serialize(Message(verb, ("#", outgoing(text, kind)), source))) - 1
            if relayed and relayed + size > MAX_BODY + 2:
                # It could reach others only cut or in pieces: refused whole instead, as too long.
                if not notice:
                    self._deliver(numeric(replies.ERR_INPUTTOOLONG, name, replies.INPUT_TOO_LONG))
                continue
            if target.startswith("#"):
                self._to_room(client, target, text, kind, notice)
            else:
                self._to_nick(client, target, text, kind, notice)

    def _to_room(self, client: Client, target: str, text: str, kind: Kind, notice: bool) -> None:
        room = room_key(target)
        if room is not None and room in client.rooms:
            self._chat.say(client, room, text, kind)
        elif not notice:
            code, why = (
                (replies.ERR_NOSUCHCHANNEL, replies.NO_SUCH_CHANNEL)
                if room is None
                else (replies.ERR_CANNOTSENDTOCHAN, replies.CANNOT_SEND)
            )
            self._deliver(numeric(code, client.nick, target, why))

    def _to_nick(self, client: Client, target: str, text: str, kind: Kind, notice: bool) -> None:
        member = self._chat.member(target)
        if member is None:
            if not notice:
                self._deliver(numeric(replies.ERR_NOSUCHNICK, client.nick, target, replies.NO_SUCH_NICK))
            return
        self._chat.private(client, member.nick, text, kind)
        if member.away and not notice:
            self._deliver(numeric(replies.RPL_AWAY, client.nick, member.nick, member.away))

    # --- Who is who ----------------------------------------------------------------------

    def _who(self, params: "tuple[str, ...]") -> None:
        mask = params[0] if params else "*"
        name = self._name
        if mask.startswith("#"):
            room = room_key(mask)
            members = self._chat.room_members(room) if room is not None else ()
            lines = [replies.who_entry(name, mask if room is None else room, member) for member in members]
        else:
            member = self._chat.member(mask)
            lines = [replies.who_entry(name, "*", member)] if member is not None else []
        lines.append(numeric(replies.RPL_ENDOFWHO, name, mask, replies.END_OF_WHO))
        self._deliver(b"".join(lines))

    def _whois(self, params: "tuple[str, ...]") -> None:
        nick = params[-1]
        member = self._member(nick)
        if member is None:
            self._deliver(numeric(replies.RPL_ENDOFWHOIS, self._name, nick, replies.END_OF_WHOIS))
        else:
            self._deliver(replies.whois(self._name, member, self._chat.rooms_of(member.nick)))

    def _ison(self, params: "tuple[str, ...]") -> None:
        nicks = " ".join(params).split()
        found = [member.nick for member in map(self._chat.member, nicks) if member is not None]
        self._deliver(numeric(replies.RPL_ISON, self._name, " ".join(found)))

    def _userhost(self, params: "tuple[str, ...]") -> None:
        found = [replies.userhost(m) for m in map(self._chat.member, params[:5]) if m is not None]
        self._deliver(numeric(replies.RPL_USERHOST, self._name, " ".join(found)))

    def _away(self, params: "tuple[str, ...]") -> None:
        client = self._client
        assert client is not None
        text = strip_controls(params[0]) if params else ""
        self._chat.away(client, text)
        if text:
            self._deliver(numeric(replies.RPL_NOWAWAY, client.nick, replies.NOW_AWAY))
        else:
            self._deliver(numeric(replies.RPL_UNAWAY, client.nick, replies.UNAWAY))

    def _oper(self, params: "tuple[str, ...]") -> None:
        client = self._client
        assert client is not None
        self._chat.oper(client, params[0], params[1])

    def _mode(self, params: "tuple[str, ...]") -> None:
        client = self._client
        assert client is not None
        target = params[0]
        if target.startswith("#"):
            self._channel_mode(client, target, params[1:])
        elif nick_key(target) != nick_key(client.nick):
            if self._member(target) is not None:
                self._deliver(numeric(replies.ERR_USERSDONTMATCH, client.nick, replies.USERS_DONT_MATCH))
        elif len(params) == 1:
            modes = "+" + (replies.USER_MODES if client.oper else "")
            self._deliver(numeric(replies.RPL_UMODEIS, client.nick, modes))
        else:
            # +o comes only with OPER; no other user mode exists here.
            self._deliver(numeric(replies.ERR_UMODEUNKNOWNFLAG, client.nick, replies.UNKNOWN_UMODE))

    def _channel_mode(self, client: Client, target: str, changes: "tuple[str, ...]") -> None:
        room = self._existing(target)
        if room is None:
            return
        if not changes:
            self._deliver(numeric(replies.RPL_CHANNELMODEIS, client.nick, room, "+" + replies.CHANNEL_MODES))
        elif changes[0].lstrip("+") == "b" and len(changes) == 1:
            # The ban list: bans here are of addresses, server-wide (/ban), never channel masks.
            self._deliver(numeric(replies.RPL_ENDOFBANLIST, client.nick, room, replies.END_OF_BANS))
        elif self._operator(room):
            mode = changes[0].lstrip("+-")[:1] or changes[0]
            self._deliver(numeric(replies.ERR_UNKNOWNMODE, client.nick, mode, replies.UNKNOWN_MODE))

    def _lusers(self, params: "tuple[str, ...]") -> None:
        self._deliver(replies.lusers(self._name, self._counts()))

    def _counts(self) -> replies.Counts:
        chat = self._chat
        return replies.Counts(chat.user_count, chat.node_count, chat.client_count, chat.room_count)

    def _motd(self, params: "tuple[str, ...]") -> None:
        self._deliver(numeric(replies.ERR_NOMOTD, self._name, replies.NO_MOTD))

    def _chathistory(self, params: "tuple[str, ...]") -> None:
        """A room's lines from the chat's history (the store's, or the room's last ``--history``).

        Only for rooms the client is in, as Ergo does for channels; a nick's is an empty
        answer, since gchat keeps no private messages. May wait for the disk.
        """
        client = self._client
        assert client is not None
        request = chathistory.parse(params)
        if isinstance(request, chathistory.Targets):
            newest = [(room, self._chat.history(room, math.inf, 1)) for room in list(client.rooms)]
            found = [(room, lines[-1].at) for room, lines in newest if lines]
            reply = self._style.targets(chathistory.latest(request, found))
        elif isinstance(request, chathistory.Query):
            reply = self._query(client, request)
        else:
            reply = replies.chathistory_fail(request)
        if client.connected:
            self._deliver(reply)

    def _query(self, client: Client, query: chathistory.Query) -> bytes:
        target = query.target
        if not target.startswith("#"):
            return self._style.chathistory(target, ())
        room = room_key(target)
        if room is None or room not in client.rooms:
            return replies.chathistory_fail(chathistory.invalid_target(query.sub, target))
        found: list[news.Message] = []
        for after, before, limit, newest in query.spans:
            found.extend(self._chat.history(room, before, limit - len(found), after, newest))
        return self._style.chathistory(room, found)

    def _ignore(self, params: "tuple[str, ...]") -> None:
        """TAGMSG: the client-only tags it carries are not relayed (see the README)."""


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


_COMMANDS: "dict[str, Callable[[IrcSession, tuple[str, ...]], None]]" = {
    "CAP": IrcSession._cap,
    "PASS": IrcSession._pass,
    "NICK": IrcSession._nick_command,
    "USER": IrcSession._user_command,
    "PING": IrcSession._ping_command,
    "PONG": IrcSession._pong,
    "QUIT": IrcSession._quit,
    "JOIN": IrcSession._join,
    "PART": IrcSession._part,
    "NAMES": IrcSession._names,
    "TOPIC": IrcSession._topic,
    "LIST": IrcSession._list,
    "KICK": IrcSession._kick,
    "PRIVMSG": IrcSession._privmsg,
    "NOTICE": IrcSession._notice,
    "WHO": IrcSession._who,
    "WHOIS": IrcSession._whois,
    "ISON": IrcSession._ison,
    "USERHOST": IrcSession._userhost,
    "AWAY": IrcSession._away,
    "OPER": IrcSession._oper,
    "MODE": IrcSession._mode,
    "LUSERS": IrcSession._lusers,
    "MOTD": IrcSession._motd,
    "TAGMSG": IrcSession._ignore,
    chathistory.COMMAND: IrcSession._chathistory,
}
