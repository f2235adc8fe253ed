"""The hub under random sequences of connects, leaves, renames, joins and chat.

A model keeps who is connected, under which nick, in which room, and which
lines each client is owed. After every step the hub is checked against it:

- nicks are unique, compared case-insensitively, among connected clients;
- ``/who`` in every room and ``/rooms`` match the model;
- every client received, as live lines, exactly the chat lines sent to its room
  by others while it was a member, in the order they were sent: nothing from a
  room it was not in at the time, nothing missing;
- members of a room saw that room's lines in one and the same order;
- a client that left receives nothing more;
- every line every client got is the line the model predicts (replies,
  notices, history, private messages).
"""

import re
from collections import deque
from dataclasses import dataclass, field
from itertools import combinations
from typing import Optional

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

from gchat import line as line_protocol
from gchat.chat import Chat as Hub
from gchat.chat import Client
from gchat.commands import parse
from gchat.replies import LINES

HISTORY = 3
MAX_CLIENTS = 6
LOBBY = "#lobby"

VALID_NICKS = [
    "alice",
    "Alice",
    "BOB",
    "bob",
    "carol",
    "guest1",
    "Guest2",
    "GUEST3",
    "guest4",
    "Guest5",
    "x" * 24,
    "d-_9",
]
INVALID_NICKS = ["1x", "a b", "x" * 25, "-dash", "é"]
ROOM_NAMES = ["lobby", "#LOBBY", "dev", "#dev", "DEV", "#Dev", "ops", "#OPS", "q", "#no room", "##"]
QUIT_REASONS = [None, "bye now", "  spaced  "]
SERVER_REASONS = ["connection closed", "slow consumer", "idle timeout"]

NICK = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,23}")
ROOM = re.compile(r"#?([A-Za-z0-9_-]{1,32})")
STATUS = re.compile(r"\*\*\* You are (\S+) in #lobby\. Type /help for commands\.")

RoomId = tuple[str, int]
"""A room's name and generation: a room emptied and re-created is another room."""


class RecordingMailbox:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.closed = False
        self.delivered_after_close = 0

    def deliver(self, data: bytes) -> None:
        assert data.endswith(b"\n")
        if self.closed:
            self.delivered_after_close += 1
        self.lines.extend(data.decode("utf-8").split("\n")[:-1])

    def close(self) -> None:
        self.closed = True


@dataclass(eq=False)
class Member:
    """A connection as the model sees it."""

    mailbox: RecordingMailbox
    client: Client
    nick: str
    room: str = ""
    expected: list[str] = field(default_factory=list)
    """Every line this client should have received so far, in order."""
    owed_chat: list[str] = field(default_factory=list)
    """The live chat lines this client should have received so far, in order."""
    history_at: set[int] = field(default_factory=set)
    """Positions in ``mailbox.lines`` that were history replays, not live lines."""
    lines_at_departure: Optional[int] = None

    @property
    def connected(self) -> bool:
        return self.lines_at_departure is None


@dataclass(eq=False)
class RoomModel:
    generation: int
    members: list[Member] = field(default_factory=list)
    history: "deque[str]" = field(default_factory=lambda: deque(maxlen=HISTORY))


def users(count: int) -> str:
    return "1 user" if count == 1 else f"{count} users"


class HubMachine(RuleBasedStateMachine):
    clients = Bundle("clients")

    def __init__(self) -> None:
        super().__init__()
        self.hub = Hub(history=HISTORY)
        self.generations = 0
        self.rooms: dict[str, RoomModel] = {LOBBY: self._new_room()}
        self.members: list[Member] = []
        # Each chat line ever sent (all unique) -> the room it was sent to.
        self.chat_room: dict[str, RoomId] = {}
        self.texts = 0
        self.nicks_seen: list[str] = []

    # --- model helpers ------------------------------------------------------

    def _new_room(self) -> RoomModel:
        self.generations += 1
        return RoomModel(self.generations)

    @property
    def live(self) -> list[Member]:
        return [member for member in self.members if member.connected]

    def _holder(self, nick: str) -> Optional[Member]:
        for member in self.live:
            if member.nick.lower() == nick.lower():
                return member
        return None

    def _send(self, member: Member, line: str) -> None:
        command = parse(line)
        assert command is not None
        line_protocol.execute(self.hub, member.client, command, locked=False)

    def _unique_text(self, prefix: str) -> str:
        self.texts += 1
        return f"{prefix}{self.texts}"

    def _others(self, member: Member) -> list[Member]:
        return [other for other in self.rooms[member.room].members if other is not member]

    def _tell_others(self, member: Member, line: str) -> None:
        for other in self._others(member):
            other.expected.append(line)

    def _exit_room(self, member: Member, notice: str) -> None:
        self._tell_others(member, notice)
        room = self.rooms[member.room]
        room.members.remove(member)
        if not room.members and member.room != LOBBY:
            del self.rooms[member.room]

    def _enter_room(self, member: Member, name: str, first_line: str, start: int) -> None:
        """``member`` enters ``name``: ``first_line`` at ``start`` in its mailbox, then the history."""
        room = self.rooms.get(name)
        if room is None:
            room = self.rooms[name] = self._new_room()
        for other in room.members:
            other.expected.append(f"*** {member.nick} joined {name}")
        member.expected.append(first_line)
        member.expected.extend(room.history)
        replayed = member.mailbox.lines[start + 1 :]
        assert replayed == list(room.history), f"history of {name}"
        member.history_at.update(range(start + 1, start + 1 + len(replayed)))
        room.members.append(member)
        member.room = name

    def _depart(self, member: Member, notice: str) -> None:
        self._exit_room(member, notice)
        member.lines_at_departure = len(member.mailbox.lines)

    def _publish(self, member: Member, line: str) -> None:
        room = self.rooms[member.room]
        self.chat_room[line] = (member.room, room.generation)
        room.history.append(line)
        for other in self._others(member):
            other.expected.append(line)
            other.owed_chat.append(line)

    def _rename(self, member: Member, name: str) -> None:
        self._send(member, f"/nick {name}")
        holder = self._holder(name)
        if not NICK.fullmatch(name):
            member.expected.append(f"!!! invalid nickname: {name}")
        elif holder is not None and holder is not member:
            member.expected.append(f"!!! nickname in use: {name}")
        else:
            member.expected.append(f"*** You are now {name}")
            if name != member.nick:
                self._tell_others(member, f"*** {member.nick} is now known as {name}")
            member.nick = name
            self.nicks_seen.append(name)

    def _live_chat(self, member: Member) -> list[str]:
        """The chat lines ``member`` received live (not as history), in order."""
        return [
            line
            for position, line in enumerate(member.mailbox.lines)
            if line in self.chat_room and position not in member.history_at
        ]

    # --- rules --------------------------------------------------------------

    @initialize(target=clients)
    def two_clients(self):
        """Start with company, so that most rules are enabled from the first step."""
        return multiple(self._connect(), self._connect())

    @precondition(lambda self: len(self.live) < MAX_CLIENTS)
    @rule(target=clients)
    def connect(self) -> Member:
        return self._connect()

    def _connect(self) -> Member:
        taken = {member.nick.lower() for member in self.live}
        mailbox = RecordingMailbox()
        client = self.hub.connect(mailbox, "", LINES)
        assert client is not None
        status = STATUS.fullmatch(mailbox.lines[0]) if mailbox.lines else None
        assert status, f"bad status line: {mailbox.lines[:1]}"
        nick = status.group(1)
        assert re.fullmatch(r"guest[1-9][0-9]*", nick), nick
        assert nick.lower() not in taken, f"guest nick {nick} is taken"
        member = Member(mailbox, client, nick)
        self.members.append(member)
        self.nicks_seen.append(nick)
        self._enter_room(member, LOBBY, status.group(0), start=0)
        return member

    @rule(member=consumes(clients), reason=st.sampled_from(SERVER_REASONS), twice=st.booleans())
    def leave(self, member: Member, reason: str, twice: bool) -> None:
        self.hub.leave(member.client, reason)
        if twice:
            self.hub.leave(member.client, reason)
        self._depart(member, f"*** {member.nick} quit ({reason})")

    @rule(member=consumes(clients), reason=st.sampled_from(QUIT_REASONS))
    def quit(self, member: Member, reason: Optional[str]) -> None:
        self._send(member, "/quit" if reason is None else f"/quit {reason}")
        assert member.mailbox.closed, "mailbox not closed after /quit"
        # The session reports the closed connection afterwards: that must change nothing.
        self.hub.leave(member.client, "connection closed")
        member.expected.append("*** Bye!")
        shown = "leaving" if reason is None else reason.strip()
        self._depart(member, f"*** {member.nick} quit ({shown})")

    @rule(member=clients, name=st.sampled_from(VALID_NICKS + INVALID_NICKS))
    def change_nick(self, member: Member, name: str) -> None:
        self._rename(member, name)

    @rule(member=clients)
    def change_case_of_own_nick(self, member: Member) -> None:
        self._rename(member, member.nick.swapcase())

    @rule(member=clients, other=clients)
    def take_nick_of_another_in_other_case(self, member: Member, other: Member) -> None:
        self._rename(member, other.nick.swapcase())

    @rule(member=clients, name=st.sampled_from(ROOM_NAMES))
    def join(self, member: Member, name: str) -> None:
        start = len(member.mailbox.lines)
        self._send(member, f"/join {name}")
        match = ROOM.fullmatch(name)
        if not match:
            member.expected.append(f"!!! invalid room: {name}")
            return
        room = "#" + match.group(1).lower()
        if room == member.room:
            member.expected.append(f"!!! you are already in {room}")
            return
        self._exit_room(member, f"*** {member.nick} left {member.room}")
        count = len(self.rooms[room].members) + 1 if room in self.rooms else 1
        self._enter_room(member, room, f"*** You are now in {room} ({users(count)})", start)

    @rule(member=clients, escaped=st.booleans())
    def say(self, member: Member, escaped: bool) -> None:
        text = self._unique_text("/say" if escaped else "say")
        self._send(member, "/" + text if escaped else text)
        self._publish(member, f"<{member.nick}> {text}")

    @rule(member=clients)
    def act(self, member: Member) -> None:
        text = self._unique_text("acts")
        self._send(member, f"/me {text}")
        self._publish(member, f"* {member.nick} {text}")

    @rule(member=clients, data=st.data())
    def msg(self, member: Member, data: st.DataObject) -> None:
        nick = data.draw(st.sampled_from([*self.nicks_seen, "nobody"]), label="to")
        nick = data.draw(st.sampled_from([nick, nick.upper(), nick.lower()]), label="spelled")
        text = self._unique_text("psst")
        self._send(member, f"/msg {nick} {text}")
        target = self._holder(nick)
        if target is None:
            member.expected.append(f"!!! no such user: {nick}")
        else:
            target.expected.append(f"*{member.nick}* {text}")

    # --- invariants ---------------------------------------------------------

    @invariant()
    def nicks_are_unique_ignoring_case(self) -> None:
        nicks = [member.nick.lower() for member in self.live]
        assert len(nicks) == len(set(nicks)), nicks
        assert [member.client.nick for member in self.live] == [member.nick for member in self.live]
        assert self.hub.client_count == len(self.live)
        assert (self.hub.user_count, self.hub.node_count) == (len(self.live), 1)

    @invariant()
    def who_and_rooms_match_the_model(self) -> None:
        for name, room in self.rooms.items():
            if not room.members:
                continue
            asker = room.members[0]
            nicks = sorted((member.nick for member in room.members), key=lambda nick: (nick.lower(), nick))
            reply = f"*** users in {name} ({len(nicks)}): {', '.join(nicks)}"
            before = len(asker.mailbox.lines)
            self._send(asker, "/who")
            assert asker.mailbox.lines[before:] == [reply]
            asker.expected.append(reply)
        if self.live:
            asker = self.live[0]
            listing = [f"{name} ({len(room.members)})" for name, room in sorted(self.rooms.items())]
            reply = f"*** rooms ({len(listing)}): {', '.join(listing)}"
            before = len(asker.mailbox.lines)
            self._send(asker, "/rooms")
            assert asker.mailbox.lines[before:] == [reply]
            asker.expected.append(reply)

    @invariant()
    def everyone_got_exactly_the_chat_lines_of_their_rooms_while_members(self) -> None:
        for member in self.members:
            assert self._live_chat(member) == member.owed_chat, member.nick

    @invariant()
    def members_saw_each_rooms_lines_in_one_order(self) -> None:
        seen: dict[Member, dict[RoomId, list[str]]] = {}
        for member in self.members:
            by_room: dict[RoomId, list[str]] = {}
            for line in self._live_chat(member):
                by_room.setdefault(self.chat_room[line], []).append(line)
            seen[member] = by_room
        for first, second in combinations(self.members, 2):
            for room in seen[first].keys() & seen[second].keys():
                common = set(seen[first][room]) & set(seen[second][room])
                in_first = [line for line in seen[first][room] if line in common]
                in_second = [line for line in seen[second][room] if line in common]
                assert in_first == in_second, room

    @invariant()
    def a_departed_client_receives_nothing_more(self) -> None:
        for member in self.members:
            if not member.connected:
                assert len(member.mailbox.lines) == member.lines_at_departure, member.nick
            assert member.mailbox.delivered_after_close == 0, member.nick

    @invariant()
    def every_client_got_exactly_the_lines_the_model_predicts(self) -> None:
        for member in self.members:
            assert member.mailbox.lines == member.expected, member.nick


HubMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=40)
test_hub_state_machine = HubMachine.TestCase
