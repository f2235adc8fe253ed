"""Issue 6: the server password, operators and moderation, over real sockets.

Clients that must differ by address connect from different loopback
addresses (127.0.0.2, 127.0.0.3, ...): a ban is by address.
"""

import re
import select
import time

import pytest
from conftest import NEEDS_PASSWORD, OPER_PASSWORD, SECRET, TIMEOUT, LineClient, knock, operator, run_gchat

from gchat.throttle import FIRST


@pytest.fixture
def locked(start_server, password_file):
    return start_server("--rate", "0", "--password-file", password_file)


@pytest.fixture
def moderated(start_server, oper_file):
    return start_server("--rate", "0", "--oper-file", oper_file)


# --- the server password ---------------------------------------------------------


def test_a_locked_server_asks_for_the_password_after_the_welcome(locked):
    client = knock(locked)
    client.say("/help")
    assert client.readline() == "!!! password required"


def test_the_right_password_gives_the_status_line_and_history(locked):
    talker = locked.connect()
    talker.expect("Welcome to the chatroom!", NEEDS_PASSWORD)
    talker.say(f"/pass {SECRET}", "earlier line")
    talker.expect("*** You are guest1 in #lobby. Type /help for commands.")
    talker.ping()
    newcomer = knock(locked)
    newcomer.say(f"/pass {SECRET}")
    newcomer.expect("*** You are guest2 in #lobby. Type /help for commands.", "<guest1> earlier line")


def test_before_the_password_a_client_is_in_no_room_and_shown_to_no_one(locked):
    member = knock(locked)
    member.say(f"/pass {SECRET}")
    member.readline()
    stranger = knock(locked)
    stranger.say("hello?", "/nick sneaky", "/who")
    assert stranger.read_lines(3) == ["!!! password required"] * 3
    member.say("/who")
    assert member.readline() == "*** users in #lobby (1): guest1"
    stranger.say(f"/pass {SECRET}")
    stranger.readline()
    assert member.readline() == "*** guest2 joined #lobby"


def test_a_wrong_password_is_refused_and_may_be_retried(locked):
    client = knock(locked)
    client.say("/pass guess")
    assert client.readline() == "!!! wrong password"
    client.say(f"/pass {SECRET}")
    assert client.readline() == "*** You are guest1 in #lobby. Type /help for commands."


def test_the_third_wrong_password_closes_the_connection(locked):
    client = knock(locked)
    client.say("/pass one", "/pass two", "/pass three")
    assert client.read_to_eof() == b"!!! wrong password\n" * 3


def test_quit_works_before_the_password(locked):
    client = knock(locked)
    client.say("/quit")
    assert client.read_to_eof() == b"*** Bye!\n"


def test_pass_after_being_let_in_says_so(locked):
    client = knock(locked)
    client.say(f"/pass {SECRET}")
    client.readline()
    client.say(f"/pass {SECRET}")
    assert client.readline() == "!!! password already accepted"


def test_a_client_gone_before_the_password_frees_its_place(start_server, password_file):
    server = start_server("--rate", "0", "--password-file", password_file, "--max-clients", "1")
    gone = knock(server)
    gone.say("/pass wrong", "/pass wrong", "/pass wrong")
    gone.read_to_eof()  # the place is free before the server closes
    client = knock(server)
    client.say(f"/pass {SECRET}")
    assert client.readline() == "*** You are guest1 in #lobby. Type /help for commands."


def test_a_missing_password_file_is_one_line_and_a_nonzero_exit(tmp_path):
    status, _, errors = run_gchat("--password-file", str(tmp_path / "nope"))
    assert status == 1
    assert errors == [f"gchat: --password-file {tmp_path / 'nope'}: No such file or directory"]


# --- operators -----------------------------------------------------------------


def test_hash_password_makes_an_scrypt_hash_and_never_the_password(oper_hash):
    assert oper_hash.startswith("scrypt$16384$8$1$")
    assert OPER_PASSWORD not in oper_hash


def test_oper_with_the_right_password_makes_an_operator(moderated):
    operator(moderated)


@pytest.mark.parametrize("line", [f"/oper boss {OPER_PASSWORD}x", f"/oper nobody {OPER_PASSWORD}"])
def test_oper_with_a_wrong_name_or_password_is_refused(moderated, line):
    client = moderated.join()
    client.say(line)
    assert client.readline() == "!!! wrong operator name or password"


def test_without_an_oper_file_no_one_can_become_operator(server):
    client = server.join()
    client.say(f"/oper boss {OPER_PASSWORD}")
    assert client.readline() == "!!! wrong operator name or password"


@pytest.mark.parametrize("line", ["/kick guest1", "/ban guest1", "/unban 127.0.0.1", "/topic hello"])
def test_moderation_by_a_non_operator_is_denied(moderated, line):
    client = moderated.join()
    client.say(line)
    assert client.readline() == "!!! permission denied"


def test_a_bad_operator_file_is_one_line_and_a_nonzero_exit(tmp_path):
    path = tmp_path / "opers"
    path.write_text("boss:plaintext\n")
    status, _, errors = run_gchat("--oper-file", str(path))
    assert status == 1
    assert len(errors) == 1
    assert errors[0].startswith(f"gchat: --oper-file {path}: line 1: not a password hash")


# --- /kick, /ban, /unban --------------------------------------------------------


def test_kick_tells_the_room_and_the_target_then_disconnects_it(moderated):
    boss = operator(moderated)
    target = moderated.join()
    watcher = moderated.join()
    boss.say(f"/kick {target.nick} flooding")
    notice = f"*** {target.nick} was kicked by {boss.nick} (flooding)"
    assert target.read_to_eof() == (notice + "\n").encode()
    boss.expect(notice)
    watcher.expect(notice)
    watcher.say("/who")
    assert watcher.readline() == f"*** users in #lobby (2): {boss.nick}, {watcher.nick}"


def test_kick_without_a_reason_says_none_was_given(moderated):
    boss = operator(moderated)
    target = moderated.join()
    boss.say(f"/kick {target.nick}")
    assert boss.readline() == f"*** {target.nick} was kicked by {boss.nick} (no reason given)"


def test_a_kick_from_another_room_is_shown_to_the_operator(moderated):
    boss = operator(moderated)
    target = moderated.join()
    boss.say("/join #ops")
    boss.expect("*** You are now in #ops (1 user)")
    boss.say(f"/kick {target.nick} bye")
    assert boss.readline() == f"*** {target.nick} was kicked by {boss.nick} (bye)"


def test_kick_of_an_unknown_nick_is_no_such_user(moderated):
    boss = operator(moderated)
    boss.say("/kick ghost")
    assert boss.readline() == "!!! no such user: ghost"


def test_ban_kicks_everyone_from_the_address_and_refuses_it_from_then_on(moderated):
    boss = operator(moderated, "127.0.0.2")
    target = moderated.join("127.0.0.3")
    sibling = moderated.join("127.0.0.3")
    bystander = moderated.join("127.0.0.4")
    boss.say(f"/ban {target.nick}")
    for kicked in (target, sibling):
        assert f"was kicked by {boss.nick} (banned)" in kicked.read_to_eof().decode()
    assert bystander.read_lines(2) == [
        f"*** {target.nick} was kicked by {boss.nick} (banned)",
        f"*** {sibling.nick} was kicked by {boss.nick} (banned)",
    ]
    assert boss.read_until("*** banned 127.0.0.3")[-1] == "*** banned 127.0.0.3"
    refused = moderated.connect(source="127.0.0.3")
    assert refused.read_to_eof() == b"!!! you are banned from this server\n"


def test_unban_lets_the_address_back_in(moderated):
    boss = operator(moderated, "127.0.0.2")
    target = moderated.join("127.0.0.3")
    boss.say(f"/ban {target.nick}")
    boss.read_until("*** banned 127.0.0.3")
    boss.say("/unban 127.0.0.3")
    assert boss.readline() == "*** unbanned 127.0.0.3"
    again = moderated.connect(source="127.0.0.3")
    assert again.readline() == "Welcome to the chatroom!"


def test_a_ban_falls_on_the_source_network_of_the_address(start_server, oper_file):
    """--ipv4-prefix 24 here stands for IPv6's default /64 (this machine has one IPv6 address)."""
    server = start_server("--rate", "0", "--oper-file", oper_file, "--ipv4-prefix", "24")
    boss = operator(server, "127.0.1.2")
    target = server.join("127.0.0.3")
    boss.say(f"/ban {target.nick}")
    assert boss.read_until("*** banned 127.0.0.0/24")[-1] == "*** banned 127.0.0.0/24"
    assert f"was kicked by {boss.nick} (banned)" in target.read_to_eof().decode()
    server.clients.remove(target)
    refused = server.connect(source="127.0.0.4")
    assert refused.read_to_eof() == b"!!! you are banned from this server\n"
    server.clients.remove(refused)
    boss.say("/unban 127.0.0.4")
    assert boss.readline() == "*** unbanned 127.0.0.0/24"
    server.join("127.0.0.4").ping()


def test_unban_of_an_address_not_banned_says_so(moderated):
    boss = operator(moderated)
    boss.say("/unban 10.1.2.3")
    assert boss.readline() == "!!! not banned: 10.1.2.3"


# --- /topic ----------------------------------------------------------------------


def test_topic_is_none_until_set(server):
    client = server.join()
    client.say("/topic")
    assert client.readline() == "*** no topic for #lobby"


def test_setting_the_topic_tells_the_room(moderated):
    boss = operator(moderated)
    member = moderated.join()
    boss.say("/topic Be excellent to each other")
    line = "*** topic for #lobby: Be excellent to each other"
    assert boss.readline() == line
    assert member.readline() == line
    member.say("/topic")
    assert member.readline() == line


def test_a_newcomer_sees_the_topic_after_its_status_line_and_before_history(moderated):
    boss = operator(moderated)
    boss.say("/topic news at ten", "said before")
    boss.expect("*** topic for #lobby: news at ten")
    boss.ping()
    client = moderated.connect()
    assert client.read_lines(4) == [
        "Welcome to the chatroom!",
        "*** You are guest2 in #lobby. Type /help for commands.",
        "*** topic for #lobby: news at ten",
        "<guest1> said before",
    ]


def test_joining_a_room_shows_its_topic_and_an_emptied_room_forgets_it(moderated):
    boss = operator(moderated)
    member = moderated.join()
    boss.say("/join #dev", "/topic dev talk")
    boss.expect("*** You are now in #dev (1 user)", "*** topic for #dev: dev talk")
    member.say("/join #dev")
    member.expect(
        f"*** {boss.nick} left #lobby", "*** You are now in #dev (2 users)", "*** topic for #dev: dev talk"
    )
    boss.say("/join #lobby")
    member.expect(f"*** {boss.nick} left #dev")
    member.say("/join #lobby", "/join #dev", "/topic")
    member.read_until("*** You are now in #dev (1 user)")
    assert member.readline() == "*** no topic for #dev"


def test_a_kicked_client_that_keeps_its_socket_open_frees_its_place(start_server, oper_file):
    server = start_server("--rate", "0", "--oper-file", oper_file, "--max-clients", "2")
    boss = operator(server)
    target = server.join()
    boss.say(f"/kick {target.nick}")
    boss.readline()
    target.read_to_eof()  # the server closed it; the test keeps its end open
    newcomer = server.connect()
    assert newcomer.readline() == "Welcome to the chatroom!"


# --- issue 10: bans at the password prompt, address forms, own address -----------


@pytest.fixture
def locked_and_moderated(start_server, password_file, oper_file):
    return start_server("--rate", "0", "--password-file", password_file, "--oper-file", oper_file)


def enter(server, source):
    """A client past the password prompt, its nick known."""
    client = knock(server, source)
    client.say(f"/pass {SECRET}")
    match = re.fullmatch(r"\*\*\* You are (\S+) in #lobby\. Type /help for commands\.", client.readline())
    assert match, "bad status line"
    client.nick = match.group(1)
    return client


def test_a_ban_closes_the_address_connections_still_at_the_password_prompt(locked_and_moderated):
    server = locked_and_moderated
    boss = enter(server, "127.0.0.2")
    boss.say(f"/oper boss {OPER_PASSWORD}")
    boss.expect("*** You are now an operator")
    target = enter(server, "127.0.0.3")
    waiting = knock(server, "127.0.0.3")
    boss.say(f"/ban {target.nick}")
    boss.read_until("*** banned 127.0.0.3")
    assert waiting.read_to_eof() == b"!!! you are banned from this server\n"
    waiting_elsewhere = knock(server, "127.0.0.4")
    waiting_elsewhere.say(f"/pass {SECRET}")
    assert waiting_elsewhere.readline().startswith("*** You are ")


def dual_stack_client(server, source):
    """An IPv4 client of a server listening on ``::``: the server sees ``::ffff:SOURCE``."""
    client = LineClient(("127.0.0.1", server.port), TIMEOUT, None, source)
    server.clients.append(client)
    client.expect("Welcome to the chatroom!")
    match = re.fullmatch(r"\*\*\* You are (\S+) in #lobby\. Type /help for commands\.", client.readline())
    assert match, "bad status line"
    client.nick = match.group(1)
    return client


@pytest.mark.parametrize("typed", ["127.0.0.3", "::ffff:127.0.0.3", "0:0:0:0:0:ffff:7f00:3"])
def test_a_mapped_ipv4_client_is_banned_and_unbanned_by_either_form(start_server, oper_file, typed):
    server = start_server("--rate", "0", "--host", "::", "--oper-file", oper_file)
    boss = dual_stack_client(server, "127.0.0.2")
    boss.say(f"/oper boss {OPER_PASSWORD}")
    boss.expect("*** You are now an operator")
    target = dual_stack_client(server, "127.0.0.3")
    boss.say(f"/ban {target.nick}")
    assert boss.read_until("*** banned 127.0.0.3")[-1] == "*** banned 127.0.0.3"
    boss.say(f"/unban {typed}")
    assert boss.readline() == "*** unbanned 127.0.0.3"
    assert dual_stack_client(server, "127.0.0.3").nick


def test_an_operator_cannot_ban_its_own_address(moderated):
    boss = operator(moderated, "127.0.0.2")
    neighbour = moderated.join("127.0.0.2")
    boss.say(f"/ban {neighbour.nick}")
    assert boss.readline() == "!!! cannot ban your own address: 127.0.0.2"
    neighbour.ping()
    boss.say("/who")
    assert boss.readline() == f"*** users in #lobby (2): {boss.nick}, {neighbour.nick}"


# --- issue 10: password and /oper guessing --------------------------------------


def test_wrong_passwords_from_one_address_are_checked_in_single_file(locked):
    guessers = [knock(locked, "127.0.0.5") for _ in range(3)]
    started = time.monotonic()
    for guesser in guessers:
        guesser.say("/pass wrong")
    for guesser in guessers:
        assert guesser.readline() == "!!! wrong password"
    # Pauses of FIRST, then 2 * FIRST, between the three checks: a lower bound, safe under load.
    assert time.monotonic() - started >= 3 * FIRST
    locked.wait_for_log(r"127\.0\.0\.5:\d+ wrong password; next try from 127\.0\.0\.5 checked in", count=3)


def test_a_right_password_from_another_address_does_not_wait_for_a_guessers_pause(locked):
    guessers = [knock(locked, "127.0.0.5") for _ in range(3)]
    fresh = knock(locked, "127.0.0.6")
    for guesser in guessers:
        guesser.say("/pass wrong")
    guessers[0].readline()  # the first wrong try from an address is answered at once
    fresh.say(f"/pass {SECRET}")
    assert fresh.readline().startswith("*** You are ")


def test_a_right_password_from_a_guessers_address_is_let_in_while_its_guesses_wait(locked):
    # Six wrong tries: the last answered is answered only 0.5 + 1 + 2 + 4 + 8 s after the first.
    guessers = [knock(locked, "127.0.0.5") for _ in range(6)]
    insider = knock(locked, "127.0.0.5")  # behind the same NAT, knowing the password
    for guesser in guessers:
        guesser.say("/pass wrong")
    # One of them (which one is not promised) is answered at once: the address is now waiting.
    answered, _, _ = select.select([guesser.sock for guesser in guessers], [], [], TIMEOUT)
    assert answered, "no wrong password was answered"
    insider.say(f"/pass {SECRET}")
    assert insider.readline().startswith("*** You are ")
    waiting, _, _ = select.select([guesser.sock for guesser in guessers], [], [], 0)
    assert len(waiting) < len(guessers), "the insider was let in only after every guess was answered"


def test_a_connection_gets_three_oper_tries_then_is_refused_unchecked(moderated):
    client = moderated.join("127.0.0.7")
    client.say("/oper boss one", "/oper boss two", "/oper nobody three", f"/oper boss {OPER_PASSWORD}")
    assert client.read_lines(4) == ["!!! wrong operator name or password"] * 3 + [
        "!!! no more /oper tries on this connection"
    ]
    for name, count in (("boss", 2), ("nobody", 1)):
        moderated.wait_for_log(
            rf"127\.0\.0\.7 wrong /oper for '{name}'; next try from it checked in", count=count
        )


def test_many_concurrent_oper_tries_leave_the_chat_responsive(moderated):
    bystander = moderated.join("127.0.0.8")
    bystander.say("/join #calm")
    bystander.expect("*** You are now in #calm (1 user)")
    guessers = [moderated.connect(source=f"127.0.1.{n}") for n in range(1, 21)]
    for guesser in guessers:
        guesser.say("/oper boss wrong", "/oper intruder wrong")
    for _ in range(5):
        bystander.ping()
    for guesser in guessers:
        guesser.read_until("!!! wrong operator name or password")
        guesser.read_until("!!! wrong operator name or password")
    # The log reaches the test through a pipe, after the replies: wait for each line.
    for n in range(1, 21):
        for name in ("boss", "intruder"):
            moderated.wait_for_log(rf" 127\.0\.1\.{n} wrong /oper for '{name}'; next try from it checked in")
    assert len([line for line in moderated.log if " wrong /oper for " in line]) == 40


# --- issue 10: rough edges -------------------------------------------------------


def test_pass_on_a_server_without_a_password_says_none_is_needed(server):
    client = server.join()
    client.say("/pass anything")
    assert client.readline() == "!!! no password needed"


def test_a_client_let_in_by_the_password_sees_the_topic_after_its_status_line(locked_and_moderated):
    server = locked_and_moderated
    boss = enter(server, "127.0.0.2")
    boss.say(f"/oper boss {OPER_PASSWORD}", "/topic members only")
    boss.expect("*** You are now an operator", "*** topic for #lobby: members only")
    newcomer = knock(server)
    newcomer.say(f"/pass {SECRET}")
    newcomer.expect(
        "*** You are guest2 in #lobby. Type /help for commands.", "*** topic for #lobby: members only"
    )
    newcomer.ping()  # and nothing else before it
