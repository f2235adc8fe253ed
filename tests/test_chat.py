"""End-to-end tests of the chat contract (PROTOCOL.md) over real sockets.

Every test talks to a real ``python -m gchat`` subprocess. Tests synchronise
on the server's replies, never on sleeps: to show that a client did NOT get a
line, the actor pings first (so its earlier lines were handled and fanned
out), then the bystander pings (nothing may arrive before its pong).
"""

import re

import pytest
from conftest import PING, PONG, SHARED_FLAGS, LineClient, move, rename, reply, shared

WELCOME = "Welcome to the chatroom!"
HISTORY_FLAGS = ("--rate", "0", "--history", "3")
COMMANDS = ("/nick", "/join", "/rooms", "/who", "/msg", "/me", "/quit", "/help")


def status(nick: str) -> str:
    return f"*** You are {nick} in #lobby. Type /help for commands."


@pytest.fixture(scope="module")
def module_server(start_module_server):
    return start_module_server("--rate", "0", *SHARED_FLAGS)


@pytest.fixture
def server(module_server):
    """The module's server, shared by the tests that need no server of their own.

    Each test finds the chat empty (``shared``): names and counts are as on a new
    server, but the guest numbers go on, and there is no history (SHARED_FLAGS).
    Tests of those start their own server.
    """
    yield from shared(module_server)


@pytest.fixture
def lone_server(start_server):
    """A new server, for tests of the guest numbers and of the lobby's default history."""
    return start_server("--rate", "0")


def users(room: str, *clients: LineClient) -> str:
    """/who's reply: the clients' nicks sorted ignoring case (guest10 before guest9)."""
    nicks = sorted((client.nick for client in clients), key=str.lower)
    return f"*** users in {room} ({len(nicks)}): {', '.join(nicks)}"


def quiet(*clients: LineClient) -> None:
    """Assert that nothing is pending for any of ``clients``, checked in order."""
    for client in clients:
        client.ping()


# --- On connect ---------------------------------------------------------------


def test_connect_sends_welcome_then_status_with_guest_nick(lone_server):
    client = lone_server.connect()
    client.expect(WELCOME, status("guest1"))
    quiet(client)


def test_connect_sends_lobby_history_after_status(start_server):
    server = start_server(*HISTORY_FLAGS)
    a = server.join()
    a.say("one", "two")
    a.ping()
    b = server.connect()
    b.expect(WELCOME, status("guest2"), f"<{a.nick}> one", f"<{a.nick}> two")
    a.expect("*** guest2 joined #lobby")
    quiet(a, b)


def test_others_in_lobby_receive_join_notice(lone_server):
    a, b = lone_server.join(), lone_server.join()
    c = lone_server.connect()
    c.expect(WELCOME, status("guest3"))
    a.expect("*** guest3 joined #lobby")
    b.expect("*** guest3 joined #lobby")
    quiet(c, a, b)


def test_guest_nicks_increase(lone_server):
    assert [lone_server.join().nick for _ in range(3)] == ["guest1", "guest2", "guest3"]


def test_guest_nick_is_never_one_that_is_taken(lone_server):
    a = lone_server.join()
    rename(a, "GUEST2")
    b = lone_server.join()
    assert b.nick.lower() != "guest2"
    assert re.fullmatch(r"guest\d+", b.nick)


# --- Talking ------------------------------------------------------------------


def test_chat_line_goes_to_every_other_member_as_nick_text(server):
    a, b, c = server.join(), server.join(), server.join()
    a.say("hello, world")
    b.expect(f"<{a.nick}> hello, world")
    c.expect(f"<{a.nick}> hello, world")
    quiet(a, b, c)


def test_chat_line_is_not_echoed_to_sender(server):
    a, b = server.join(), server.join()
    a.say("no echo please")
    a.ping()
    b.expect(f"<{a.nick}> no echo please")


def test_chat_line_stays_in_the_senders_room(server):
    a, b, c = server.join(), server.join(), server.join()
    move(c, "dev", 1, old=(a, b))
    a.say("lobby only")
    b.expect(f"<{a.nick}> lobby only")
    quiet(a, c)


def test_double_slash_sends_text_starting_with_single_slash(server):
    a, b = server.join(), server.join()
    a.say("//quit is a command", "//", "///x")
    b.expect(f"<{a.nick}> /quit is a command", f"<{a.nick}> /", f"<{a.nick}> //x")
    quiet(a, b)


def test_empty_and_blank_lines_are_ignored(server):
    a, b = server.join(), server.join()
    a.send(b"\n   \n\t\n \t \t\n\r\n  \r\n")
    quiet(a, b)


def test_leading_and_trailing_spaces_are_kept(server):
    a, b = server.join(), server.join()
    a.say("   spaced   out  ", "\ttabbed\t")
    b.expect(f"<{a.nick}>    spaced   out  ", f"<{a.nick}> \ttabbed\t")
    quiet(a, b)


def test_line_starting_with_a_space_is_chat_not_a_command(server):
    a, b = server.join(), server.join()
    a.say(" /quit")
    b.expect(f"<{a.nick}>  /quit")
    quiet(a, b)


def test_crlf_line_ending_is_dropped_from_chat(server):
    a, b = server.join(), server.join()
    a.send(b"over telnet\r\n  kept spaces  \r\n")
    b.expect(f"<{a.nick}> over telnet", f"<{a.nick}>   kept spaces  ")
    quiet(a, b)


def test_crlf_line_ending_is_dropped_from_commands(server):
    a = server.join()
    a.send(b"/nick Telly\r\n/who\r\n")
    a.expect("*** You are now Telly", "*** users in #lobby (1): Telly")


def test_utf8_text_is_delivered_unchanged(server):
    a, b = server.join(), server.join()
    a.say("héllo wörld ✓ 日本")
    b.expect(f"<{a.nick}> héllo wörld ✓ 日本")


# --- /nick --------------------------------------------------------------------


def test_nick_replies_you_are_now_name(server):
    a = server.join()
    assert reply(a, "/nick Alice") == "*** You are now Alice"
    assert reply(a, "/who") == "*** users in #lobby (1): Alice"


def test_nick_notifies_other_members_of_the_room(server):
    a, b, c = server.join(), server.join(), server.join()
    a.say("/nick Alice")
    a.expect("*** You are now Alice")
    b.expect(f"*** {a.nick} is now known as Alice")
    c.expect(f"*** {a.nick} is now known as Alice")
    quiet(a, b, c)


def test_nick_does_not_notify_other_rooms(server):
    a, b, c = server.join(), server.join(), server.join()
    move(c, "dev", 1, old=(a, b))
    rename(a, "Alice", b)
    quiet(a, b, c)


def test_nick_accepts_the_longest_and_shortest_names(server):
    a = server.join()
    assert reply(a, "/nick " + "x" * 24) == "*** You are now " + "x" * 24
    assert reply(a, "/nick Q") == "*** You are now Q"
    assert reply(a, "/nick a-B_9") == "*** You are now a-B_9"


def test_nick_invalid_name_is_refused(server):
    a, b = server.join(), server.join()
    for name in ("9lives", "_under", "-dash", "a b", "x" * 25, "bang!", "dot.ted", "héllo", "#room"):
        assert reply(a, f"/nick {name}") == f"!!! invalid nickname: {name}"
    assert reply(a, "/who") == users("#lobby", a, b)
    quiet(b)


def test_nick_argument_is_trimmed(server):
    a = server.join()
    assert reply(a, "/nick   Bob  ") == "*** You are now Bob"


def test_nick_in_use_in_another_case_is_refused(server):
    a, b = server.join(), server.join()
    assert reply(a, f"/nick {b.nick.upper()}") == f"!!! nickname in use: {b.nick.upper()}"
    rename(a, "Alice", b)
    assert reply(b, "/nick aLICE") == "!!! nickname in use: aLICE"
    assert reply(b, "/who") == f"*** users in #lobby (2): Alice, {b.nick}"
    quiet(a)


def test_nick_in_use_by_a_member_of_another_room_is_refused(server):
    a, b = server.join(), server.join()
    move(b, "dev", 1, old=(a,))
    rename(b, "Bob")
    assert reply(a, "/nick bob") == "!!! nickname in use: bob"
    quiet(a, b)


def test_nick_change_of_own_case_is_allowed(server):
    a, b = server.join(), server.join()
    rename(a, "alice", b)
    a.say("/nick ALICE")
    a.expect("*** You are now ALICE")
    b.expect("*** alice is now known as ALICE")
    quiet(a, b)


def test_nick_frees_the_old_name(server):
    a, b = server.join(), server.join()
    old = a.nick
    rename(a, "Alice", b)
    rename(b, old, a)
    assert reply(a, "/who") == f"*** users in #lobby (2): Alice, {old}"


def test_nick_without_name_is_usage(server):
    a = server.join()
    assert reply(a, "/nick") == "!!! usage: /nick NAME"
    assert reply(a, "/nick    ") == "!!! usage: /nick NAME"


# --- /join --------------------------------------------------------------------


def test_join_accepts_room_with_or_without_hash(server):
    a, b = server.join(), server.join()
    assert reply(a, "/join dev") == "*** You are now in #dev (1 user)"
    b.expect(f"*** {a.nick} left #lobby")
    assert reply(b, "/join #dev") == "*** You are now in #dev (2 users)"
    a.expect(f"*** {b.nick} joined #dev")
    assert reply(a, "/who") == users("#dev", a, b)


def test_join_shows_uppercase_room_in_lowercase(server):
    a, b = server.join(), server.join()
    assert reply(a, "/join DeV") == "*** You are now in #dev (1 user)"
    b.expect(f"*** {a.nick} left #lobby")
    assert reply(b, "/join #DEV") == "*** You are now in #dev (2 users)"
    a.expect(f"*** {b.nick} joined #dev")


def test_join_counts_users_including_the_issuer(server):
    a, b, c = server.join(), server.join(), server.join()
    move(a, "dev", 1, old=(b, c))
    move(b, "dev", 2, old=(c,), new=(a,))
    move(c, "dev", 3, new=(a, b))
    quiet(a, b, c)


def test_join_sends_left_notice_to_old_room(server):
    a, b, c = server.join(), server.join(), server.join()
    a.say("/join dev")
    a.expect("*** You are now in #dev (1 user)")
    b.expect(f"*** {a.nick} left #lobby")
    c.expect(f"*** {a.nick} left #lobby")
    quiet(a, b, c)


def test_join_sends_joined_notice_to_new_room_not_to_issuer(server):
    a, b, c = server.join(), server.join(), server.join()
    move(a, "dev", 1, old=(b, c))
    c.say("/join dev")
    c.expect("*** You are now in #dev (2 users)")
    a.expect(f"*** {c.nick} joined #dev")
    b.expect(f"*** {c.nick} left #lobby")
    quiet(c, a, b)


def test_join_from_room_to_room_notifies_both(server):
    a, b, c = server.join(), server.join(), server.join()
    move(a, "one", 1, old=(b, c))
    move(b, "one", 2, old=(c,), new=(a,))
    move(c, "two", 1)
    move(a, "two", 2, old=(b,), new=(c,), old_room="#one")
    quiet(a, b, c)


def test_join_sends_history_of_joined_room_after_status_line(start_server):
    server = start_server(*HISTORY_FLAGS)
    a, b = server.join(), server.join()
    move(a, "dev", 1, old=(b,))
    a.say("in dev", "/me codes")
    a.ping()
    b.say("/join dev")
    b.expect("*** You are now in #dev (2 users)", f"<{a.nick}> in dev", f"* {a.nick} codes")
    a.expect(f"*** {b.nick} joined #dev")
    quiet(a, b)


def test_join_invalid_room_is_refused(server):
    a, b = server.join(), server.join()
    for room in ("#", "##dev", "a b", "x" * 33, "dev!", "dév", "#dev.team"):
        assert reply(a, f"/join {room}") == f"!!! invalid room: {room}"
    assert reply(a, "/who") == users("#lobby", a, b)
    quiet(b)


def test_join_accepts_longest_room_name(server):
    a = server.join()
    assert reply(a, "/join " + "R" * 32) == "*** You are now in #" + "r" * 32 + " (1 user)"
    assert reply(a, "/join a_-9") == "*** You are now in #a_-9 (1 user)"


def test_join_room_already_in_is_refused(server):
    a, b = server.join(), server.join()
    for room in ("lobby", "#lobby", "LOBBY", "#Lobby"):
        assert reply(a, f"/join {room}") == "!!! you are already in #lobby"
    move(a, "dev", 1, old=(b,))
    assert reply(a, "/join #DEV") == "!!! you are already in #dev"
    quiet(a, b)


def test_join_without_room_is_usage(server):
    a = server.join()
    assert reply(a, "/join") == "!!! usage: /join ROOM"
    assert reply(a, "/join \t ") == "!!! usage: /join ROOM"


# --- /rooms -------------------------------------------------------------------


def test_rooms_lists_rooms_with_member_counts_sorted_by_name(server):
    a, b, c, d = server.join(), server.join(), server.join(), server.join()
    move(b, "zeta", 1, old=(a, c, d))
    move(c, "alpha", 1, old=(a, d))
    move(d, "zeta", 2, old=(a,), new=(b,))
    assert reply(a, "/rooms") == "*** rooms (3): #alpha (1), #lobby (1), #zeta (2)"


def test_rooms_always_lists_lobby_even_when_empty(server):
    a = server.join()
    move(a, "dev", 1)
    assert reply(a, "/rooms") == "*** rooms (2): #dev (1), #lobby (0)"


def test_rooms_forgets_a_room_once_empty(server):
    a = server.join()
    move(a, "dev", 1)
    move(a, "lobby", 1, old_room="#dev")
    assert reply(a, "/rooms") == "*** rooms (1): #lobby (1)"


# --- /who ---------------------------------------------------------------------


def test_who_lists_room_users_sorted_case_insensitively_including_issuer(server):
    a, b, c, d = server.join(), server.join(), server.join(), server.join()
    rename(a, "carol", b, c, d)
    rename(b, "Dave", a, c, d)
    rename(c, "bob", a, b, d)
    rename(d, "Alice", a, b, c)
    assert reply(a, "/who") == "*** users in #lobby (4): Alice, bob, carol, Dave"


def test_who_lists_only_the_current_room(server):
    a, b, c = server.join(), server.join(), server.join()
    move(b, "dev", 1, old=(a, c))
    move(c, "dev", 2, old=(a,), new=(b,))
    assert reply(c, "/who") == users("#dev", b, c)
    assert reply(a, "/who") == f"*** users in #lobby (1): {a.nick}"


# --- /msg ---------------------------------------------------------------------


def test_msg_reaches_nick_in_another_room(server):
    a, b = server.join(), server.join()
    move(b, "dev", 1, old=(a,))
    a.say(f"/msg {b.nick} psst, over here")
    b.expect(f"*{a.nick}* psst, over here")
    quiet(a, b)


def test_msg_is_seen_by_target_alone_not_echoed_to_issuer(server):
    a, b, c = server.join(), server.join(), server.join()
    a.say(f"/msg {b.nick} secret")
    a.ping()
    b.expect(f"*{a.nick}* secret")
    quiet(b, c)


def test_msg_to_yourself(server):
    a, b = server.join(), server.join()
    a.say(f"/msg {a.nick} note to self")
    a.expect(f"*{a.nick}* note to self")
    quiet(a, b)


def test_msg_looks_nick_up_case_insensitively(server):
    a, b = server.join(), server.join()
    rename(b, "Bob", a)
    a.say("/msg bOB hi")
    b.expect(f"*{a.nick}* hi")
    quiet(a, b)


def test_msg_text_is_rest_of_line_trimmed(server):
    a, b = server.join(), server.join()
    a.say(f"/msg   {b.nick}    two  words   ")
    b.expect(f"*{a.nick}* two  words")
    quiet(a, b)


def test_msg_without_text_is_usage_checked_before_no_such_user(server):
    a = server.join()
    assert reply(a, "/msg nobody") == "!!! usage: /msg NICK TEXT"
    assert reply(a, "/msg nobody    ") == "!!! usage: /msg NICK TEXT"
    assert reply(a, "/msg") == "!!! usage: /msg NICK TEXT"
    assert reply(a, f"/msg {a.nick}") == "!!! usage: /msg NICK TEXT"


def test_msg_to_unknown_nick_is_no_such_user(server):
    a, b = server.join(), server.join()
    assert reply(a, "/msg Nobody hello") == "!!! no such user: Nobody"
    quiet(a, b)


def test_msg_to_a_nick_given_up_is_no_such_user(server):
    a, b = server.join(), server.join()
    old = b.nick
    rename(b, "Bob", a)
    assert reply(a, f"/msg {old} hello") == f"!!! no such user: {old}"
    quiet(a, b)


# --- /me ----------------------------------------------------------------------


def test_me_sends_action_to_others_not_to_sender(server):
    a, b, c = server.join(), server.join(), server.join()
    a.say("/me waves  hello ")
    a.ping()
    b.expect(f"* {a.nick} waves  hello")
    c.expect(f"* {a.nick} waves  hello")
    quiet(b, c)


def test_me_stays_in_the_senders_room(server):
    a, b = server.join(), server.join()
    move(b, "dev", 1, old=(a,))
    a.say("/me shrugs")
    quiet(a, b)


def test_me_without_text_is_usage(server):
    a, b = server.join(), server.join()
    assert reply(a, "/me") == "!!! usage: /me TEXT"
    assert reply(a, "/me   ") == "!!! usage: /me TEXT"
    quiet(a, b)


# --- /quit and leaving --------------------------------------------------------


def test_quit_replies_bye_then_closes_connection(server):
    a = server.join()
    a.say("/quit")
    a.expect("*** Bye!")
    assert a.read_to_eof() == b""


def test_quit_ignores_lines_sent_after_it(server):
    a, b = server.join(), server.join()
    a.say("/quit", "after quit", "/who")
    a.expect("*** Bye!")
    assert a.read_to_eof() == b""
    b.expect(f"*** {a.nick} quit (leaving)")
    quiet(b)


def test_quit_default_reason_is_leaving(server):
    a, b, c = server.join(), server.join(), server.join()
    a.say("/quit")
    a.expect("*** Bye!")
    b.expect(f"*** {a.nick} quit (leaving)")
    c.expect(f"*** {a.nick} quit (leaving)")
    quiet(b, c)


def test_quit_with_only_spaces_uses_default_reason(server):
    a, b = server.join(), server.join()
    a.say("/quit    ")
    a.expect("*** Bye!")
    b.expect(f"*** {a.nick} quit (leaving)")


def test_quit_custom_reason_is_seen_by_the_room(server):
    a, b = server.join(), server.join()
    a.say("/quit   gone fishing  ")
    a.expect("*** Bye!")
    b.expect(f"*** {a.nick} quit (gone fishing)")
    quiet(b)


def test_quit_notice_goes_to_the_current_room_only(server):
    a, b, c = server.join(), server.join(), server.join()
    move(a, "dev", 1, old=(b, c))
    move(b, "dev", 2, old=(c,), new=(a,))
    a.say("/quit bye")
    a.expect("*** Bye!")
    b.expect(f"*** {a.nick} quit (bye)")
    quiet(b, c)


def test_closing_the_socket_is_quit_connection_closed(server):
    a, b = server.join(), server.join()
    a.close()
    b.expect(f"*** {a.nick} quit (connection closed)")
    quiet(b)


def test_quit_frees_the_nick(server):
    a, b = server.join(), server.join()
    rename(a, "Alice", b)
    a.close()
    b.expect("*** Alice quit (connection closed)")
    rename(b, "alice")


# --- /help and unknown commands -----------------------------------------------


def test_help_lines_start_with_stars_and_name_every_command(server):
    a = server.join()
    a.say("/help", PING)
    lines = a.read_until(PONG)[:-1]
    assert lines
    for line in lines:
        assert line.startswith("*** "), line
    text = "\n".join(lines)
    for command in COMMANDS:
        assert re.search(re.escape(command) + r"\b", text), command


def test_unknown_command_keeps_word_as_typed(server):
    a, b = server.join(), server.join()
    assert reply(a, "/FooBar baz qux") == "!!! unknown command: /FooBar (try /help)"
    assert reply(a, "/nicks x") == "!!! unknown command: /nicks (try /help)"
    quiet(a, b)


def test_command_names_are_case_insensitive(server):
    a, b = server.join(), server.join()
    a.say("/help", PING)
    help_lines = a.read_until(PONG)
    a.say("/HeLp", PING)
    assert a.read_until(PONG) == help_lines
    a.say("/Me dances")
    b.expect(f"* {a.nick} dances")
    assert reply(a, "/WHO") == users("#lobby", a, b)
    assert reply(a, "/Rooms") == "*** rooms (1): #lobby (2)"
    assert reply(a, f"/MSG {a.nick} hi") == f"*{a.nick}* hi"
    assert reply(a, "/mSg nobody") == "!!! usage: /msg NICK TEXT"
    assert reply(a, "/ME") == "!!! usage: /me TEXT"
    assert reply(a, "/NICK") == "!!! usage: /nick NAME"
    assert reply(a, "/Nick Bob") == "*** You are now Bob"
    b.expect(f"*** {a.nick} is now known as Bob")
    assert reply(a, "/JOIN Dev") == "*** You are now in #dev (1 user)"
    b.expect("*** Bob left #lobby")
    assert reply(a, "/Who") == "*** users in #dev (1): Bob"
    assert reply(a, "/QUIT") == "*** Bye!"
    assert a.read_to_eof() == b""
    quiet(b)


# --- History ------------------------------------------------------------------


def test_history_replays_last_n_chat_and_action_lines_oldest_first(start_server):
    server = start_server(*HISTORY_FLAGS)
    a = server.join()
    a.say("one", "two", "/me three", "four", "/me five")
    a.ping()
    b = server.connect()
    b.expect(WELCOME, status("guest2"), f"* {a.nick} three", f"<{a.nick}> four", f"* {a.nick} five")
    quiet(b)


def test_history_excludes_notices_and_private_messages(start_server):
    server = start_server(*HISTORY_FLAGS)
    a, b = server.join(), server.join()
    rename(a, "Alice", b)
    a.say("/msg guest2 private", "/who", "/nosuch")
    a.expect("*** users in #lobby (2): Alice, guest2", "!!! unknown command: /nosuch (try /help)")
    b.expect("*Alice* private")
    move(b, "dev", 1, old=(a,))
    a.say("only this")
    a.ping()
    c = server.connect()
    c.expect(WELCOME, status("guest3"), "<Alice> only this")
    quiet(c)


def test_history_is_kept_exactly_as_delivered(start_server):
    server = start_server(*HISTORY_FLAGS)
    a, b = server.join(), server.join()
    a.say("  before rename  ")
    b.expect(f"<{a.nick}>   before rename  ")
    rename(a, "Alice", b)
    c = server.connect()
    c.expect(WELCOME, status("guest3"), "<guest1>   before rename  ")
    quiet(c)


def test_history_zero_sends_none(start_server):
    server = start_server("--rate", "0", "--history", "0")
    a = server.join()
    a.say("nobody will replay this", "/me nor this")
    a.ping()
    b = server.connect()
    b.expect(WELCOME, status("guest2"))
    a.expect("*** guest2 joined #lobby")
    quiet(b)
    move(a, "dev", 1, old=(b,))
    a.say("dev line")
    a.ping()
    b.say("/join dev")
    b.expect("*** You are now in #dev (2 users)")
    quiet(b)


def test_history_defaults_to_twenty_lines(lone_server):
    a = lone_server.join()
    a.say(*(f"line {n}" for n in range(1, 23)))
    a.ping()
    b = lone_server.connect()
    b.expect(WELCOME, status("guest2"), *(f"<{a.nick}> line {n}" for n in range(3, 23)))
    quiet(b)


def test_history_is_per_room(start_server):
    server = start_server(*HISTORY_FLAGS)
    a, b, c = server.join(), server.join(), server.join()
    move(b, "dev", 1, old=(a, c))
    a.say("lobby talk")
    c.expect(f"<{a.nick}> lobby talk")
    b.say("dev talk")
    b.ping()
    c.say("/join dev")
    c.expect("*** You are now in #dev (2 users)", f"<{b.nick}> dev talk")
    a.expect(f"*** {c.nick} left #lobby")
    b.expect(f"*** {c.nick} joined #dev")
    quiet(c, a, b)


def test_room_emptied_and_recreated_has_no_history(start_server):
    server = start_server(*HISTORY_FLAGS)
    a, b = server.join(), server.join()
    move(a, "dev", 1, old=(b,))
    a.say("soon forgotten")
    a.ping()
    move(a, "lobby", 2, new=(b,), old_room="#dev")
    assert reply(a, "/join dev") == "*** You are now in #dev (1 user)"
    b.expect(f"*** {a.nick} left #lobby")
    quiet(a, b)


def test_room_emptied_by_quit_and_recreated_has_no_history(start_server):
    server = start_server(*HISTORY_FLAGS)
    a, b = server.join(), server.join()
    move(a, "dev", 1, old=(b,))
    a.say("soon forgotten")
    a.say("/quit")
    a.expect("*** Bye!")
    assert reply(b, "/rooms") == "*** rooms (1): #lobby (1)"
    assert reply(b, "/join dev") == "*** You are now in #dev (1 user)"
    quiet(b)


def test_lobby_keeps_its_history_when_empty(start_server):
    server = start_server(*HISTORY_FLAGS)
    a = server.join()
    a.say("anyone?")
    a.say("/quit")
    a.expect("*** Bye!")
    assert a.read_to_eof() == b""
    b = server.connect()
    b.expect(WELCOME, status("guest2"), "<guest1> anyone?")
    quiet(b)


def test_lobby_keeps_its_history_when_everyone_moves_away(start_server):
    server = start_server(*HISTORY_FLAGS)
    a = server.join()
    a.say("anyone?")
    move(a, "dev", 1)
    a.say("/join lobby")
    a.expect("*** You are now in #lobby (1 user)", "<guest1> anyone?")
    quiet(a)


# --- A worked scenario ----------------------------------------------------------


def test_scenario_three_clients_two_rooms_and_a_private_message(lone_server):
    seen: dict[str, list[str]] = {"alice": [], "bob": [], "carol": []}

    def take(name: str, client: LineClient, count: int) -> None:
        seen[name] += client.read_lines(count)

    alice = lone_server.connect()
    take("alice", alice, 2)
    bob = lone_server.connect()
    take("bob", bob, 2)
    take("alice", alice, 1)
    carol = lone_server.connect()
    take("carol", carol, 2)
    take("alice", alice, 1)
    take("bob", bob, 1)

    for client, nick in ((alice, "alice"), (bob, "bob"), (carol, "carol")):
        client.say(f"/nick {nick}")
        for name, other in (("alice", alice), ("bob", bob), ("carol", carol)):
            take(name, other, 1)

    carol.say("/join #Dev")
    take("carol", carol, 1)
    take("alice", alice, 1)
    take("bob", bob, 1)

    alice.say("hello bob")
    take("bob", bob, 1)

    bob.say("/join dev")
    take("bob", bob, 1)
    take("carol", carol, 1)
    take("alice", alice, 1)

    carol.say("hi bob", "/me waves")
    take("bob", bob, 2)

    bob.say("/msg ALICE see you in #dev")
    take("alice", alice, 1)

    alice.say("/who", "/rooms", "/quit bye all")
    take("alice", alice, 3)
    assert alice.read_to_eof() == b""

    bob.close()
    take("carol", carol, 1)
    quiet(carol)

    assert seen["alice"] == [
        WELCOME,
        status("guest1"),
        "*** guest2 joined #lobby",
        "*** guest3 joined #lobby",
        "*** You are now alice",
        "*** guest2 is now known as bob",
        "*** guest3 is now known as carol",
        "*** carol left #lobby",
        "*** bob left #lobby",
        "*bob* see you in #dev",
        "*** users in #lobby (1): alice",
        "*** rooms (2): #dev (2), #lobby (1)",
        "*** Bye!",
    ]
    assert seen["bob"] == [
        WELCOME,
        status("guest2"),
        "*** guest3 joined #lobby",
        "*** guest1 is now known as alice",
        "*** You are now bob",
        "*** guest3 is now known as carol",
        "*** carol left #lobby",
        "<alice> hello bob",
        "*** You are now in #dev (2 users)",
        "<carol> hi bob",
        "* carol waves",
    ]
    assert seen["carol"] == [
        WELCOME,
        status("guest3"),
        "*** guest1 is now known as alice",
        "*** guest2 is now known as bob",
        "*** You are now carol",
        "*** You are now in #dev (1 user)",
        "*** bob joined #dev",
        "*** bob quit (connection closed)",
    ]


def test_concurrent_senders_lines_reach_every_member_in_one_order_each_senders_in_its_own(server):
    """The delivery promise with several senders at once, their lines interleaved by the server."""
    senders = [server.join() for _ in range(4)]
    receivers = [server.join() for _ in range(3)]
    count, batch = 600, 5
    # Round after round, a batch on every sender's socket at once: the server finds them all
    # readable together. A round ends when the first receiver has it all, so that the next one
    # does not pile up behind it into one read per sender.
    everyone: list[str] = []
    for first in range(0, count, batch):
        for sender in senders:
            sender.say(*(f"line {n:04d}" for n in range(first, first + batch)))
        everyone += receivers[0].read_lines(len(senders) * batch)
    for receiver in receivers[1:]:
        assert receiver.read_lines(len(everyone)) == everyone
    for sender in senders:
        own = f"<{sender.nick}> "
        assert [line for line in everyone if line.startswith(own)] == [
            f"{own}line {n:04d}" for n in range(count)
        ]
        assert sender.read_lines(len(everyone) - count) == [
            line for line in everyone if not line.startswith(own)
        ]
    quiet(*senders, *receivers)
