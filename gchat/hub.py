"""Rooms, nicknames and history: the chat itself, with no sockets in sight.

The hub talks to connections only through the two-method ``Mailbox``
interface, so it runs unchanged under unit tests and under the gevent server,
and a message bus can later sit between it and other processes without
sessions or the protocol noticing. It never blocks: a fan-out is a loop of
``deliver`` calls that only append to queues, so every member of a room gets
the room's lines in one order, the order in which the hub handled them.
"""

import logging
from collections import deque
from typing import Any, Callable, Optional, Protocol

from gchat import replies
from gchat.commands import (
    Command,
    Help,
    Join,
    Me,
    Msg,
    Nick,
    Quit,
    Rooms,
    Say,
    Unknown,
    Usage,
    Who,
    nick_key,
    room_key,
    valid_nick,
)

LOBBY = "#lobby"

log = logging.getLogger("gchat")


class Mailbox(Protocol):
    """Where the hub puts a client's outgoing lines; implemented by the session."""

    def deliver(self, data: bytes) -> None:
        """Queue ``data`` for the client. Must not block or re-enter the hub."""

    def close(self) -> None:
        """End the connection once everything queued so far is sent."""


class Client:
    """A connected user as the hub sees it."""

    __slots__ = ("mailbox", "nick", "quit_reason", "room")

    def __init__(self, nick: str, mailbox: Mailbox, room: "Room") -> None:
        self.nick = nick
        self.mailbox = mailbox
        self.room = room
        self.quit_reason: Optional[str] = None

    @property
    def connected(self) -> bool:
        return self.quit_reason is None

    def __repr__(self) -> str:
        return f"<Client {self.nick} in {self.room.name}>"


class Room:
    __slots__ = ("history", "members", "name")

    def __init__(self, name: str, history: int) -> None:
        self.name = name
        # A dict keeps join order and gives O(1) removal; values are unused.
        self.members: dict[Client, None] = {}
        self.history: deque[bytes] = deque(maxlen=history)

    def broadcast(self, data: bytes, sender: Optional[Client] = None) -> None:
        for member in self.members:
            if member is not sender:
                member.mailbox.deliver(data)


class Hub:
    def __init__(self, history: int = 20) -> None:
        self._history = history
        self._lobby = Room(LOBBY, history)
        self._rooms: dict[str, Room] = {LOBBY: self._lobby}
        self._nicks: dict[str, Client] = {}
        self._guests = 0
        self._log_chat = log.isEnabledFor(logging.INFO)
        self.closing = False
        self._handlers: dict[type, Callable[[Client, Any], None]] = {
            Say: self._say,
            Me: self._me,
            Nick: self._nick,
            Join: self._join,
            Msg: self._msg,
            Rooms: self._list_rooms,
            Who: self._who,
            Help: self._help,
            Quit: self._quit,
            Usage: self._usage,
            Unknown: self._unknown,
        }

    @property
    def client_count(self) -> int:
        return len(self._nicks)

    def connect(self, mailbox: Mailbox) -> Client:
        """Admit a new connection: a guest nick, the lobby, its history."""
        client = Client(self._next_guest(), mailbox, self._lobby)
        self._nicks[nick_key(client.nick)] = client
        mailbox.deliver(replies.status(client.nick, LOBBY))
        self._enter(client, self._lobby)
        return client

    def execute(self, client: Client, command: Command) -> None:
        if client.connected and not self.closing:
            self._handlers[type(command)](client, command)

    def leave(self, client: Client, reason: str) -> None:
        """Forget a client and tell its room why. Safe to call more than once."""
        if not client.connected:
            return
        client.quit_reason = reason
        del self._nicks[nick_key(client.nick)]
        notice = None if self.closing else replies.quit_notice(client.nick, reason)
        self._exit(client, notice)

    def shutdown(self) -> None:
        """Stop all chat; every client gets the notice after what it is owed."""
        self.closing = True
        for client in list(self._nicks.values()):
            client.mailbox.deliver(replies.SHUTTING_DOWN)
            client.mailbox.close()

    def _next_guest(self) -> str:
        while True:
            self._guests += 1
            nick = f"guest{self._guests}"
            if nick_key(nick) not in self._nicks:
                return nick

    def _enter(self, client: Client, room: Room) -> None:
        if room.history:
            client.mailbox.deliver(b"".join(room.history))
        room.broadcast(replies.joined(client.nick, room.name))
        room.members[client] = None
        client.room = room

    def _exit(self, client: Client, notice: Optional[bytes]) -> None:
        room = client.room
        del room.members[client]
        if notice is not None:
            room.broadcast(notice)
        if not room.members and room is not self._lobby:
            del self._rooms[room.name]

    def _publish(self, client: Client, data: bytes) -> None:
        """A chat line: into the room's history, then to everyone else in it."""
        room = client.room
        if self._history:
            room.history.append(data)
        room.broadcast(data, client)
        if self._log_chat:
            log.info("%s %s", room.name, data[:-1].decode())

    def _say(self, client: Client, command: Say) -> None:
        self._publish(client, replies.chat(client.nick, command.text))

    def _me(self, client: Client, command: Me) -> None:
        self._publish(client, replies.action(client.nick, command.text))

    def _nick(self, client: Client, command: Nick) -> None:
        name = command.name
        if not valid_nick(name):
            client.mailbox.deliver(replies.invalid_nick(name))
            return
        key = nick_key(name)
        holder = self._nicks.get(key)
        if holder is not None and holder is not client:
            client.mailbox.deliver(replies.nick_in_use(name))
            return
        old = client.nick
        del self._nicks[nick_key(old)]
        self._nicks[key] = client
        client.nick = name
        client.mailbox.deliver(replies.you_are_now(name))
        if old != name:
            client.room.broadcast(replies.renamed(old, name), client)

    def _join(self, client: Client, command: Join) -> None:
        name = room_key(command.room)
        if name is None:
            client.mailbox.deliver(replies.invalid_room(command.room))
            return
        if name == client.room.name:
            client.mailbox.deliver(replies.already_in(name))
            return
        self._exit(client, replies.left(client.nick, client.room.name))
        room = self._rooms.get(name)
        if room is None:
            room = self._rooms[name] = Room(name, self._history)
        client.mailbox.deliver(replies.now_in(name, len(room.members) + 1))
        self._enter(client, room)

    def _msg(self, client: Client, command: Msg) -> None:
        target = self._nicks.get(nick_key(command.nick))
        if target is None:
            client.mailbox.deliver(replies.no_such_user(command.nick))
        else:
            target.mailbox.deliver(replies.private(client.nick, command.text))

    def _list_rooms(self, client: Client, command: Command) -> None:
        counts = sorted((name, len(room.members)) for name, room in self._rooms.items())
        client.mailbox.deliver(replies.rooms(counts))

    def _who(self, client: Client, command: Command) -> None:
        room = client.room
        nicks = sorted((member.nick for member in room.members), key=_casefold)
        client.mailbox.deliver(replies.who(room.name, nicks))

    def _help(self, client: Client, command: Command) -> None:
        client.mailbox.deliver(replies.HELP)

    def _quit(self, client: Client, command: Quit) -> None:
        client.mailbox.deliver(replies.BYE)
        self.leave(client, command.reason)
        client.mailbox.close()

    def _usage(self, client: Client, command: Usage) -> None:
        client.mailbox.deliver(replies.usage(command.syntax))

    def _unknown(self, client: Client, command: Unknown) -> None:
        client.mailbox.deliver(replies.unknown_command(command.word))


def _casefold(nick: str) -> "tuple[str, str]":
    return (nick.lower(), nick)
