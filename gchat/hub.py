"""Rooms, nicknames and history: the chat itself, with no sockets in sight.

The hub talks to connections only through the two-method ``Mailbox``
interface and to other nodes only through a ``Bus``, so it runs unchanged
under unit tests, in one process and in a cluster. It keeps two views of
each client. A ``Client`` is what the client's own commands made it (its
nick, the room its next line goes to), updated as each command is handled,
so its commands are checked against its own latest state. A ``Member`` is
what every node agrees on: it changes only when the bus hands an event
back, so all nodes change it in one order, and every member of a room gets
the room's lines in that order. With the default ``LocalBus`` the two views
never differ and nothing waits.
"""

import logging
import time
from collections import deque
from collections.abc import Hashable
from typing import Any, Callable, Optional, Protocol

from gchat import replies
from gchat.addresses import canonical
from gchat.budget import Budget
from gchat.bus import Bus, Entry, LocalBus, Snapshot
from gchat.commands import (
    Ban,
    Command,
    Help,
    Join,
    Kick,
    Me,
    Msg,
    Nick,
    Oper,
    Pass,
    Quit,
    Rooms,
    Say,
    Topic,
    Unban,
    Unknown,
    Usage,
    Who,
    nick_key,
    room_key,
    valid_nick,
)
from gchat.events import (
    Asked,
    Banned,
    Event,
    Joined,
    Kicked,
    NodeLost,
    Private,
    Renamed,
    Said,
    TopicSet,
    Unbanned,
)
from gchat.events import Quit as Left
from gchat.reasons import BANNED, KICKED, LEFT_UNSEEN, NODE_LOST

LOBBY = "#lobby"
# Wrong /oper tries one connection gets; later ones are refused without a check.
OPER_TRIES = 3

log = logging.getLogger("gchat")


class Mailbox(Protocol):
    """Where the hub puts a client's outgoing lines; implemented by the session."""

    def deliver(self, data: bytes) -> None:
        """Queue ``data`` for the client. Must not block or re-enter the hub."""

    def close(self) -> None:
        """End the connection once everything queued so far is sent."""


class Client:
    """A client of this node, as its own commands left it."""

    __slots__ = (
        "address",
        "cid",
        "kicked",
        "mailbox",
        "member",
        "nick",
        "oper",
        "oper_failures",
        "quit_reason",
        "room",
    )

    def __init__(self, cid: int, nick: str, mailbox: Mailbox, address: str) -> None:
        self.cid = cid
        self.nick = nick
        self.mailbox = mailbox
        self.address = address
        self.room = LOBBY
        self.member: Optional[Member] = None
        self.oper = False
        self.oper_failures = 0
        self.quit_reason: Optional[str] = None
        # Cut off by an operator, not gone by its own /quit (both are quit_reason text).
        self.kicked = False

    @property
    def connected(self) -> bool:
        return self.quit_reason is None

    def __repr__(self) -> str:
        return f"<Client {self.nick} in {self.room}>"


class Member:
    """A user on any node (client ``cid`` there), as the applied events left it."""

    __slots__ = ("address", "cid", "client", "nick", "node", "room")

    def __init__(
        self, nick: str, node: str, room: "Room", client: Optional[Client], address: str, cid: int
    ) -> None:
        self.nick = nick
        self.node = node
        self.cid = cid
        self.room = room
        self.client = client
        self.address = address


class Room:
    __slots__ = ("history", "local", "name", "topic", "users")

    def __init__(self, name: str, history: int) -> None:
        self.name = name
        # Every member on every node by nick key, and this node's own clients:
        # the ones a line is written to. Dicts keep join order, O(1) removal.
        self.users: dict[str, Member] = {}
        self.local: dict[Client, None] = {}
        self.history: deque[bytes] = deque(maxlen=history)
        self.topic = ""

    def broadcast(self, data: bytes, sender: Optional[Client] = None) -> None:
        for client in self.local:
            if client is not sender:
                client.mailbox.deliver(data)


class Hub:
    def __init__(
        self,
        history: int = 20,
        bus: Optional[Bus] = None,
        announce_limit: int = 0,
        operators: Optional[Callable[[str, str, str], bool]] = None,
        locked: bool = False,
        on_ban: Optional[Callable[[str], None]] = None,
        joins: Optional[Budget] = None,
        messages: Optional[Budget] = None,
        announcements: Optional[Budget] = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._bus: Bus = bus if bus is not None else LocalBus()
        # What one address may make the chat send others. Per address (joins) and per
        # address and target nick (private messages), kept on the sender's node; per
        # address in recipients (joined/left/quit notices), kept by every node for its own.
        self._joins = joins
        self._messages = messages
        self._announcements = announcements
        self._clock = clock
        # Checks an operator's name, password and address; may wait (a slow hash in a thread).
        self._operators = operators
        # Whether clients needed a password to get in (what a later /pass is told).
        self._locked = locked
        # Told each address banned (canonical): connections the hub does not know of yet go too.
        self._on_ban = on_ban
        self.node = self._bus.node
        self._history = history
        self._announce_limit = announce_limit
        self._lobby = Room(LOBBY, history)
        self._rooms: dict[str, Room] = {LOBBY: self._lobby}
        # This node's clients by nick key (a nick being claimed included), and by id.
        self._clients: dict[str, Client] = {}
        self._local: dict[int, Client] = {}
        # Everyone in the chat, by nick key, as applied.
        self._users: dict[str, Member] = {}
        self._bans: set[str] = set()
        self._guests = 0
        self._cids = 0
        self._log_chat = log.isEnabledFor(logging.INFO)
        self.closing = False
        self._handlers: dict[type, Callable[[Client, Any], None]] = {
            Say: self._say,
            Me: self._me,
            Nick: self._nick,
            Join: self._join,
            Msg: self._msg,
            Rooms: self._ask,
            Who: self._ask,
            Help: self._help,
            Quit: self._quit,
            Pass: self._pass,
            Oper: self._oper,
            Kick: self._kick,
            Ban: self._ban,
            Unban: self._unban,
            Topic: self._topic,
            Usage: self._usage,
            Unknown: self._unknown,
        }
        self._appliers: dict[type, Callable[[Any], None]] = {
            Said: self._apply_said,
            Joined: self._apply_joined,
            Renamed: self._apply_renamed,
            Left: self._apply_left,
            Private: self._apply_private,
            Asked: self._apply_asked,
            Kicked: self._apply_kicked,
            Banned: self._apply_banned,
            Unbanned: self._apply_unbanned,
            TopicSet: self._apply_topic,
            NodeLost: self._apply_node_lost,
        }
        self._bus.attach(self)

    @property
    def client_count(self) -> int:
        return len(self._local)

    @property
    def room_count(self) -> int:
        """Rooms as this node knows them: the lobby and every room with members, on any node."""
        return len(self._rooms)

    def connect(self, mailbox: Mailbox, address: str = "") -> Client:
        """Admit a new connection: a guest nick, then the lobby and its history."""
        nick = self._claim_guest()
        self._cids += 1
        client = Client(self._cids, nick, mailbox, canonical(address))
        self._clients[nick_key(nick)] = client
        self._local[client.cid] = client
        self._bus.publish(Joined(self.node, client.cid, nick, LOBBY, client.address))
        if self.closing:
            # Shutdown began while the bus was claiming the nick.
            mailbox.deliver(replies.SHUTTING_DOWN)
            mailbox.close()
        return client

    def banned(self, address: str) -> bool:
        return canonical(address) in self._bans

    def execute(self, client: Client, command: Command) -> None:
        if client.connected and not self.closing:
            self._handlers[type(command)](client, command)

    def leave(self, client: Client, reason: str) -> None:
        """Forget a client and tell its room why. Safe to call more than once."""
        if not client.connected:
            return
        client.quit_reason = reason
        del self._clients[nick_key(client.nick)]
        del self._local[client.cid]
        self._bus.publish(Left(client.nick, reason))

    def shutdown(self) -> None:
        """Stop all chat; every client gets the notice after what it is owed."""
        self.closing = True
        for client in list(self._local.values()):
            client.mailbox.deliver(replies.SHUTTING_DOWN)
            client.mailbox.close()

    def close(self, reason: str) -> None:
        """The end of a shutdown: whoever is still here leaves, then so does the node."""
        for client in list(self._local.values()):
            self.leave(client, reason)
        self._bus.close()

    def apply(self, event: Event) -> None:
        self._appliers[type(event)](event)

    def link_lost(self) -> None:
        for member in list(self._users.values()):
            if member.client is None:
                self._remove(member, None)
        for client in self._local.values():
            client.mailbox.deliver(replies.LINK_LOST)

    def local_users(self) -> "list[Entry]":
        return [
            Entry(self.node, client.cid, client.nick, client.room, client.address)
            for client in self._local.values()
        ]

    def resync(self, renames: "dict[int, str]", snapshot: Snapshot) -> None:
        """Replace the replica with ``snapshot``, this node's clients as they see themselves.

        What the node's clients did while cut off, or in flight when the link
        went (a join Redis ran but whose event never came back), is already in
        the snapshot: the node published ``local_users()``. Each client is
        brought to that state here: renamed, moved, or welcomed, as if the
        events had arrived.
        """
        for member in list(self._users.values()):
            client = member.client
            if client is None or self._local.get(client.cid) is not client:
                self._remove(member, None)
        for client in list(self._local.values()):
            nick = renames.get(client.cid)
            if nick is not None:
                self._rename(client, nick)
            mine = client.member
            if mine is not None and mine.nick != client.nick:
                self._apply_renamed(Renamed(mine.nick, client.nick))
            self._room(client.room)
        for entry in snapshot.users:
            if entry.node != self.node and nick_key(entry.nick) not in self._users:
                self._add(entry)
        self._bans = {canonical(address) for address in snapshot.bans}
        for room in self._rooms.values():
            room.topic = snapshot.topics.get(room.name, "")
            room.history.clear()
            room.history.extend(snapshot.history.get(room.name, ()))
        for client in list(self._local.values()):
            mine = client.member
            if mine is None or mine.room.name != client.room:
                self._apply_joined(Joined(self.node, client.cid, client.nick, client.room, client.address))
            client.mailbox.deliver(replies.LINK_RESTORED)

    def resynced(self, node: str, users: "list[Entry]") -> None:
        """Make ``node``'s users these, telling rooms what changed as the lost events would have."""
        if node == self.node:
            return
        had = {member.cid: member for member in self._users.values() if member.node == node}
        now = {entry.cid for entry in users}
        for cid, gone in had.items():
            if cid not in now:
                self._remove(gone, replies.quit_notice(gone.nick, LEFT_UNSEEN))
        for entry in users:
            holder = self._users.get(nick_key(entry.nick))
            member = had.get(entry.cid)
            if holder is not None and holder is not member:
                if holder.client is not None:
                    continue  # this node's own: its resync, coming, settles whose it is
                self._remove(holder, None)  # the shared state gave the nick to ``node``
            if member is not None and self._users.get(nick_key(member.nick)) is not member:
                member = None  # removed just above, its nick now someone else's
            if member is not None and member.nick != entry.nick:
                self._apply_renamed(Renamed(member.nick, entry.nick))
            if member is None or member.room.name != entry.room:
                self._apply_joined(Joined(node, entry.cid, entry.nick, entry.room, entry.address))

    def _add(self, entry: Entry) -> None:
        key = nick_key(entry.nick)
        member = self._users[key] = Member(
            entry.nick, entry.node, self._room(entry.room), None, entry.address, entry.cid
        )
        member.room.users[key] = member

    def _claim_guest(self) -> str:
        nick = self._bus.claim_guest()
        if nick is not None:
            return nick
        while True:
            self._guests += 1
            nick = f"guest{self._guests}"
            key = nick_key(nick)
            if key not in self._clients and key not in self._users:
                return nick

    def _rename(self, client: Client, nick: str) -> None:
        del self._clients[nick_key(client.nick)]
        self._clients[nick_key(nick)] = client
        client.nick = nick
        client.mailbox.deliver(replies.you_are_now(nick))

    def _room(self, name: str) -> Room:
        room = self._rooms.get(name)
        if room is None:
            room = self._rooms[name] = Room(name, self._history)
        return room

    def _announce(self, room: Room, notice: bytes, address: str) -> None:
        """A join or quit notice, unless the room (with the one coming or going) is over the limit,
        or the users of ``address`` already had their share of notices sent by this node.

        In a room of thousands every join would cost a line to everyone; and one
        address coming and going on many connections would cost that many times over.
        """
        limit = self._announce_limit
        if (not limit or len(room.users) < limit) and self._affordable(address, len(room.local)):
            room.broadcast(notice)

    def _affordable(self, address: str, recipients: int) -> bool:
        """Whether this node may send a notice about one of ``address``'s users: a token a recipient."""
        budget = self._announcements
        return budget is None or not recipients or budget.allow(address, self._clock(), recipients)

    def _remove(self, member: Member, notice: Optional[bytes]) -> None:
        """Take a member out of its room (and the chat), then tell the room."""
        key = nick_key(member.nick)
        del self._users[key]
        self._exit(member, key, notice)

    def _exit(self, member: Member, key: str, notice: Optional[bytes]) -> None:
        room = member.room
        del room.users[key]
        if member.client is not None:
            room.local.pop(member.client, None)
        if notice is not None:
            self._announce(room, notice, member.address)
        if not room.users and room is not self._lobby:
            del self._rooms[room.name]

    def _apply_said(self, event: Said) -> None:
        room = self._rooms.get(event.room)
        if room is None:
            return
        if self._history:
            room.history.append(event.line)
        sender = self._origin(event.node, event.cid)
        room.broadcast(event.line, sender)
        if sender is not None and self._log_chat:
            log.info("%s %s", room.name, event.line[:-1].decode())

    def _apply_joined(self, event: Joined) -> None:
        key = nick_key(event.nick)
        member = self._users.get(key)
        mine = self._origin(event.node, event.cid)
        if member is None and mine is not None and mine.member is not None:
            old = mine.member.nick
            if self._users.get(nick_key(old)) is mine.member:
                # One member per client: its rename's event was lost with the
                # link, and this join, applied here, is the first to carry the new nick.
                self._apply_renamed(Renamed(old, event.nick))
                member = mine.member
        room = self._room(event.room)
        if member is not None:
            if member.room is room:
                return
            self._exit(member, key, replies.left(member.nick, member.room.name))
            client = member.client
            if client is not None:
                client.mailbox.deliver(replies.now_in(room.name, len(room.users) + 1))
        else:
            client = self._origin(event.node, event.cid)
            member = self._users[key] = Member(event.nick, event.node, room, client, event.address, event.cid)
            if client is not None:
                client.member = member
                client.mailbox.deliver(replies.status(event.nick, room.name))
        if client is not None:
            if room.topic:
                client.mailbox.deliver(replies.topic(room.name, room.topic))
            history = b"".join(room.history)
            if history:
                client.mailbox.deliver(history)
        self._announce(room, replies.joined(event.nick, room.name), member.address)
        member.room = room
        room.users[key] = member
        if client is not None:
            room.local[client] = None

    def _apply_renamed(self, event: Renamed) -> None:
        old_key = nick_key(event.old)
        member = self._users.pop(old_key, None)
        if member is None:
            return
        new_key = nick_key(event.new)
        member.nick = event.new
        self._users[new_key] = member
        room = member.room
        del room.users[old_key]
        room.users[new_key] = member
        others = len(room.local) - (member.client in room.local)
        if event.old != event.new and self._affordable(member.address, others):
            room.broadcast(replies.renamed(event.old, event.new), member.client)

    def _apply_left(self, event: Left) -> None:
        member = self._users.get(nick_key(event.nick))
        if member is not None:
            self._remove(member, None if self.closing else replies.quit_notice(event.nick, event.reason))

    def _apply_private(self, event: Private) -> None:
        member = self._users.get(nick_key(event.target))
        if member is None:
            sender = self._origin(event.node, event.cid)
            if sender is not None:
                sender.mailbox.deliver(replies.no_such_user(event.target))
        elif member.client is not None:
            member.client.mailbox.deliver(event.line)

    def _apply_asked(self, event: Asked) -> None:
        client = self._origin(event.node, event.cid)
        if client is None or client.member is None:
            return
        room = client.member.room
        if event.what == "who":
            nicks = sorted((member.nick for member in room.users.values()), key=_casefold)
            client.mailbox.deliver(replies.who(room.name, nicks))
        elif event.what == "topic":
            reply = replies.topic(room.name, room.topic) if room.topic else replies.no_topic(room.name)
            client.mailbox.deliver(reply)
        else:
            counts = sorted((name, len(room.users)) for name, room in self._rooms.items())
            client.mailbox.deliver(replies.rooms(counts))

    def _apply_kicked(self, event: Kicked) -> None:
        member = self._users.get(nick_key(event.nick))
        if member is not None:
            self._eject(
                member,
                replies.kicked(member.nick, event.by, event.reason),
                self._origin(event.node, event.cid),
            )

    def _apply_banned(self, event: Banned) -> None:
        address = canonical(event.address)
        self._bans.add(address)
        oper = self._origin(event.node, event.cid)
        by = nick_key(event.by)
        for member in [
            member
            for member in self._users.values()
            if canonical(member.address) == address
            # Never the operator who gave it, on any node: someone must be left to /unban.
            and not (member.node == event.node and nick_key(member.nick) == by)
        ]:
            self._eject(member, replies.kicked(member.nick, event.by, BANNED), oper)
        if self._on_ban is not None:
            self._on_ban(address)
        if oper is not None:
            oper.mailbox.deliver(replies.banned(address))

    def _apply_unbanned(self, event: Unbanned) -> None:
        address = canonical(event.address)
        self._bans.discard(address)
        oper = self._origin(event.node, event.cid)
        if oper is not None:
            oper.mailbox.deliver(replies.unbanned(address))

    def _apply_topic(self, event: TopicSet) -> None:
        room = self._rooms.get(event.room)
        if room is not None:
            room.topic = event.text
            room.broadcast(replies.topic(room.name, event.text))

    def _origin(self, node: str, cid: int) -> Optional[Client]:
        """The client of this node that published an event, if it is still here."""
        return self._local.get(cid) if node == self.node else None

    def _eject(self, member: Member, notice: bytes, oper: Optional[Client]) -> None:
        """Tell the member's room (the member too) and the operator, then cut the member off."""
        room = member.room
        room.broadcast(notice)
        if oper is not None and oper.member is not None and oper.member.room is not room:
            oper.mailbox.deliver(notice)
        self._remove(member, None)
        client = member.client
        if client is not None and client.connected:
            client.quit_reason = KICKED
            client.kicked = True
            self._clients.pop(nick_key(client.nick), None)
            self._local.pop(client.cid, None)
            client.mailbox.close()

    def _apply_node_lost(self, event: NodeLost) -> None:
        if event.node == self.node:
            return
        for member in list(self._users.values()):
            if member.node == event.node:
                self._remove(member, replies.quit_notice(member.nick, NODE_LOST))

    def _publish(self, client: Client, line: bytes) -> None:
        self._bus.publish(Said(self.node, client.cid, client.room, line))

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
        old = client.nick
        fresh = key != nick_key(old)
        if fresh and (key in self._clients or key in self._users):
            client.mailbox.deliver(replies.nick_in_use(name))
            return
        if fresh:
            # Reserved here while the bus is asked, so no other client of
            # this node can claim it meanwhile.
            self._clients[key] = client
        renamed = self._bus.rename(old, name)
        if fresh:
            del self._clients[key]
        if not renamed:
            client.mailbox.deliver(replies.nick_in_use(name))
        elif not client.connected:
            # Gone while the bus was asked: give the nick back.
            self._bus.publish(Left(name, client.quit_reason or ""))
        else:
            self._rename(client, name)

    def _join(self, client: Client, command: Join) -> None:
        name = room_key(command.room)
        if name is None:
            client.mailbox.deliver(replies.invalid_room(command.room))
            return
        if name == client.room:
            client.mailbox.deliver(replies.already_in(name))
            return
        if not self._within(self._joins, client.address):
            # Each join is a notice to everyone in two rooms: toggling would flood them.
            client.mailbox.deliver(replies.TOO_MANY_JOINS)
            return
        client.room = name
        self._bus.publish(Joined(self.node, client.cid, client.nick, name))

    def _msg(self, client: Client, command: Msg) -> None:
        if not self._within(self._messages, (client.address, nick_key(command.nick))):
            # Many connections of one address could otherwise outpace the target's reading.
            client.mailbox.deliver(replies.too_many_messages(command.nick))
            return
        line = replies.private(client.nick, command.text)
        self._bus.publish(Private(command.nick, line, self.node, client.cid))

    def _within(self, budget: Optional[Budget], key: Hashable) -> bool:
        return budget is None or budget.allow(key, self._clock())

    def _ask(self, client: Client, command: Command) -> None:
        self._bus.publish(Asked(self.node, client.cid, "who" if isinstance(command, Who) else "rooms"))

    def _pass(self, client: Client, command: Pass) -> None:
        client.mailbox.deliver(
            replies.PASSWORD_ACCEPTED_ALREADY if self._locked else replies.NO_PASSWORD_NEEDED
        )

    def _oper(self, client: Client, command: Oper) -> None:
        if client.oper_failures >= OPER_TRIES:
            client.mailbox.deliver(replies.NO_MORE_OPER_TRIES)
            return
        check = self._operators
        if check is not None and check(command.name, command.password, client.address) and client.connected:
            client.oper = True
            client.mailbox.deliver(replies.NOW_OPERATOR)
        else:
            client.oper_failures += 1
            client.mailbox.deliver(replies.WRONG_OPERATOR)

    def _target(self, client: Client, nick: str) -> Optional[Member]:
        """The member an operator's command names, or None after telling why not."""
        if not client.oper:
            client.mailbox.deliver(replies.PERMISSION_DENIED)
            return None
        member = self._users.get(nick_key(nick))
        if member is None:
            client.mailbox.deliver(replies.no_such_user(nick))
        return member

    def _kick(self, client: Client, command: Kick) -> None:
        member = self._target(client, command.nick)
        if member is not None:
            self._bus.publish(Kicked(member.nick, client.nick, command.reason, self.node, client.cid))

    def _ban(self, client: Client, command: Ban) -> None:
        member = self._target(client, command.nick)
        if member is None:
            return
        address = canonical(member.address)
        if address == client.address:
            # It would cut off the operator (and behind one NAT or on localhost, everyone).
            client.mailbox.deliver(replies.own_address(address))
        else:
            self._bus.publish(Banned(address, client.nick, self.node, client.cid))

    def _unban(self, client: Client, command: Unban) -> None:
        if not client.oper:
            client.mailbox.deliver(replies.PERMISSION_DENIED)
        elif canonical(command.address) not in self._bans:
            client.mailbox.deliver(replies.not_banned(command.address))
        else:
            self._bus.publish(Unbanned(canonical(command.address), self.node, client.cid))

    def _topic(self, client: Client, command: Topic) -> None:
        if not command.text:
            self._bus.publish(Asked(self.node, client.cid, "topic"))
        elif not client.oper:
            client.mailbox.deliver(replies.PERMISSION_DENIED)
        else:
            self._bus.publish(TopicSet(client.room, command.text))

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
