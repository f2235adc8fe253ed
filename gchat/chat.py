"""Rooms, nicknames and history: the chat itself, with no sockets and no wire format in sight.

The chat talks to connections only through the two-method ``Mailbox``
interface, tells them what happened as ``gchat.news`` rendered by each
client's ``Style`` (the line protocol, IRC, the web page), and talks to
other nodes only through a ``Bus``, so it runs unchanged under unit tests,
in one process and in a cluster, for every front-end at once.

It keeps two views of each client. A ``Client`` is what the client's own
commands made it (its nick, its rooms), updated as each command is handled,
so its commands are checked against its own latest state. A ``Member`` is
what every node agrees on: it changes only when the bus hands an event
back, so all nodes change it in one order, and every member of a room gets
the room's lines in that order. With the default ``LocalBus`` the two views
never differ and nothing waits.

A fan-out renders its news once per style present in the room (a room keeps
its clients grouped by style), and queues that one ``bytes`` object for every
client of the style: a line to a room of line clients costs one rendering,
as a line to a room of line and IRC clients costs two.
"""

import logging
import math
import time
from collections import Counter, deque
from collections.abc import Hashable, Iterable, Mapping
from typing import Any, Callable, Optional, Protocol

from gchat import news
from gchat.addresses import canonical, sources
from gchat.bans import Bans, ban_key
from gchat.budget import Budget
from gchat.bus import Bus, Entry, LocalBus, Snapshot
from gchat.commands import nick_key, room_key, valid_nick
from gchat.events import (
    Asked,
    Away,
    Banned,
    Event,
    Joined,
    Kicked,
    Left,
    NodeLost,
    Opered,
    Parted,
    Private,
    Renamed,
    Said,
    TopicSet,
    Unbanned,
    decode,
)
from gchat.news import Kind, Notice, Style
from gchat.reasons import BANNED, KICKED, LEFT_UNSEEN, NODE_LOST

LOBBY = "#lobby"
# Wrong /oper tries one connection gets; later ones are refused without a check.
OPER_TRIES = 3
# Rooms one client may be in at once (IRC clients may join many; each is memory and fan-out).
MAX_ROOMS = 20

log = logging.getLogger("gchat")


class Mailbox(Protocol):
    """Where the chat puts a client's outgoing bytes; implemented by ``gchat.output.Output``."""

    def deliver(self, data: bytes) -> None:
        """Queue ``data`` for the client. Must not block or re-enter the chat."""

    def close(self) -> None:
        """End the connection once everything queued so far is sent."""


class Keeper(Protocol):
    """Where the chat's lasting state goes as it changes (``--store``).

    Noting a change must never block; reading back may wait (the caller's greenlet only).
    """

    def record(self, message: news.Message) -> None: ...

    def topic(self, room: str, text: str, by: str) -> None: ...

    def ban(self, address: str) -> None: ...

    def unban(self, address: str) -> None: ...

    def history(
        self, room: str, before: float, limit: int, after: float = -math.inf, newest: bool = True
    ) -> "tuple[news.Message, ...]":
        """Up to ``limit`` of ``room``'s lines from ``after`` to before ``before`` (Unix times, to the
        microsecond), oldest first: the newest of them, or the oldest (``newest`` False)."""

    def room(self, name: str, lines: int) -> "tuple[str, tuple[news.Message, ...]]":
        """A room no one is in: its topic and last ``lines`` lines, as it comes back."""


class Client:
    """A client of this node, as its own commands left it."""

    __slots__ = (
        "address",
        "cid",
        "host",
        "kicked",
        "mailbox",
        "member",
        "nick",
        "oper",
        "oper_failures",
        "quit_reason",
        "room",
        "rooms",
        "scrollback",
        "style",
    )

    def __init__(self, cid: int, nick: str, mailbox: Mailbox, address: str, style: Style) -> None:
        self.cid = cid
        self.nick = nick
        self.mailbox = mailbox
        self.address = address
        self.host = host_of(address)
        self.style = style
        # The rooms it is in, in the order it joined them, and the one it joined
        # last ("" if none): a line client's one room, where its plain lines go.
        self.rooms: dict[str, None] = {}
        self.room = ""
        # By room it is in: the time of the oldest line it was shown there (/history goes on from it).
        self.scrollback: dict[str, float] = {}
        self.member: Optional[Member] = None
        self.oper = False
        self.oper_failures = 0
        self.quit_reason: Optional[str] = None
        # Cut off by an operator, not gone by its own /quit (both are quit_reason text).
        self.kicked = False

    @property
    def connected(self) -> bool:
        return self.quit_reason is None

    def tell(self, what: news.Personal) -> None:
        data = self.style.tell(what, self.nick)
        if data:
            self.mailbox.deliver(data)

    def __repr__(self) -> str:
        return f"<Client {self.nick} in {', '.join(self.rooms)}>"


class Member:
    """A user on any node (client ``cid`` there), as the applied events left it: a ``news.Person``."""

    __slots__ = ("address", "away", "cid", "client", "host", "nick", "node", "oper", "rooms")

    def __init__(
        self, nick: str, node: str, cid: int, client: Optional[Client], address: str, host: str
    ) -> None:
        self.nick = nick
        self.node = node
        self.cid = cid
        self.client = client
        self.address = address
        self.host = host
        self.rooms: dict[Room, None] = {}
        self.oper = False
        self.away = ""


class Audience(Protocol):
    """The clients of one style in one room, as the output layer reaches them.

    ``send`` hands one rendering to all of them but ``sender``. The chat
    never needs to know how: ``Direct`` delivers to each mailbox at once;
    ``gchat.output.Chorus`` shares one loop turn's lines among all of them.
    """

    @property
    def clients(self) -> "Mapping[Client, object]":
        """The clients, in join order (what each maps to is the audience's own business)."""

    def add(self, client: Client) -> None: ...

    def discard(self, client: Client) -> None: ...

    def send(self, data: bytes, sender: Optional[Client]) -> None: ...


class Direct:
    """An audience that delivers every rendering to each client's mailbox in turn."""

    __slots__ = ("clients",)

    def __init__(self) -> None:
        self.clients: dict[Client, None] = {}

    def add(self, client: Client) -> None:
        self.clients[client] = None

    def discard(self, client: Client) -> None:
        del self.clients[client]

    def send(self, data: bytes, sender: Optional[Client]) -> None:
        for client in self.clients:
            if client is not sender:
                client.mailbox.deliver(data)


class Room:
    __slots__ = ("_audience", "history", "local", "local_count", "name", "topic", "users")

    def __init__(self, name: str, history: int, audience: "Callable[[Style], Audience]") -> None:
        self.name = name
        # Every member on every node by nick key, and this node's own clients,
        # an audience per style: the ones news is rendered and written to. Dicts
        # keep join order, O(1) removal.
        self.users: dict[str, Member] = {}
        self.local: dict[Style, Audience] = {}
        self.local_count = 0
        self._audience = audience
        self.history: deque[news.Message] = deque(maxlen=history)
        self.topic = ""

    def add(self, client: Client) -> None:
        audience = self.local.get(client.style)
        if audience is None:
            audience = self.local[client.style] = self._audience(client.style)
        if client not in audience.clients:
            audience.add(client)
            self.local_count += 1

    def discard(self, client: Client) -> None:
        audience = self.local.get(client.style)
        if audience is not None and client in audience.clients:
            audience.discard(client)
            self.local_count -= 1
            if not audience.clients:
                del self.local[client.style]

    def broadcast(self, what: news.Shared, sender: Optional[Client] = None, echo: bool = True) -> None:
        """Tell every local client in the room, rendering once per style.

        The sender too if its style echoes (and ``echo``: news about the sender
        that it is told otherwise, such as its own rename, is never echoed).
        """
        for style, audience in self.local.items():
            audience.send(style.render(what), None if echo and style.echo else sender)


def _direct(style: Style) -> Audience:
    return Direct()


def host_of(address: str) -> str:
    """The host others see for a user: its address, as the IRC prefix ``nick!nick@host`` shows it."""
    return canonical(address) or "unknown"


class Chat:
    def __init__(
        self,
        history: int = 20,
        bus: Optional[Bus] = None,
        announce_limit: int = 0,
        operators: Optional[Callable[[str, str, str], bool]] = None,
        on_ban: Optional[Callable[[str], None]] = None,
        joins: Optional[Budget] = None,
        messages: Optional[Budget] = None,
        announcements: Optional[Budget] = None,
        clock: Callable[[], float] = time.monotonic,
        keeper: Optional[Keeper] = None,
        audience: "Callable[[Style], Audience]" = _direct,
        source: "Optional[Callable[[str], str]]" = None,
    ) -> None:
        self._bus: Bus = bus if bus is not None else LocalBus()
        # What one address may make the chat send others. Per address (joins) and per
        # address and target nick (private messages), kept on the sender's node; per
        # address in recipients (joined/left/quit notices), kept by every node for its own.
        # An address counts as its source (an IPv6 client's /64: see gchat.addresses.sources).
        self._source = source if source is not None else sources()
        self._joins = joins
        self._messages = messages
        self._announcements = announcements
        self._clock = clock
        self._keeper = keeper
        # Checks an operator's name, password and address; may wait (a slow hash in a thread).
        self._operators = operators
        # Told each ban (gchat.bans.ban_key): connections the chat does not know of yet go too.
        self._on_ban = on_ban
        self.node = self._bus.node
        self._history = history
        self._announce_limit = announce_limit
        # How each room reaches its local clients of one style (see Audience).
        self._audience = audience
        self._lobby = Room(LOBBY, history, audience)
        self._rooms: dict[str, Room] = {LOBBY: self._lobby}
        # This node's clients by nick key (a nick being claimed included), and by id.
        self._clients: dict[str, Client] = {}
        self._local: dict[int, Client] = {}
        # Everyone in the chat, by nick key, as applied; and how many of them each node has.
        self._users: dict[str, Member] = {}
        self._nodes: Counter[str] = Counter()
        self._bans = Bans()
        # Rooms the keeper gave back for a join, taken when the join makes the room.
        self._kept: dict[str, tuple[str, tuple[news.Message, ...]]] = {}
        self._guests = 0
        self._cids = 0
        self._log_chat = log.isEnabledFor(logging.INFO)
        self.closing = False
        self._appliers: dict[type, Callable[[Any], None]] = {
            Said: self._apply_said,
            Joined: self._apply_joined,
            Parted: self._apply_parted,
            Renamed: self._apply_renamed,
            Left: self._apply_left,
            Private: self._apply_private,
            Asked: self._apply_asked,
            Kicked: self._apply_kicked,
            Banned: self._apply_banned,
            Unbanned: self._apply_unbanned,
            TopicSet: self._apply_topic,
            Opered: self._apply_opered,
            Away: self._apply_away,
            NodeLost: self._apply_node_lost,
        }
        self._bus.attach(self)

    @property
    def client_count(self) -> int:
        return len(self._local)

    @property
    def user_count(self) -> int:
        """Everyone in the chat, on every node."""
        return len(self._users)

    @property
    def node_count(self) -> int:
        """The nodes with someone in the chat, this one always among them (IRC's LUSERS "servers")."""
        return len(self._nodes) + (self.node not in self._nodes)

    @property
    def room_count(self) -> int:
        """Rooms as this node knows them: the lobby and every room with members, on any node."""
        return len(self._rooms)

    # --- What front-ends do ---------------------------------------------------------------

    def connect(
        self, mailbox: Mailbox, address: str, style: Style, nick: Optional[str] = None, lobby: bool = True
    ) -> Optional[Client]:
        """Admit a new connection as ``nick`` (None: a fresh guest nick), in the lobby or in no room.

        None, with nothing changed, when ``nick`` is taken. May wait for the bus.
        """
        self._cids += 1
        client = Client(self._cids, nick or "", mailbox, canonical(address), style)
        if nick is None:
            client.nick = self._claim_guest()
        elif not self._claim(client, nick):
            return None
        self._clients[nick_key(client.nick)] = client
        self._local[client.cid] = client
        room = LOBBY if lobby else ""
        if lobby:
            client.rooms[LOBBY] = None
            client.room = LOBBY
        self._bus.publish(Joined(self.node, client.cid, client.nick, room, client.address, client.host))
        if self.closing:
            # Shutdown began while the bus was claiming the nick.
            client.tell(Notice.SHUTTING_DOWN)
            mailbox.close()
        return client

    def banned(self, address: str) -> bool:
        return self._bans.covers(address)

    def restore(self, bans: Iterable[str], lobby: "tuple[str, Iterable[news.Message]]") -> None:
        """What the keeper kept, at start: the bans, and the lobby's topic and last lines."""
        self._bans = Bans(bans)
        self._lobby.topic, lines = lobby
        self._lobby.history.extend(lines)

    def history(
        self, room: str, before: float, limit: int, after: float = -math.inf, newest: bool = True
    ) -> "tuple[news.Message, ...]":
        """Up to ``limit`` of ``room``'s lines from ``after`` to before ``before`` (Unix times, to the
        microsecond), oldest first: the newest of them, or the oldest (``newest`` False).

        From the keeper (``--store``: every line it keeps; may wait for the disk), else from
        the room's own history on this node, the last ``--history`` lines (on every node of a
        cluster alike; none for a room no one is in).
        """
        if limit <= 0:
            return ()
        if self._keeper is not None:
            return self._keeper.history(room, before, limit, after, newest)
        found = self._rooms.get(room)
        if found is None:
            return ()
        since, until = news.micros(after), news.micros(before)
        lines = [line for line in found.history if since <= news.micros(line.at) < until]
        return tuple(lines[-limit:] if newest else lines[:limit])

    def leave(self, client: Client, reason: str) -> None:
        """Forget a client and tell its rooms why. Safe to call more than once."""
        if not client.connected:
            return
        client.quit_reason = reason
        del self._clients[nick_key(client.nick)]
        del self._local[client.cid]
        self._bus.publish(Left(client.nick, reason))

    def quit(self, client: Client, reason: str) -> None:
        """The client asked to go: its rooms are told its own words."""
        if self._usable(client):
            client.tell(Notice.BYE)
            self.leave(client, reason)
            client.mailbox.close()

    def say(self, client: Client, room: Optional[str], text: str, kind: Kind = Kind.SAY) -> None:
        """A line to ``room`` (None: the room the client joined last)."""
        if client.quit_reason is not None or self.closing:  # not _usable(): a call less per line
            return
        name = client.room if room is None else self._room_name(client, room)
        if name is None:
            return
        if name not in client.rooms:
            client.tell(news.NotIn(name))
            return
        self._bus.publish(
            Said(self.node, client.cid, news.Message(name, client.nick, client.host, text, kind, time.time()))
        )

    def private(self, client: Client, nick: str, text: str, kind: Kind = Kind.SAY) -> None:
        if not self._usable(client):
            return
        if not self._within(self._messages, (self._source(client.address), nick_key(nick))):
            # Many connections of one address could otherwise outpace the target's reading.
            client.tell(news.TooManyMessages(nick))
            return
        at = time.time()
        self._bus.publish(Private(nick, client.nick, client.host, kind, at, self.node, client.cid, text))

    def nick(self, client: Client, name: str) -> None:
        if not self._usable(client):
            return
        if not valid_nick(name):
            client.tell(news.InvalidNick(name))
            return
        old = client.nick
        if nick_key(name) == nick_key(old):
            renamed = self._bus.rename(old, name)
        else:
            renamed = self._claim(client, name, old)
        if not renamed:
            client.tell(news.NickInUse(name))
        elif not client.connected:
            # Gone while the bus was asked: give the nick back.
            self._bus.publish(Left(name, client.quit_reason or ""))
        else:
            self._rename(client, name)

    def join(self, client: Client, room: str, switch: bool) -> None:
        """Enter ``room``; with ``switch`` (the line protocol's /join), leave every other room."""
        if not self._usable(client):
            return
        name = self._room_name(client, room)
        if name is None:
            return
        if name in client.rooms:
            if switch:
                client.tell(news.AlreadyIn(name))
            return
        if not switch and len(client.rooms) >= MAX_ROOMS:
            client.tell(news.TooManyRooms(name))
            return
        if not self._within(self._joins, self._source(client.address)):
            # Each join is a notice to everyone in a room or two: toggling would flood them.
            client.tell(Notice.TOO_MANY_JOINS)
            return
        if self._keeper is not None and name not in self._rooms:
            # A room no one is in comes back as it was (only this client waits for the disk).
            kept = self._keeper.room(name, self._history)
            if not self._usable(client):
                return
            if name not in self._rooms:
                self._kept[name] = kept
        if switch:
            client.rooms.clear()
        client.rooms[name] = None
        client.room = name
        self._bus.publish(
            Joined(self.node, client.cid, client.nick, name, client.address, client.host, switch)
        )
        self._kept.pop(name, None)

    def part(self, client: Client, room: str, reason: str) -> None:
        if not self._usable(client):
            return
        name = self._room_name(client, room)
        if name is None:
            return
        if name not in client.rooms:
            client.tell(news.NotIn(name))
            return
        del client.rooms[name]
        client.room = next(reversed(client.rooms), "")
        self._bus.publish(Parted(self.node, client.cid, client.nick, name, reason))

    def list_rooms(self, client: Client) -> None:
        if self._usable(client):
            self._bus.publish(Asked(self.node, client.cid, "rooms"))

    def list_members(self, client: Client, room: Optional[str] = None) -> None:
        """The members of ``room`` (None: the client's), answered after its earlier events."""
        if not self._usable(client):
            return
        name = client.room if room is None else self._room_name(client, room)
        if name is not None:
            self._bus.publish(Asked(self.node, client.cid, "who", name))

    def topic(self, client: Client, room: Optional[str], text: Optional[str]) -> None:
        """Ask for ``room``'s topic (``text`` None), or set it (operators, in the room)."""
        if not self._usable(client):
            return
        name = client.room if room is None else self._room_name(client, room)
        if name is None:
            return
        if text is None:
            self._bus.publish(Asked(self.node, client.cid, "topic", name))
        elif not client.oper:
            client.tell(Notice.PERMISSION_DENIED)
        elif name not in client.rooms:
            client.tell(news.NotIn(name))
        else:
            self._bus.publish(TopicSet(name, text, client.nick, client.host))

    def oper(self, client: Client, name: str, password: str) -> None:
        if not self._usable(client):
            return
        if client.oper_failures >= OPER_TRIES:
            client.tell(Notice.NO_MORE_OPER_TRIES)
            return
        check = self._operators
        if check is not None and check(name, password, client.address) and client.connected:
            client.oper = True
            client.tell(Notice.NOW_OPERATOR)
            self._bus.publish(Opered(client.nick))
        else:
            client.oper_failures += 1
            client.tell(Notice.WRONG_OPERATOR)

    def kick(self, client: Client, nick: str, reason: str) -> None:
        """Remove ``nick`` from the whole chat (operators)."""
        member = self._target(client, nick)
        if member is not None:
            self._bus.publish(Kicked(member.nick, client.nick, reason, self.node, client.cid, client.host))

    def ban(self, client: Client, nick: str) -> None:
        member = self._target(client, nick)
        if member is None:
            return
        # The source (an IPv6 client's /64: gchat.bans), so that the next address of it is banned too.
        ban = self._source(member.address)
        if self._source(client.address) == ban:
            # It would cut off the operator (and behind one NAT or on localhost, everyone).
            client.tell(news.OwnAddress(ban))
        else:
            self._bus.publish(Banned(ban, client.nick, self.node, client.cid, client.host))

    def unban(self, client: Client, address: str) -> None:
        if not self._usable(client):
            return
        if not client.oper:
            client.tell(Notice.PERMISSION_DENIED)
        elif not (lifted := self._bans.covering(address)):
            client.tell(news.NotBanned(address))
        else:
            for ban in lifted:
                self._bus.publish(Unbanned(ban, self.node, client.cid))

    def away(self, client: Client, text: str) -> None:
        """Mark the client away (``text``) or back (empty), for everyone's listings."""
        if self._usable(client):
            self._bus.publish(Away(client.nick, text))

    def restyle(self, client: Client, style: Style) -> None:
        """Render for ``client`` with ``style`` from now on (e.g. options negotiated late)."""
        member = client.member
        rooms = list(member.rooms) if member is not None and member.client is client else []
        for room in rooms:
            room.discard(client)
        client.style = style
        for room in rooms:
            room.add(client)

    # --- What front-ends ask, answered at once from this node's view ---------------------------

    def member(self, nick: str) -> Optional[Member]:
        return self._users.get(nick_key(nick))

    def rooms_of(self, nick: str) -> "tuple[str, ...]":
        member = self._users.get(nick_key(nick))
        return tuple(room.name for room in member.rooms) if member is not None else ()

    def room_members(self, room: str) -> "tuple[Member, ...]":
        found = self._rooms.get(room)
        return _sorted(found.users.values()) if found is not None else ()

    def room_names(self) -> "tuple[tuple[str, int, str], ...]":
        return tuple(sorted((name, len(room.users), room.topic) for name, room in self._rooms.items()))

    def shutdown(self) -> None:
        """Stop all chat; every client gets the notice after what it is owed."""
        self.closing = True
        for client in list(self._local.values()):
            client.tell(Notice.SHUTTING_DOWN)
            client.mailbox.close()

    def close(self, reason: str) -> None:
        """The end of a shutdown: whoever is still here leaves, then so does the node."""
        for client in list(self._local.values()):
            self.leave(client, reason)
        self._bus.close()

    # --- The bus's side --------------------------------------------------------------------

    def apply(self, event: Event) -> None:
        self._appliers[type(event)](event)

    def link_lost(self) -> None:
        for member in list(self._users.values()):
            if member.client is None:
                self._remove(member, None)
        for client in self._local.values():
            client.tell(Notice.LINK_LOST)

    def local_users(self) -> "list[Entry]":
        return [
            Entry(
                self.node,
                client.cid,
                client.nick,
                tuple(client.rooms),
                client.address,
                client.host,
                client.oper,
                client.member.away if client.member is not None else "",
            )
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
            for name in client.rooms:
                self._room(name)
        for entry in snapshot.users:
            if entry.node != self.node and nick_key(entry.nick) not in self._users:
                self._add(entry)
        self._bans = Bans(snapshot.bans)
        for room in self._rooms.values():
            room.topic = snapshot.topics.get(room.name, "")
            room.history.clear()
            room.history.extend(_messages(snapshot.history.get(room.name, ())))
        for client in list(self._local.values()):
            self._settle(self.node, client.cid, client.nick, tuple(client.rooms), client.address, client.host)
            client.tell(Notice.LINK_RESTORED)

    def resynced(self, node: str, users: "list[Entry]") -> None:
        """Make ``node``'s users these, telling rooms what changed as the lost events would have."""
        if node == self.node:
            return
        had = {member.cid: member for member in self._users.values() if member.node == node}
        now = {entry.cid for entry in users}
        for cid, gone in had.items():
            if cid not in now:
                self._remove(gone, news.Gone(gone.nick, gone.host, LEFT_UNSEEN))
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
            self._settle(node, entry.cid, entry.nick, entry.rooms, entry.address, entry.host)
            self._flag(entry)

    def _settle(
        self, node: str, cid: int, nick: str, rooms: "tuple[str, ...]", address: str, host: str
    ) -> None:
        """Bring a user to ``rooms`` (its own node's view) with the events that would have done it."""
        member = self._users.get(nick_key(nick))
        now = [] if member is None else [room.name for room in member.rooms]
        if now == list(rooms) and member is not None:
            return
        if rooms and rooms[0] not in now and (member is None or len(rooms) == 1):
            # Into the chat, or one room for another, as a line client's /join does: a switch.
            self._apply_joined(Joined(node, cid, nick, rooms[0], address, host, True))
        elif member is None:
            self._apply_joined(Joined(node, cid, nick, "", address, host))
        for name in now:
            if name not in rooms:
                self._apply_parted(Parted(node, cid, nick, name, ""))
        for name in rooms:
            self._apply_joined(Joined(node, cid, nick, name, address, host, False))

    def _add(self, entry: Entry) -> None:
        key = nick_key(entry.nick)
        member = self._users[key] = Member(entry.nick, entry.node, entry.cid, None, entry.address, entry.host)
        self._nodes[entry.node] += 1
        member.oper, member.away = entry.oper, entry.away
        for name in entry.rooms:
            room = self._room(name)
            member.rooms[room] = None
            room.users[key] = member

    def _flag(self, entry: Entry) -> None:
        """Give another node's user the operator and away flags its node published."""
        member = self._users.get(nick_key(entry.nick))
        if member is not None and member.node == entry.node and member.cid == entry.cid:
            member.oper, member.away = entry.oper, entry.away

    # --- Helpers ---------------------------------------------------------------------------

    def _usable(self, client: Client) -> bool:
        """Whether the chat still takes commands from ``client``."""
        return client.connected and not self.closing

    def _room_name(self, client: Client, room: str) -> Optional[str]:
        name = room_key(room)
        if name is None:
            client.tell(news.InvalidRoom(room))
        return name

    def _claim(self, client: Client, nick: str, old: Optional[str] = None) -> bool:
        """Make ``nick`` the client's across the cluster (renaming it from ``old``), if no one holds it."""
        key = nick_key(nick)
        if key in self._clients or key in self._users:
            return False
        # Reserved here while the bus is asked, so no other client of
        # this node can claim it meanwhile.
        self._clients[key] = client
        try:
            return self._bus.rename(nick if old is None else old, nick)
        finally:
            del self._clients[key]

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
        old = client.nick
        del self._clients[nick_key(old)]
        self._clients[nick_key(nick)] = client
        client.nick = nick
        client.tell(news.NickChanged(old, nick, client.host))

    def _room(self, name: str) -> Room:
        room = self._rooms.get(name)
        if room is None:
            room = self._rooms[name] = Room(name, self._history, self._audience)
            kept = self._kept.pop(name, None)
            if kept is not None:
                room.topic, lines = kept
                room.history.extend(lines)
        return room

    def _within(self, budget: Optional[Budget], key: Hashable) -> bool:
        return budget is None or budget.allow(key, self._clock())

    def _target(self, client: Client, nick: str) -> Optional[Member]:
        """The member an operator's command names, or None after telling why not."""
        if not self._usable(client):
            return None
        if not client.oper:
            client.tell(Notice.PERMISSION_DENIED)
            return None
        member = self._users.get(nick_key(nick))
        if member is None:
            client.tell(news.NoSuchNick(nick))
        return member

    def _announce(self, room: Room, what: news.Shared, address: str) -> None:
        """A join or part notice, unless the room (without the one coming or going) is over the
        limit, or the users of ``address`` already had their share of notices sent by this node.

        In a room of thousands every join would cost a line to everyone; and one
        address coming and going on many connections would cost that many times over.
        """
        limit = self._announce_limit
        if (not limit or len(room.users) < limit) and self._affordable(address, room.local_count):
            room.broadcast(what)

    def _affordable(self, address: str, recipients: int) -> bool:
        """Whether this node may send a notice about one of ``address``'s users: a token a recipient."""
        budget = self._announcements
        return (
            budget is None or not recipients or budget.allow(self._source(address), self._clock(), recipients)
        )

    def _tell_peers(self, member: Member, what: news.Shared, limited: bool) -> None:
        """Tell everyone sharing a room with ``member`` (but itself) once, however many rooms they share.

        ``limited``: a notice under the announcement limits, as a join is.
        """
        rooms = list(member.rooms)
        if len(rooms) == 1:
            room = rooms[0]
            if limited and self._announce_limit and len(room.users) > self._announce_limit:
                return
            if self._affordable(member.address, room.local_count - (member.client is not None)):
                room.broadcast(what, member.client, echo=False)
            return
        groups: dict[Style, dict[Client, object]] = {}
        for room in rooms:
            if limited and self._announce_limit and len(room.users) > self._announce_limit:
                continue
            for style, audience in room.local.items():
                groups.setdefault(style, {}).update(audience.clients)
        if member.client is not None:
            groups.get(member.client.style, {}).pop(member.client, None)
        if not self._affordable(member.address, sum(map(len, groups.values()))):
            return
        for style, clients in groups.items():
            data = style.render(what)
            for client in clients:
                client.mailbox.deliver(data)

    def _remove(self, member: Member, gone: Optional[news.Gone]) -> None:
        """Take a member out of the chat, then tell those who shared a room with it."""
        if gone is not None and member.rooms:
            self._tell_peers(member, gone, True)
        key = nick_key(member.nick)
        del self._users[key]
        self._nodes[member.node] -= 1
        if not self._nodes[member.node]:
            del self._nodes[member.node]
        for room in list(member.rooms):
            self._exit(member, room, None)

    def _exit(self, member: Member, room: Room, notice: Optional[news.Shared]) -> None:
        del room.users[nick_key(member.nick)]
        del member.rooms[room]
        if member.client is not None:
            room.discard(member.client)
            member.client.scrollback.pop(room.name, None)
        if notice is not None:
            self._announce(room, notice, member.address)
        if not room.users and room is not self._lobby:
            del self._rooms[room.name]

    def _origin(self, node: str, cid: int) -> Optional[Client]:
        """The client of this node that published an event, if it is still here."""
        return self._local.get(cid) if node == self.node else None

    def _eject(self, member: Member, by: str, host: str, reason: str, oper: Optional[Client]) -> None:
        """Tell the member's rooms (the member too) and the operator, then cut the member off."""
        shared = False
        kicked: Optional[news.Kicked] = None
        for room in member.rooms:
            kicked = news.Kicked(room.name, member.nick, by, host, reason)
            room.broadcast(kicked)
            shared = shared or (oper is not None and oper.member is not None and room in oper.member.rooms)
        if oper is not None and not shared:
            oper.tell(kicked or news.Kicked("", member.nick, by, host, reason))
        self._remove(member, None)
        client = member.client
        if client is not None and client.connected:
            client.quit_reason = KICKED
            client.kicked = True
            self._clients.pop(nick_key(client.nick), None)
            self._local.pop(client.cid, None)
            client.mailbox.close()

    # --- Appliers: every node, in bus order --------------------------------------------------

    def _apply_said(self, event: Said) -> None:
        message = event.message
        room = self._rooms.get(message.room)
        if room is None:
            return
        if self._history:
            room.history.append(message)
        sender = self._origin(event.node, event.cid)
        room.broadcast(message, sender)
        if sender is not None:
            if self._keeper is not None:
                self._keeper.record(message)
            if self._log_chat:
                log.info("%s <%s> %s", room.name, message.nick, message.text)

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
        first = member is None
        if member is None:
            member = self._users[key] = Member(
                event.nick, event.node, event.cid, mine, event.address, event.host
            )
            self._nodes[event.node] += 1
            if mine is not None:
                mine.member = member
        if not event.room:
            return
        room = self._room(event.room)
        if room in member.rooms:
            return
        if event.switch:
            for old_room in list(member.rooms):
                self._exit(member, old_room, news.Parted(old_room.name, member.nick, member.host, ""))
        room.users[key] = member
        member.rooms[room] = None
        client = member.client
        if client is not None:
            client.tell(
                news.Arrived(
                    room.name, member.nick, member.host, room.users.values(), room.topic, room.history, first
                )
            )
            client.scrollback[room.name] = room.history[0].at if room.history else time.time()
        self._announce_entry(room, member)
        if client is not None:
            room.add(client)

    def _announce_entry(self, room: Room, member: Member) -> None:
        """The room hears of a newcomer counted among its users, not yet among its local clients."""
        limit = self._announce_limit
        if (not limit or len(room.users) - 1 < limit) and self._affordable(member.address, room.local_count):
            room.broadcast(news.Entered(room.name, member.nick, member.host))

    def _apply_parted(self, event: Parted) -> None:
        member = self._users.get(nick_key(event.nick))
        room = self._rooms.get(event.room)
        if member is None or room is None or room not in member.rooms:
            return
        self._exit(member, room, news.Parted(room.name, member.nick, member.host, event.reason))
        if member.client is not None:
            member.client.tell(news.Left(room.name, member.nick, member.host, event.reason))

    def _apply_renamed(self, event: Renamed) -> None:
        old_key = nick_key(event.old)
        member = self._users.pop(old_key, None)
        if member is None:
            return
        new_key = nick_key(event.new)
        member.nick = event.new
        self._users[new_key] = member
        for room in member.rooms:
            del room.users[old_key]
            room.users[new_key] = member
        if event.old != event.new and member.rooms:
            self._tell_peers(member, news.Renamed(event.old, event.new, member.host), False)

    def _apply_left(self, event: Left) -> None:
        member = self._users.get(nick_key(event.nick))
        if member is not None:
            self._remove(member, None if self.closing else news.Gone(member.nick, member.host, event.reason))

    def _apply_private(self, event: Private) -> None:
        member = self._users.get(nick_key(event.target))
        if member is None:
            sender = self._origin(event.node, event.cid)
            if sender is not None:
                sender.tell(news.NoSuchNick(event.target))
        else:
            message = news.Private(event.nick, event.host, member.nick, event.text, event.kind, event.at)
            if member.client is not None:
                member.client.tell(message)
            # A sender whose style echoes (IRC echo-message, the web page) sees what it sent, as sent.
            sender = self._origin(event.node, event.cid)
            if sender is not None and sender.style.echo:
                sender.tell(message)

    def _apply_asked(self, event: Asked) -> None:
        client = self._origin(event.node, event.cid)
        if client is None or client.member is None:
            return
        if event.what == "rooms":
            client.tell(news.RoomList(self.room_names()))
            return
        room = self._rooms.get(event.room)
        if event.what == "who":
            client.tell(news.MemberList(event.room, self.room_members(event.room)))
        else:
            client.tell(news.TopicIs(event.room, room.topic if room is not None else ""))

    def _apply_kicked(self, event: Kicked) -> None:
        member = self._users.get(nick_key(event.nick))
        if member is not None:
            self._eject(member, event.by, event.host, event.reason, self._origin(event.node, event.cid))

    def _apply_banned(self, event: Banned) -> None:
        address = self._bans.add(event.address)
        banned = Bans((address,))  # this ban alone: who it kicks
        oper = self._origin(event.node, event.cid)
        by = nick_key(event.by)
        for member in [
            member
            for member in self._users.values()
            if banned.covers(member.address)
            # Never the operator who gave it, on any node: someone must be left to /unban.
            and not (member.node == event.node and nick_key(member.nick) == by)
        ]:
            self._eject(member, event.by, event.host, BANNED, oper)
        if self._on_ban is not None:
            self._on_ban(address)
        if self._keeper is not None:
            self._keeper.ban(address)
        if oper is not None:
            oper.tell(news.AddressBanned(address))

    def _apply_unbanned(self, event: Unbanned) -> None:
        address = ban_key(event.address)
        self._bans.discard(address)
        if self._keeper is not None:
            self._keeper.unban(address)
        oper = self._origin(event.node, event.cid)
        if oper is not None:
            oper.tell(news.AddressUnbanned(address))

    def _apply_topic(self, event: TopicSet) -> None:
        room = self._rooms.get(event.room)
        if room is not None:
            room.topic = event.text
            room.broadcast(news.TopicChanged(room.name, event.text, event.by, event.host))
            if self._keeper is not None:
                self._keeper.topic(room.name, event.text, event.by)

    def _apply_opered(self, event: Opered) -> None:
        member = self._users.get(nick_key(event.nick))
        if member is not None:
            member.oper = True

    def _apply_away(self, event: Away) -> None:
        member = self._users.get(nick_key(event.nick))
        if member is not None:
            member.away = event.text

    def _apply_node_lost(self, event: NodeLost) -> None:
        if event.node == self.node:
            return
        for member in list(self._users.values()):
            if member.node == event.node:
                self._remove(member, news.Gone(member.nick, member.host, NODE_LOST))


def _casefold(member: Member) -> "tuple[str, str]":
    return (member.nick.lower(), member.nick)


def _sorted(members: Iterable[Member]) -> "tuple[Member, ...]":
    return tuple(sorted(members, key=_casefold))


def _messages(history: Iterable[bytes]) -> "list[news.Message]":
    """A room's history from the bus's store: encoded ``Said`` events."""
    found = []
    for data in history:
        event = decode(data)
        if isinstance(event, Said):
            found.append(event.message)
    return found
