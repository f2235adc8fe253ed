"""The hub against PROTOCOL.md, with no sockets: recording mailboxes stand in for sessions.

Each ``User`` is one connection: its mailbox records every line the hub
delivers to it, and ``take()`` returns the lines that arrived since the last
call, so a test reads as "X does this, Y sees exactly that".
"""

import re

import pytest

from gchat import line as line_protocol
from gchat.chat import Chat as Hub
from gchat.commands import parse
from gchat.replies import LINES

STATUS = "*** You are {} in #lobby. Type /help for commands."
COMMANDS = ("/nick", "/join", "/rooms", "/who", "/msg", "/me", "/quit", "/help")


class RecordingMailbox:
    """Collects what the hub delivers, line by line, and whether it closed the mailbox."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.closed = False
        self.delivered_after_close: list[bytes] = []

    def deliver(self, data: bytes) -> None:
        assert data.endswith(b"\n"), f"delivery not ending in LF: {data!r}"
        assert b"\r" not in data, f"CR in delivery: {data!r}"
        if self.closed:
            self.delivered_after_close.append(data)
        self.lines.extend(data.decode("utf-8").split("\n")[:-1])

    def close(self) -> None:
        self.closed = True


class User:
    """One connected client: sends lines through ``parse`` into the hub, reads what it got."""

    def __init__(self, hub: Hub, address: str = "") -> None:
        self.hub = hub
        self.mailbox = RecordingMailbox()
        client = hub.connect(self.mailbox, address, LINES)
        assert client is not None
        self.client = client
        self._read = 0

    @property
    def nick(self) -> str:
        return self.client.nick

    def send(self, line: str) -> None:
        command = parse(line)
        assert command is not None, f"{line!r} parses to nothing"
        line_protocol.execute(self.hub, self.client, command, locked=False)

    def take(self) -> list[str]:
        """Lines delivered since the last ``take``."""
        new = self.mailbox.lines[self._read :]
        self._read = len(self.mailbox.lines)
        return new

    def ask(self, line: str) -> list[str]:
        """Send ``line`` and return what this user got back."""
        self.take()
        self.send(line)
        return self.take()

    def leave(self, reason: str = "connection closed") -> None:
        self.hub.leave(self.client, reason)


@pytest.fixture
def hub() -> Hub:
    return Hub()


def drain(*people: User) -> None:
    """Read and forget everything delivered to ``people`` so far."""
    for user in people:
        user.take()


def users(hub: Hub, count: int) -> list[User]:
    """``count`` fresh users in the lobby, everything they were sent so far already read."""
    connected = [User(hub) for _ in range(count)]
    drain(*connected)
    return connected


def named(hub: Hub, *nicks: str) -> list[User]:
    """Users in the lobby renamed to ``nicks``, their inboxes read."""
    connected = users(hub, len(nicks))
    for user, nick in zip(connected, nicks):
        assert user.ask(f"/nick {nick}") == [f"*** You are now {nick}"]
    drain(*connected)
    return connected


# --- connecting -------------------------------------------------------------


def test_first_client_gets_status_line_as_guest1_in_lobby(hub):
    assert User(hub).take() == [STATUS.format("guest1")]


def test_guest_nicks_count_up_from_guest1(hub):
    assert [User(hub).nick for _ in range(3)] == ["guest1", "guest2", "guest3"]


@pytest.mark.parametrize("taken", ["guest2", "GUEST2", "Guest2"])
def test_guest_nick_is_never_a_nick_someone_took_with_nick(hub, taken):
    (alice,) = users(hub, 1)
    alice.send(f"/nick {taken}")
    newcomer = User(hub)
    assert re.fullmatch(r"guest[1-9][0-9]*", newcomer.nick)
    assert newcomer.nick.lower() != "guest2"
    assert newcomer.take() == [STATUS.format(newcomer.nick)]


def test_guest_nick_is_never_one_that_is_taken(hub):
    first, second = users(hub, 2)
    first.send("/nick guest3")
    second.send("/nick Guest4")
    nicks = {user.nick.lower() for user in (first, second)}
    for _ in range(4):
        newcomer = User(hub)
        assert re.fullmatch(r"guest[1-9][0-9]*", newcomer.nick)
        assert newcomer.nick.lower() not in nicks
        nicks.add(newcomer.nick.lower())


def test_lobby_members_are_told_who_joined(hub):
    alice, bob = users(hub, 2)
    carol = User(hub)
    assert alice.take() == [f"*** {carol.nick} joined #lobby"]
    assert bob.take() == [f"*** {carol.nick} joined #lobby"]


def test_newcomer_is_not_told_of_its_own_join(hub):
    users(hub, 1)
    newcomer = User(hub)
    assert newcomer.take() == [STATUS.format(newcomer.nick)]


def test_members_of_other_rooms_are_not_told_of_a_connect(hub):
    (alice,) = users(hub, 1)
    alice.send("/join dev")
    drain(alice)
    User(hub)
    assert alice.take() == []


# --- talking ----------------------------------------------------------------


def test_chat_line_reaches_every_other_member_of_the_room(hub):
    alice, bob, carol = named(hub, "alice", "bob", "carol")
    alice.send("hello there")
    assert bob.take() == ["<alice> hello there"]
    assert carol.take() == ["<alice> hello there"]


def test_sender_gets_no_echo_of_its_chat_line(hub):
    (alice, _bob) = named(hub, "alice", "bob")
    assert alice.ask("hello") == []


def test_chat_line_does_not_reach_other_rooms(hub):
    alice, bob = named(hub, "alice", "bob")
    bob.send("/join dev")
    drain(bob)
    alice.send("hello")
    assert bob.take() == []


def test_double_slash_sends_text_starting_with_one_slash(hub):
    alice, bob = named(hub, "alice", "bob")
    alice.send("//help me")
    assert bob.take() == ["<alice> /help me"]


def test_chat_text_keeps_its_leading_and_trailing_spaces(hub):
    alice, bob = named(hub, "alice", "bob")
    alice.send("  spaced out\t ")
    assert bob.take() == ["<alice>   spaced out\t "]


@pytest.mark.parametrize("line", ["", " ", "\t", " \t  "])
def test_blank_lines_are_ignored(line):
    assert parse(line) is None


# --- commands in general ----------------------------------------------------


@pytest.mark.parametrize("line", ["/WHO", "/Who", "/wHo"])
def test_command_names_are_case_insensitive(hub, line):
    (alice,) = named(hub, "alice")
    assert alice.ask(line) == ["*** users in #lobby (1): alice"]


@pytest.mark.parametrize(("line", "word"), [("/ping", "ping"), ("/Foo bar baz", "Foo"), ("/", "")])
def test_unknown_command_is_named_as_typed(hub, line, word):
    (alice,) = users(hub, 1)
    assert alice.ask(line) == [f"!!! unknown command: /{word} (try /help)"]


def test_unknown_command_is_not_seen_by_others(hub):
    alice, bob = users(hub, 2)
    alice.send("/ping")
    assert bob.take() == []


@pytest.mark.parametrize(
    ("line", "syntax"),
    [
        ("/nick", "/nick NAME"),
        ("/nick   ", "/nick NAME"),
        ("/join", "/join ROOM"),
        ("/join \t ", "/join ROOM"),
        ("/msg", "/msg NICK TEXT"),
        ("/me", "/me TEXT"),
        ("/me    ", "/me TEXT"),
    ],
)
def test_command_without_its_argument_answers_usage(hub, line, syntax):
    alice, bob = users(hub, 2)
    assert alice.ask(line) == [f"!!! usage: {syntax}"]
    assert bob.take() == []


# --- /nick ------------------------------------------------------------------


def test_nick_change_is_confirmed_to_the_issuer(hub):
    (alice,) = users(hub, 1)
    assert alice.ask("/nick alice") == ["*** You are now alice"]


def test_nick_change_is_announced_to_others_in_the_room(hub):
    alice, bob = users(hub, 2)
    old = alice.nick
    alice.send("/nick alice")
    assert bob.take() == [f"*** {old} is now known as alice"]


def test_nick_change_is_not_announced_in_other_rooms(hub):
    alice, bob = users(hub, 2)
    bob.send("/join dev")
    drain(bob)
    alice.send("/nick alice")
    assert bob.take() == []


def test_nick_change_shows_in_who(hub):
    (alice,) = users(hub, 1)
    alice.send("/nick Alice")
    assert alice.ask("/who") == ["*** users in #lobby (1): Alice"]


@pytest.mark.parametrize("name", ["a", "Z", "x" * 24, "A-b_9", "q1-_"])
def test_valid_nicknames_are_accepted(hub, name):
    (alice,) = users(hub, 1)
    assert alice.ask(f"/nick {name}") == [f"*** You are now {name}"]


@pytest.mark.parametrize("name", ["1abc", "_a", "-a", "a b", "x" * 25, "al.ice", "älice", "a#", "bob!"])
def test_invalid_nickname_is_refused_and_nothing_else_happens(hub, name):
    alice, bob = users(hub, 2)
    old = alice.nick
    assert alice.ask(f"/nick {name}") == [f"!!! invalid nickname: {name}"]
    assert bob.take() == []
    assert alice.nick == old


def test_nick_argument_is_trimmed(hub):
    (alice,) = users(hub, 1)
    assert alice.ask("/nick    alice  ") == ["*** You are now alice"]


def test_nick_taken_by_another_client_is_in_use(hub):
    alice, bob = named(hub, "alice", "bob")
    assert bob.ask("/nick alice") == ["!!! nickname in use: alice"]
    assert alice.take() == []
    assert bob.nick == "bob"


def test_nick_taken_in_another_case_is_in_use(hub):
    _alice, bob = named(hub, "Alice", "bob")
    assert bob.ask("/nick alice") == ["!!! nickname in use: alice"]
    assert bob.ask("/nick ALICE") == ["!!! nickname in use: ALICE"]


def test_nick_taken_by_a_client_in_another_room_is_in_use(hub):
    alice, bob = named(hub, "alice", "bob")
    alice.send("/join dev")
    assert bob.ask("/nick Alice") == ["!!! nickname in use: Alice"]


def test_changing_the_case_of_your_own_nick_is_allowed(hub):
    alice, bob = named(hub, "alice", "bob")
    assert alice.ask("/nick ALICE") == ["*** You are now ALICE"]
    assert bob.take() == ["*** alice is now known as ALICE"]


def test_nick_released_by_leaving_is_free_at_once(hub):
    alice, bob = named(hub, "alice", "bob")
    alice.leave()
    assert bob.ask("/nick alice") == ["*** You are now alice"]


def test_nick_released_by_quit_is_free_at_once(hub):
    alice, bob = named(hub, "alice", "bob")
    alice.send("/quit")
    assert bob.ask("/nick Alice") == ["*** You are now Alice"]


def test_nick_released_by_another_nick_change_is_free_at_once(hub):
    alice, bob = named(hub, "alice", "bob")
    alice.send("/nick alicia")
    assert bob.ask("/nick alice") == ["*** You are now alice"]


def test_old_nick_no_longer_reaches_its_former_owner(hub):
    alice, bob = named(hub, "alice", "bob")
    alice.send("/nick alicia")
    drain(alice)
    assert bob.ask("/msg alice hi") == ["!!! no such user: alice"]
    assert alice.take() == []


# --- /join ------------------------------------------------------------------


def test_joining_a_new_room_reports_one_user(hub):
    (alice,) = users(hub, 1)
    assert alice.ask("/join #dev") == ["*** You are now in #dev (1 user)"]


def test_join_without_hash_is_the_same_room(hub):
    alice, bob = users(hub, 2)
    alice.send("/join #dev")
    assert bob.ask("/join dev") == ["*** You are now in #dev (2 users)"]


@pytest.mark.parametrize("name", ["DEV", "#Dev", "dEv", "#DEV"])
def test_room_names_are_case_insensitive_and_shown_lowercase(hub, name):
    alice, bob = users(hub, 2)
    assert alice.ask(f"/join {name}") == ["*** You are now in #dev (1 user)"]
    assert bob.ask("/join dev") == ["*** You are now in #dev (2 users)"]


def test_join_reply_counts_the_issuer_among_the_users(hub):
    alice, bob, carol = users(hub, 3)
    alice.send("/join dev")
    bob.send("/join dev")
    assert carol.ask("/join dev") == ["*** You are now in #dev (3 users)"]


@pytest.mark.parametrize("name", ["x" * 32, "a-b_9", "7", "#_"])
def test_valid_room_names_are_accepted(hub, name):
    (alice,) = users(hub, 1)
    shown = "#" + name.lstrip("#").lower()
    assert alice.ask(f"/join {name}") == [f"*** You are now in {shown} (1 user)"]


@pytest.mark.parametrize("name", ["#", "##dev", "dev#", "a b", "x" * 33, "dév", "a.b", "#de v"])
def test_invalid_room_is_refused_and_nothing_else_happens(hub, name):
    alice, bob = users(hub, 2)
    assert alice.ask(f"/join {name}") == [f"!!! invalid room: {name}"]
    assert bob.take() == []
    assert alice.ask("/who") == [f"*** users in #lobby (2): {alice.nick}, {bob.nick}"]


def test_joining_the_room_you_are_in_is_refused(hub):
    alice, bob = users(hub, 2)
    assert alice.ask("/join #lobby") == ["!!! you are already in #lobby"]
    assert bob.take() == []


def test_joining_the_room_you_are_in_in_another_case_is_refused(hub):
    alice, bob = users(hub, 2)
    alice.send("/join dev")
    bob.send("/join dev")
    drain(bob)
    assert alice.ask("/join DEV") == ["!!! you are already in #dev"]
    assert bob.take() == []


def test_old_room_members_are_told_who_left(hub):
    alice, bob = named(hub, "alice", "bob")
    alice.send("/join dev")
    assert bob.take() == ["*** alice left #lobby"]


def test_new_room_members_are_told_who_joined(hub):
    alice, bob = named(hub, "alice", "bob")
    bob.send("/join dev")
    drain(bob)
    alice.send("/join dev")
    assert bob.take() == ["*** alice joined #dev"]


def test_join_notices_reach_exactly_the_right_people(hub):
    mover, stayer, host, bystander = named(hub, "mover", "stayer", "host", "bystander")
    host.send("/join dev")
    bystander.send("/join ops")
    drain(mover, stayer, host, bystander)
    assert mover.ask("/join dev") == ["*** You are now in #dev (2 users)"]
    assert stayer.take() == ["*** mover left #lobby"]
    assert host.take() == ["*** mover joined #dev"]
    assert bystander.take() == []


def test_joining_the_lobby_from_another_room(hub):
    alice, bob = named(hub, "alice", "bob")
    alice.send("/join dev")
    drain(bob)
    assert alice.ask("/join LOBBY") == ["*** You are now in #lobby (2 users)"]
    assert bob.take() == ["*** alice joined #lobby"]


def test_chat_follows_the_member_into_its_new_room(hub):
    alice, bob, carol = named(hub, "alice", "bob", "carol")
    bob.send("/join dev")
    alice.send("/join dev")
    drain(alice, bob, carol)
    alice.send("in dev")
    assert bob.take() == ["<alice> in dev"]
    assert carol.take() == []


# --- /rooms -----------------------------------------------------------------


def test_rooms_lists_the_lobby_with_its_count(hub):
    (alice, _bob) = users(hub, 2)
    assert alice.ask("/rooms") == ["*** rooms (1): #lobby (2)"]


def test_rooms_lists_the_lobby_even_when_it_is_empty(hub):
    (alice,) = users(hub, 1)
    alice.send("/join dev")
    assert alice.ask("/rooms") == ["*** rooms (2): #dev (1), #lobby (0)"]


def test_rooms_lists_rooms_with_members_sorted_by_name(hub):
    zed, alpha, mid, lob, alpha2 = users(hub, 5)
    zed.send("/join Zeta")
    alpha.send("/join #alpha")
    mid.send("/join m")
    alpha2.send("/join ALPHA")
    assert lob.ask("/rooms") == ["*** rooms (4): #alpha (2), #lobby (1), #m (1), #zeta (1)"]


def test_rooms_forgets_a_room_once_it_is_empty(hub):
    (alice,) = users(hub, 1)
    alice.send("/join dev")
    alice.send("/join ops")
    assert alice.ask("/rooms") == ["*** rooms (2): #lobby (0), #ops (1)"]


def test_rooms_forgets_a_room_whose_last_member_left_the_server(hub):
    alice, bob = users(hub, 2)
    alice.send("/join dev")
    alice.leave()
    assert bob.ask("/rooms") == ["*** rooms (1): #lobby (1)"]


# --- /who -------------------------------------------------------------------


def test_who_lists_the_room_sorted_case_insensitively_including_the_issuer(hub):
    dave, *_ = named(hub, "Dave", "carol", "Alice", "bob")
    assert dave.ask("/who") == ["*** users in #lobby (4): Alice, bob, carol, Dave"]


def test_who_lists_only_the_issuers_room(hub):
    alice, bob, carol = named(hub, "alice", "bob", "carol")
    bob.send("/join dev")
    carol.send("/join DEV")
    assert alice.ask("/who") == ["*** users in #lobby (1): alice"]
    assert bob.ask("/who") == ["*** users in #dev (2): bob, carol"]


def test_who_is_answered_to_the_issuer_alone(hub):
    alice, bob = users(hub, 2)
    alice.send("/who")
    assert bob.take() == []


# --- /msg -------------------------------------------------------------------


def test_msg_reaches_the_target_in_another_room(hub):
    alice, bob = named(hub, "alice", "bob")
    bob.send("/join dev")
    drain(bob)
    alice.send("/msg bob psst, over here")
    assert bob.take() == ["*alice* psst, over here"]


def test_msg_is_not_echoed_nor_seen_by_anyone_else(hub):
    alice, bob, carol = named(hub, "alice", "bob", "carol")
    assert alice.ask("/msg bob hi") == []
    assert carol.take() == []
    assert bob.take() == ["*alice* hi"]


def test_msg_looks_the_nick_up_case_insensitively(hub):
    alice, bob = named(hub, "alice", "Bob")
    alice.send("/msg bOB hi")
    assert bob.take() == ["*alice* hi"]


def test_msg_to_yourself_arrives(hub):
    (alice,) = named(hub, "alice")
    assert alice.ask("/msg ALICE note to self") == ["*alice* note to self"]


def test_msg_text_is_the_rest_of_the_line_trimmed(hub):
    alice, bob = named(hub, "alice", "bob")
    alice.send("/msg bob    two  words  ")
    assert bob.take() == ["*alice* two  words"]


def test_msg_to_an_unknown_nick_is_an_error(hub):
    (alice,) = named(hub, "alice")
    assert alice.ask("/msg nobody hi") == ["!!! no such user: nobody"]


def test_msg_to_a_nick_that_just_left_is_an_error(hub):
    alice, bob = named(hub, "alice", "bob")
    bob.leave()
    drain(alice)
    assert alice.ask("/msg bob are you there?") == ["!!! no such user: bob"]
    assert bob.take() == []


@pytest.mark.parametrize("line", ["/msg bob", "/msg bob    ", "/msg nobody", "/msg   bob"])
def test_msg_without_text_answers_usage_before_looking_up_the_nick(hub, line):
    alice, bob = named(hub, "alice", "bob")
    assert alice.ask(line) == ["!!! usage: /msg NICK TEXT"]
    assert bob.take() == []


def test_msg_is_not_kept_in_history(hub):
    alice, _bob = named(hub, "alice", "bob")
    alice.send("/msg bob secret")
    assert User(hub).take()[1:] == []


# --- /me --------------------------------------------------------------------


def test_me_reaches_every_other_member_of_the_room(hub):
    alice, bob, carol = named(hub, "alice", "bob", "carol")
    carol.send("/join dev")
    drain(bob, carol)
    assert alice.ask("/me waves  hello ") == []
    assert bob.take() == ["* alice waves  hello"]
    assert carol.take() == []


def test_me_line_is_kept_in_history(hub):
    (alice,) = named(hub, "alice")
    alice.send("/me waves")
    newcomer = User(hub)
    assert newcomer.take() == [STATUS.format(newcomer.nick), "* alice waves"]


# --- /quit and leaving ------------------------------------------------------


def test_quit_says_bye_to_the_issuer_and_closes_its_mailbox(hub):
    (alice,) = users(hub, 1)
    assert alice.ask("/quit") == ["*** Bye!"]
    assert alice.mailbox.closed


def test_quit_tells_the_room_the_reason(hub):
    alice, bob = named(hub, "alice", "bob")
    alice.send("/quit  gotta go ")
    assert bob.take() == ["*** alice quit (gotta go)"]


def test_quit_without_reason_says_leaving(hub):
    alice, bob = named(hub, "alice", "bob")
    alice.send("/QUIT")
    assert bob.take() == ["*** alice quit (leaving)"]


def test_quit_notice_reaches_only_the_quitters_room(hub):
    alice, bob, carol = named(hub, "alice", "bob", "carol")
    carol.send("/join dev")
    drain(bob, carol)
    alice.send("/quit")
    assert bob.take() == ["*** alice quit (leaving)"]
    assert carol.take() == []


def test_quitter_receives_nothing_after_bye(hub):
    alice, bob = named(hub, "alice", "bob")
    alice.send("/quit")
    drain(alice)
    bob.send("hello?")
    bob.send("/msg alice hello?")
    User(hub)
    hub.leave(alice.client, "connection closed")
    assert alice.take() == []
    assert alice.mailbox.delivered_after_close == []


def test_commands_of_a_client_that_quit_do_nothing(hub):
    alice, bob = named(hub, "alice", "bob")
    alice.send("/quit")
    drain(alice, bob)
    for line in ("hello", "/nick zed", "/who", "/msg bob hi", "/join dev"):
        alice.send(line)
    assert alice.take() == []
    assert bob.take() == []


@pytest.mark.parametrize("reason", ["connection closed", "slow consumer", "idle timeout"])
def test_leave_tells_the_room_the_servers_reason(hub, reason):
    alice, bob = named(hub, "alice", "bob")
    alice.leave(reason)
    assert bob.take() == [f"*** alice quit ({reason})"]
    assert alice.take() == []


def test_leave_twice_is_harmless(hub):
    alice, bob = named(hub, "alice", "bob")
    alice.leave("connection closed")
    alice.leave("connection closed")
    assert bob.take() == ["*** alice quit (connection closed)"]
    assert bob.ask("/who") == ["*** users in #lobby (1): bob"]


def test_leave_after_quit_sends_no_second_notice(hub):
    alice, bob = named(hub, "alice", "bob")
    alice.send("/quit bye")
    alice.leave("connection closed")
    assert bob.take() == ["*** alice quit (bye)"]


def test_left_client_is_gone_from_who(hub):
    alice, bob, _carol = named(hub, "alice", "bob", "carol")
    bob.leave()
    assert alice.ask("/who") == ["*** users in #lobby (2): alice, carol"]


# --- history ----------------------------------------------------------------


def test_connect_gets_lobby_history_oldest_first_after_the_status_line(hub):
    alice, bob = named(hub, "alice", "bob")
    alice.send("one")
    bob.send("/me two")
    alice.send("three")
    newcomer = User(hub)
    assert newcomer.take() == [STATUS.format(newcomer.nick), "<alice> one", "* bob two", "<alice> three"]


def test_join_gets_room_history_right_after_the_join_reply(hub):
    alice, bob = named(hub, "alice", "bob")
    alice.send("/join dev")
    alice.send("first")
    alice.send("/me second")
    assert bob.ask("/join dev") == ["*** You are now in #dev (2 users)", "<alice> first", "* alice second"]


def test_history_comes_before_any_live_line(hub):
    alice, _bob = named(hub, "alice", "bob")
    alice.send("old")
    newcomer = User(hub)
    alice.send("new")
    assert newcomer.take() == [STATUS.format(newcomer.nick), "<alice> old", "<alice> new"]


def test_history_holds_only_the_last_n_chat_lines():
    hub = Hub(history=3)
    (alice,) = named(hub, "alice")
    for number in range(1, 6):
        alice.send(f"line {number}")
    assert User(hub).take()[1:] == ["<alice> line 3", "<alice> line 4", "<alice> line 5"]


def test_history_is_twenty_lines_by_default(hub):
    (alice,) = named(hub, "alice")
    for number in range(25):
        alice.send(f"line {number}")
    assert User(hub).take()[1:] == [f"<alice> line {number}" for number in range(5, 25)]


def test_history_leaves_out_notices_errors_and_private_messages(hub):
    alice, bob, carol = named(hub, "alice", "bob", "carol")
    alice.send("/nick alicia")
    bob.send("/join dev")
    carol.leave()
    alice.send("/msg alicia private")
    alice.send("/ping")
    alice.send("/nick 1")
    alice.send("/who")
    alice.send("/rooms")
    alice.send("/help")
    alice.send("said")
    assert User(hub).take()[1:] == ["<alicia> said"]


def test_history_keeps_the_nick_a_line_was_sent_under(hub):
    alice, _bob = named(hub, "alice", "bob")
    alice.send("before")
    alice.send("/me renames")
    alice.send("/nick alicia")
    alice.send("after")
    assert User(hub).take()[1:] == ["<alice> before", "* alice renames", "<alicia> after"]


def test_history_replays_lines_exactly_as_delivered(hub):
    alice, bob = named(hub, "alice", "bob")
    alice.send("//slash  and spaces ")
    alice.send("/me   acts ")
    delivered = bob.take()
    assert User(hub).take()[1:] == delivered


def test_history_zero_sends_no_history():
    hub = Hub(history=0)
    (alice,) = named(hub, "alice")
    alice.send("hello")
    alice.send("/join dev")
    alice.send("in dev")
    newcomer = User(hub)
    assert newcomer.take() == [STATUS.format(newcomer.nick)]
    assert newcomer.ask("/join dev") == ["*** You are now in #dev (2 users)"]


def test_an_emptied_room_is_forgotten_with_its_history(hub):
    alice, bob = named(hub, "alice", "bob")
    alice.send("/join dev")
    alice.send("lost line")
    alice.send("/join lobby")
    assert bob.ask("/join dev") == ["*** You are now in #dev (1 user)"]


def test_a_room_emptied_by_a_leave_is_forgotten_with_its_history(hub):
    alice, bob = named(hub, "alice", "bob")
    alice.send("/join dev")
    alice.send("lost line")
    alice.send("/quit")
    assert bob.ask("/join dev") == ["*** You are now in #dev (1 user)"]


def test_a_room_keeps_its_history_while_it_has_members(hub):
    alice, bob, carol = named(hub, "alice", "bob", "carol")
    alice.send("/join dev")
    bob.send("/join dev")
    alice.send("kept")
    alice.send("/join lobby")
    assert carol.ask("/join dev") == ["*** You are now in #dev (2 users)", "<alice> kept"]


def test_the_lobby_keeps_its_history_while_empty(hub):
    (alice,) = named(hub, "alice")
    alice.send("remember me")
    alice.send("/join dev")
    assert User(hub).take()[1:] == ["<alice> remember me"]
    assert alice.ask("/join lobby")[1:] == ["<alice> remember me"]


def test_the_lobby_keeps_its_history_when_everyone_left(hub):
    (alice,) = named(hub, "alice")
    alice.send("remember me")
    alice.leave()
    assert User(hub).take()[1:] == ["<alice> remember me"]


# --- /help ------------------------------------------------------------------


def test_help_lines_all_start_with_three_stars(hub):
    (alice,) = users(hub, 1)
    lines = alice.ask("/help")
    assert lines
    assert all(line.startswith("*** ") for line in lines)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_names_every_command(hub, command):
    (alice,) = users(hub, 1)
    text = "\n".join(alice.ask("/help"))
    assert re.search(re.escape(command) + r"\b", text)


def test_help_is_answered_to_the_issuer_alone(hub):
    alice, bob = users(hub, 2)
    alice.send("/help")
    assert bob.take() == []


# --- shutdown ---------------------------------------------------------------


def test_shutdown_sends_everyone_the_notice_as_last_line_and_closes_them(hub):
    alice, bob, carol = named(hub, "alice", "bob", "carol")
    carol.send("/join dev")
    drain(alice, bob, carol)
    hub.shutdown()
    for user in (alice, bob, carol):
        assert user.take() == ["*** server shutting down"]
        assert user.mailbox.closed


def test_shutdown_notice_comes_after_what_was_already_delivered(hub):
    alice, bob = named(hub, "alice", "bob")
    alice.send("last words")
    hub.shutdown()
    assert bob.take() == ["<alice> last words", "*** server shutting down"]


def test_shutdown_skips_clients_that_already_left(hub):
    alice, _bob = named(hub, "alice", "bob")
    alice.send("/quit")
    drain(alice)
    hub.shutdown()
    assert alice.take() == []
    assert alice.mailbox.delivered_after_close == []


@pytest.mark.parametrize(
    "line", ["hello", "/me waves", "/nick zed", "/join dev", "/who", "/msg bob hi", "/quit"]
)
def test_after_shutdown_commands_do_nothing(hub, line):
    alice, bob = named(hub, "alice", "bob")
    hub.shutdown()
    drain(alice, bob)
    alice.send(line)
    assert alice.take() == []
    assert bob.take() == []


def test_after_shutdown_leaving_sends_no_quit_notice(hub):
    alice, bob = named(hub, "alice", "bob")
    hub.shutdown()
    drain(alice, bob)
    alice.leave("shutdown")
    bob.leave("shutdown")
    assert bob.take() == []
    assert alice.take() == []
    assert hub.client_count == 0
