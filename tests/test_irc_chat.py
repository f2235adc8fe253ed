"""IRC and line clients in one chat: every IRC command, and conversations across the two protocols.

Each test talks to a real ``python -m gchat --irc-port`` over real sockets;
waits end on the server's replies (a PING's PONG, a ``/ping``'s answer).
"""

import re

import pytest
from conftest import (
    IRC_SERVER,
    OPER_PASSWORD,
    PING,
    PONG,
    SHARED_FLAGS,
    operator,
    shared,
    small_window_socket,
    write_oper_file,
)
from test_metrics import LINE, disconnects, scrape, start_metered

S = f":{IRC_SERVER}"
TIME = r"@time=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


@pytest.fixture(scope="module")
def module_server(start_module_server, tmp_path_factory, oper_hash):
    opers = write_oper_file(tmp_path_factory.mktemp("opers"), oper_hash)
    return start_module_server("--rate", "0", "--irc-port", "0", "--oper-file", opers, *SHARED_FLAGS)


@pytest.fixture
def server(module_server):
    """The module's server, shared by the tests that need no server of their own.

    Tests of history, of the lobby's topic, of bans, of a wrong OPER's
    pause for the address, and of shutdown have their own (``lone_server``).
    """
    yield from shared(module_server)


@pytest.fixture
def lone_server(start_server, oper_file):
    return start_server("--rate", "0", "--irc-port", "0", "--oper-file", oper_file, "--join-burst", "100")


def prefix(nick):
    return f":{nick}!{nick}@127.0.0.1"


def oper(client):
    client.send_line(f"OPER boss :{OPER_PASSWORD}")
    assert client.readline() == f"{S} 381 {client.nick} :You are now an IRC operator"
    assert client.readline() == f"{S} MODE {client.nick} :+o"


def in_lobby(server, nick, caps=()):
    """An IRC client in #lobby, and a line client there who has read its join notice."""
    line = server.join()
    irc = server.irc(nick, caps)
    irc.join("#lobby")
    line.expect(f"*** {nick} joined #lobby")
    return irc, line


# --- Across protocols ----------------------------------------------------------------------


def test_a_line_clients_message_reaches_irc_from_nick_at_host(server):
    alice, bob = in_lobby(server, "alice")
    bob.say("<b>hi there</b>")
    assert alice.readline() == f"{prefix(bob.nick)} PRIVMSG #lobby :<b>hi there</b>"


def test_an_irc_message_reaches_line_clients_and_is_not_echoed(server):
    alice, bob = in_lobby(server, "alice")
    alice.send_line("PRIVMSG #lobby :hello from irc")
    assert bob.readline() == "<alice> hello from irc"
    alice.sync()


def test_an_irc_notice_to_a_room_reaches_line_clients_as_a_line(server):
    alice, bob = in_lobby(server, "alice")
    alice.send_line("NOTICE #lobby :heads up")
    assert bob.readline() == "<alice> heads up"


def test_me_is_a_ctcp_action_both_ways(server):
    alice, bob = in_lobby(server, "alice")
    bob.say("/me waves")
    assert alice.readline() == f"{prefix(bob.nick)} PRIVMSG #lobby :\x01ACTION waves\x01"
    alice.send_line("PRIVMSG #lobby :\x01ACTION waves back\x01")
    assert bob.readline() == "* alice waves back"


def test_other_ctcp_is_not_relayed(server):
    alice, bob = in_lobby(server, "alice")
    alice.send_line("PRIVMSG #lobby :\x01VERSION\x01")
    alice.sync()
    bob.ping()


def test_irc_formatting_and_escapes_never_reach_a_terminal(server):
    alice, bob = in_lobby(server, "alice")
    alice.send_line("PRIVMSG #lobby :\x02bold\x02 \x1b[2Jclear")
    assert bob.readline() == "<alice> bold clear"


def test_private_messages_both_ways(server):
    alice, bob = in_lobby(server, "alice")
    bob.say("/msg ALICE psst")
    assert alice.readline() == f"{prefix(bob.nick)} PRIVMSG alice :psst"
    alice.send_line(f"PRIVMSG {bob.nick} :yes?")
    assert bob.readline() == "*alice* yes?"
    alice.send_line(f"PRIVMSG {bob.nick} :\x01ACTION nods\x01")
    assert bob.readline() == "*alice* * alice nods"


def test_irc_joins_parts_renames_and_quits_reach_line_clients(server):
    alice, bob = in_lobby(server, "alice")
    alice.send_line("NICK al")
    assert alice.readline() == f"{prefix('alice')} NICK :al"
    assert bob.readline() == "*** alice is now known as al"
    alice.send_line("PART #lobby :later")
    assert alice.readline() == f"{prefix('al')} PART #lobby :later"
    assert bob.readline() == "*** al left #lobby"
    alice.join("#lobby")
    assert bob.readline() == "*** al joined #lobby"
    alice.send_line("QUIT :done here")
    assert bob.readline() == "*** al quit (done here)"


def test_line_clients_joining_renaming_moving_and_quitting_reach_irc(server):
    alice = server.irc("alice")
    alice.join("#dev")
    bob = server.join()
    old = bob.nick
    bob.say("/join #dev")
    bob.expect("*** You are now in #dev (2 users)")
    assert alice.readline() == f"{prefix(old)} JOIN :#dev"
    bob.say("/nick robert")
    bob.expect("*** You are now robert")
    assert alice.readline() == f"{prefix(old)} NICK :robert"
    bob.say("/join #lobby")
    assert alice.readline() == f"{prefix('robert')} PART :#dev"
    bob.say("/join #dev", "/quit")
    assert alice.readline() == f"{prefix('robert')} JOIN :#dev"
    assert alice.readline() == f"{prefix('robert')} QUIT :leaving"


def test_history_is_replayed_on_join_with_original_times_in_a_chathistory_batch(lone_server):
    bob = lone_server.join()
    bob.say("one", "/me two")
    bob.ping()
    alice = lone_server.irc("alice", caps=("server-time", "batch"))
    assert alice.join("#lobby")[0] == f"{prefix('alice')} JOIN :#lobby"
    start, one, two, end = alice.read_lines(4)
    assert start == f"{S} BATCH +history chathistory :#lobby"
    assert re.fullmatch(rf"{TIME};batch=history {prefix(bob.nick)} PRIVMSG #lobby :one", one)
    assert re.fullmatch(rf"{TIME};batch=history {prefix(bob.nick)} PRIVMSG #lobby :\x01ACTION two\x01", two)
    assert end == f"{S} BATCH :-history"


def test_history_without_caps_is_plain_messages_after_names(lone_server):
    bob = lone_server.join()
    bob.say("one")
    bob.ping()
    alice = lone_server.irc("alice")
    assert alice.join("#lobby")[-1] == f"{S} 366 alice #lobby :End of /NAMES list"
    assert alice.readline() == f"{prefix(bob.nick)} PRIVMSG #lobby :one"
    alice.sync()


def test_live_messages_carry_server_time_when_negotiated(server):
    alice, bob = in_lobby(server, "alice", caps=("server-time",))
    bob.say("now")
    assert re.fullmatch(rf"{TIME} {prefix(bob.nick)} PRIVMSG #lobby :now", alice.readline())


def test_a_long_line_client_message_reaches_irc_in_several_messages(server):
    alice, bob = in_lobby(server, "alice")
    text = "word " * 300
    bob.say(text)
    received = ""
    while len(received) < len(text.rstrip(" ")):
        line = alice.readline()
        assert len(line.encode()) + 2 <= 512
        received += line.split(" :", 1)[1]
    assert received == text


def test_echo_message_sends_a_sender_its_own_room_and_private_messages(server):
    alice, bob = in_lobby(server, "alice", caps=("echo-message",))
    alice.send_line("PRIVMSG #lobby :echoed", f"PRIVMSG {bob.nick} :me too")
    assert alice.readline() == f"{prefix('alice')} PRIVMSG #lobby :echoed"
    assert alice.readline() == f"{prefix('alice')} PRIVMSG {bob.nick} :me too"
    assert bob.read_lines(2) == ["<alice> echoed", "*alice* me too"]


# --- Topics, operators, kicks, bans ---------------------------------------------------------


def test_topic_set_on_irc_by_an_operator_reaches_line_clients(lone_server):
    alice, bob = in_lobby(lone_server, "alice")
    oper(alice)
    alice.send_line("TOPIC #lobby :news at ten")
    assert alice.readline() == f"{prefix('alice')} TOPIC #lobby :news at ten"
    assert bob.readline() == "*** topic for #lobby: news at ten"
    alice.send_line("TOPIC #lobby")
    assert alice.readline() == f"{S} 332 alice #lobby :news at ten"


def test_topic_set_by_a_line_operator_reaches_irc_and_greets_irc_joiners(lone_server):
    bob = operator(lone_server)
    alice = lone_server.irc("alice")
    alice.join("#lobby")
    bob.expect("*** alice joined #lobby")
    bob.say("/topic weekly sync")
    assert alice.readline() == f"{prefix(bob.nick)} TOPIC #lobby :weekly sync"
    carol = lone_server.irc("carol")
    lines = carol.join("#lobby")
    assert lines[1] == f"{S} 332 carol #lobby :weekly sync"


def test_topic_from_a_non_operator_is_482_and_no_topic_is_331(server):
    alice = server.irc("alice")
    alice.join("#room")
    alice.send_line("TOPIC #room :mine", "TOPIC #room")
    assert alice.readline() == f"{S} 482 alice #room :You're not channel operator"
    assert alice.readline() == f"{S} 331 alice #room :No topic is set"


def test_an_irc_operator_kicks_a_line_client_out_of_the_chat(server):
    alice, bob = in_lobby(server, "alice")
    oper(alice)
    alice.send_line(f"KICK #lobby {bob.nick} :behave")
    assert alice.readline() == f"{prefix('alice')} KICK #lobby {bob.nick} :behave"
    assert bob.readline() == f"*** {bob.nick} was kicked by alice (behave)"
    assert bob.read_to_eof() == b""


def test_a_line_operator_kicks_an_irc_client_out_of_the_chat(server):
    alice, bob = in_lobby(server, "alice")
    bob.say(f"/oper boss {OPER_PASSWORD}")
    bob.expect("*** You are now an operator")
    bob.say("/kick alice flooding")
    assert alice.readline() == f"{prefix(bob.nick)} KICK #lobby alice :flooding"
    assert alice.read_to_eof() == b""
    assert bob.readline() == f"*** alice was kicked by {bob.nick} (flooding)"


def test_kick_by_a_non_operator_is_482_and_of_someone_elsewhere_441(server):
    alice, bob = in_lobby(server, "alice")
    alice.send_line(f"KICK #lobby {bob.nick}")
    assert alice.readline() == f"{S} 482 alice #lobby :You're not channel operator"
    oper(alice)
    alice.join("#other")
    alice.send_line(f"KICK #other {bob.nick}", "KICK #other nobody")
    assert alice.readline() == f"{S} 441 alice {bob.nick} #other :They aren't on that channel"
    assert alice.readline() == f"{S} 401 alice nobody :No such nick/channel"


def test_a_banned_irc_address_is_kicked_and_refused_at_connect(lone_server):
    bob = operator(lone_server)
    alice = lone_server.irc_connect(source="127.0.0.2")
    alice.register("alice")
    alice.join("#lobby")
    bob.expect("*** alice joined #lobby")
    bob.say("/ban alice")
    assert alice.readline() == f"{prefix(bob.nick)} KICK #lobby alice :banned"
    assert alice.read_to_eof() == b""
    again = lone_server.irc_connect(source="127.0.0.2")
    assert again.read_to_eof() == b"ERROR :Closing link: you are banned from this server\r\n"


def test_oper_with_a_wrong_password_is_464(lone_server):
    alice = lone_server.irc("alice")
    alice.send_line("OPER boss wrong")
    assert alice.readline() == f"{S} 464 alice :Password incorrect"


def test_operators_are_shown_with_the_at_prefix(server):
    alice = server.irc("alice")
    oper(alice)
    alice.join("#room")
    bob = server.irc("bob")
    lines = bob.join("#room")
    assert f"{S} 353 bob = #room :@alice bob" in lines


# --- Queries -------------------------------------------------------------------------------


def test_names_lists_irc_and_line_members_sorted(server):
    alice, bob = in_lobby(server, "alice")
    alice.send_line("NAMES #lobby")
    names = sorted(["alice", bob.nick], key=str.lower)
    assert alice.read_lines(2) == [
        f"{S} 353 alice = #lobby :{' '.join(names)}",
        f"{S} 366 alice #lobby :End of /NAMES list",
    ]


def test_who_lists_a_rooms_members(server):
    alice, bob = in_lobby(server, "alice")
    alice.send_line("WHO #lobby")
    lines = alice.until(r" 315 ")
    assert f"{S} 352 alice #lobby alice 127.0.0.1 {IRC_SERVER} alice H :0 alice" in lines
    assert f"{S} 352 alice #lobby {bob.nick} 127.0.0.1 {IRC_SERVER} {bob.nick} H :0 {bob.nick}" in lines
    assert lines[-1] == f"{S} 315 alice #lobby :End of /WHO list"


def test_whois_a_line_client(server):
    alice, bob = in_lobby(server, "alice")
    alice.send_line(f"WHOIS {bob.nick}")
    assert alice.until(r" 318 ") == [
        f"{S} 311 alice {bob.nick} {bob.nick} 127.0.0.1 * :{bob.nick}",
        f"{S} 319 alice {bob.nick} :#lobby",
        f"{S} 312 alice {bob.nick} {IRC_SERVER} :gchat",
        f"{S} 318 alice {bob.nick} :End of /WHOIS list",
    ]


def test_whois_nobody_is_401_and_318(server):
    alice = server.irc("alice")
    alice.send_line("WHOIS nobody")
    assert alice.read_lines(2) == [
        f"{S} 401 alice nobody :No such nick/channel",
        f"{S} 318 alice nobody :End of /WHOIS list",
    ]


def test_list_shows_rooms_with_counts_and_topics(server):
    alice = server.irc("alice")
    alice.join("#dev")
    alice.send_line("LIST")
    assert alice.until(r" 323 ") == [
        f"{S} 321 alice Channel :Users  Name",
        f"{S} 322 alice #dev 1 :",
        f"{S} 322 alice #lobby 0 :",
        f"{S} 323 alice :End of /LIST",
    ]


def test_modes_are_answered_honestly(server):
    alice, bob = in_lobby(server, "alice")
    alice.send_line("MODE #lobby", "MODE #lobby b", "MODE #lobby +o alice", "MODE alice", "MODE alice +i")
    alice.send_line(f"MODE {bob.nick}", "MODE #nowhere")
    assert alice.read_lines(7) == [
        f"{S} 324 alice #lobby :+nt",
        f"{S} 368 alice #lobby :End of channel ban list",
        f"{S} 482 alice #lobby :You're not channel operator",
        f"{S} 221 alice :+",
        f"{S} 501 alice :Unknown MODE flag",
        f"{S} 502 alice :Cant change mode for other users",
        f"{S} 403 alice #nowhere :No such channel",
    ]


def test_mode_changes_by_an_operator_are_472(server):
    alice = server.irc("alice")
    oper(alice)
    alice.join("#room")
    alice.send_line("MODE #room +m", "MODE alice")
    assert alice.readline() == f"{S} 472 alice m :is not a mode this server lets you set"
    assert alice.readline() == f"{S} 221 alice :+o"


def test_away_is_told_to_senders_and_in_whois(server):
    alice = server.irc("alice")
    bob = server.irc("bob")
    alice.send_line("AWAY :at lunch")
    assert alice.readline() == f"{S} 306 alice :You have been marked as being away"
    bob.send_line("PRIVMSG alice :ping?")
    assert bob.readline() == f"{S} 301 bob alice :at lunch"
    assert alice.readline() == f"{prefix('bob')} PRIVMSG alice :ping?"
    alice.send_line("AWAY")
    assert alice.readline() == f"{S} 305 alice :You are no longer marked as being away"


def test_ison_and_userhost(server):
    alice, bob = in_lobby(server, "alice")
    alice.send_line(f"ISON {bob.nick.upper()} nobody alice", f"USERHOST alice {bob.nick}")
    assert alice.readline() == f"{S} 303 alice :{bob.nick} alice"
    assert alice.readline() == f"{S} 302 alice :alice=+alice@127.0.0.1 {bob.nick}=+{bob.nick}@127.0.0.1"


# --- Rooms and refusals ----------------------------------------------------------------------


def test_join_takes_a_comma_list_and_join_0_parts_them_all(server):
    alice = server.irc("alice")
    alice.send_line("JOIN #a,#B")
    assert alice.until(r" 366 ")[0] == f"{prefix('alice')} JOIN :#a"
    assert alice.until(r" 366 ")[0] == f"{prefix('alice')} JOIN :#b"
    alice.send_line("JOIN 0")
    assert alice.read_lines(2) == [f"{prefix('alice')} PART :#a", f"{prefix('alice')} PART :#b"]


def test_joining_a_room_already_joined_is_ignored(server):
    alice = server.irc("alice")
    alice.join("#a")
    alice.send_line("JOIN #a")
    alice.sync()


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        ("JOIN nohash", "403 alice nohash :No such channel"),
        ("JOIN #bad.name", "479 alice #bad.name :Illegal channel name"),
        ("PART #elsewhere", "442 alice #elsewhere :You're not on that channel"),
        ("PRIVMSG #elsewhere :hi", "404 alice #elsewhere :Cannot send to channel"),
        ("PRIVMSG nobody :hi", "401 alice nobody :No such nick/channel"),
        ("PRIVMSG alice", "412 alice :No text to send"),
        ("PRIVMSG", "411 alice :No recipient given"),
        ("NICK 1bad", "432 alice 1bad :Erroneous nickname"),
        ("NICK", "431 alice :No nickname given"),
    ],
)
def test_refusals_are_numerics(server, command, reply):
    alice = server.irc("alice")
    alice.send_line(command)
    assert alice.readline() == f"{S} {reply}"


def test_a_notice_is_never_answered_with_an_error(server):
    alice = server.irc("alice")
    alice.send_line("NOTICE nobody :hi", "NOTICE #elsewhere :hi")
    alice.sync()


def test_a_nick_held_by_a_line_client_is_433(server):
    alice, bob = in_lobby(server, "alice")
    alice.send_line(f"NICK {bob.nick}")
    assert alice.readline() == f"{S} 433 alice {bob.nick} :Nickname is already in use"


def test_more_rooms_than_chanlimit_is_405(server):
    alice = server.irc("alice")
    for n in range(20):
        alice.join(f"#r{n}")
    alice.send_line("JOIN #r20")
    assert alice.readline() == f"{S} 405 alice #r20 :You have joined too many channels"


def test_joins_over_the_address_budget_are_263(start_server):
    server = start_server("--rate", "0", "--irc-port", "0", "--join-burst", "1", "--join-rate", "0.001")
    alice = server.irc("alice")
    alice.join("#a")
    alice.send_line("JOIN #b")
    assert alice.readline() == f"{S} 263 alice JOIN :Too many joins from your address, try again later"


def test_private_messages_over_the_budget_are_263(start_server):
    server = start_server("--rate", "0", "--irc-port", "0", "--msg-burst", "1", "--msg-rate", "0.001")
    alice = server.irc("alice")
    bob = server.irc("bob")
    alice.send_line("PRIVMSG bob :one", "PRIVMSG bob :two")
    assert (
        alice.readline()
        == f"{S} 263 alice PRIVMSG :Too many messages to bob from your address, try again later"
    )
    assert bob.readline() == f"{prefix('alice')} PRIVMSG bob :one"


# --- Leaving ---------------------------------------------------------------------------------


def test_an_irc_client_that_stops_answering_pings_quits_its_rooms_with_idle_timeout(start_server):
    server = start_server("--rate", "0", "--irc-port", "0", "--idle-timeout", "3")
    bob = server.irc("bob")
    bob.join("#room")
    alice = server.irc("alice")
    alice.join("#room")
    assert bob.readline() == f"{prefix('alice')} JOIN :#room"
    # bob answers every PING; alice, whose socket is never read, answers none.
    while (line := bob.readline()) == f"PING :{IRC_SERVER}":
        bob.send_line(f"PONG :{IRC_SERVER}")
    assert line == f"{prefix('alice')} QUIT :idle timeout"


def test_an_irc_client_that_does_not_read_is_cut_off_as_a_slow_consumer_and_counted(start_server):
    server, port = start_metered(start_server, "--irc-port", "0", "--max-backlog", "65536")
    talker, listener = server.join(), server.join()
    stuck = small_window_socket(server.irc_address())  # never reads
    stuck.sendall(b"NICK stuck\r\nUSER s 0 * :s\r\nJOIN #lobby\r\n")
    listener.expect("*** stuck joined #lobby")
    # The kernel's buffers take a few MB before 64 KiB queue up in the server.
    for _ in range(8000):  # at most 32 MB
        talker.say(LINE)
        if listener.readline() == "*** stuck quit (slow consumer)":
            break
    else:
        raise AssertionError("the IRC client that never reads was not dropped")
    assert disconnects(scrape(port), "slow consumer") == 1
    stuck.close()


def test_an_irc_quit_is_counted_as_quit(start_server):
    server, port = start_metered(start_server, "--irc-port", "0")
    alice = server.irc("alice")
    alice.send_line("QUIT :whatever")
    alice.read_to_eof()  # the connection is counted as it leaves, before its FIN
    assert disconnects(scrape(port), "quit") == 1


def test_an_irc_client_that_hangs_up_quits_with_connection_closed(server):
    alice, bob = in_lobby(server, "alice")
    alice.close()
    assert bob.readline() == "*** alice quit (connection closed)"


def test_shutdown_tells_irc_clients_with_error(lone_server):
    alice, _ = in_lobby(lone_server, "alice")
    lone_server.signal(15)
    assert alice.read_to_eof() == b"ERROR :Server shutting down\r\n"


def test_the_line_protocol_is_unchanged_beside_irc(server):
    bob = server.join()
    bob.say(PING)
    assert bob.readline() == PONG
