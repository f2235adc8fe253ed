"""IRC clients on --irc-port: registration, CAP, PASS, limits, PING/PONG, QUIT, over real sockets."""

import pytest
from conftest import IRC_SERVER, SHARED_FLAGS, TIMEOUT, run_gchat, shared

S = f":{IRC_SERVER}"
CAPS = (
    "batch cap-notify draft/chathistory echo-message message-tags multi-prefix server-time userhost-in-names"
)


@pytest.fixture(scope="module")
def module_irc_server(start_module_server):
    return start_module_server("--rate", "0", "--irc-port", "0", *SHARED_FLAGS)


@pytest.fixture
def irc_server(module_irc_server):
    """The module's IRC server, shared by the tests that need no server of their own."""
    yield from shared(module_irc_server)


# Registration


def test_registration_is_welcomed_with_001_to_005_lusers_and_no_motd(irc_server):
    lines = irc_server.irc_connect().register("alice")
    assert lines[0] == f"{S} 001 alice :Welcome to the gchat IRC network, alice!alice@127.0.0.1"
    assert [line.split()[1] for line in lines] == [
        "001",
        "002",
        "003",
        "004",
        "005",
        "251",
        "254",
        "255",
        "422",
    ]
    assert lines[-1] == f"{S} 422 alice :MOTD File is missing"


def test_isupport_says_what_the_chat_allows(irc_server):
    isupport = irc_server.irc_connect().register("alice")[4].split(" :")[0].split()[3:]
    for token in (
        "CASEMAPPING=ascii",
        "CHANTYPES=#",
        "CHANLIMIT=#:20",
        "NICKLEN=24",
        "CHANNELLEN=33",
        "TOPICLEN=300",
        "PREFIX=(o)@",
        "CHANMODES=,,,nt",
        "NETWORK=gchat",
        "LINELEN=512",
        "UTF8ONLY",
    ):
        assert token in isupport


def test_the_line_port_still_speaks_the_line_protocol(irc_server):
    irc_server.irc("alice")
    client = irc_server.join()
    client.ping()


def test_commands_before_registration_get_451(irc_server):
    client = irc_server.irc_connect()
    client.send_line("JOIN #a", "PRIVMSG #a :hi")
    assert client.readline() == f"{S} 451 * :You have not registered"
    assert client.readline() == f"{S} 451 * :You have not registered"


@pytest.mark.parametrize("nick", ["9lives", "a" * 25, "dot.nick", "[bracket]", "ünï"])
def test_a_nick_the_line_protocol_refuses_is_432(irc_server, nick):
    client = irc_server.irc_connect()
    client.send_line(f"NICK {nick}")
    assert client.readline() == f"{S} 432 * {nick} :Erroneous nickname"


def test_a_nick_taken_by_a_line_client_is_433_ignoring_case(irc_server):
    line = irc_server.join()
    client = irc_server.irc_connect()
    client.send_line(f"NICK {line.nick.upper()}")
    assert client.readline() == f"{S} 433 * {line.nick.upper()} :Nickname is already in use"


def test_a_nick_refused_at_registration_can_be_replaced(irc_server):
    irc_server.irc("taken")
    client = irc_server.irc_connect()
    client.send_line("NICK taken", "USER u 0 * :r")
    assert client.readline() == f"{S} 433 * taken :Nickname is already in use"
    client.send_line("NICK free")
    assert client.readline().startswith(f"{S} 001 free ")


def test_cap_negotiation_holds_registration_until_cap_end(irc_server):
    client = irc_server.irc_connect()
    client.send_line("CAP LS 302", "NICK alice", "USER alice 0 * :A")
    assert client.readline() == f"{S} CAP * LS :{CAPS}"
    client.sync()
    client.send_line("CAP REQ :server-time echo-message", "CAP END")
    assert client.readline() == f"{S} CAP alice ACK :server-time echo-message"
    assert client.readline().startswith(f"{S} 001 alice ")


def test_cap_req_with_an_unknown_cap_is_nakd(irc_server):
    client = irc_server.irc_connect()
    client.send_line("CAP REQ :server-time sasl")
    assert client.readline() == f"{S} CAP * NAK :server-time sasl"


def test_cap_list_after_registration_shows_the_caps(irc_server):
    client = irc_server.irc("alice", caps=("server-time", "batch"))
    client.send_line("CAP LIST")
    assert client.readline() == f"{S} CAP alice LIST :batch cap-notify server-time"


def test_user_and_pass_after_registration_are_462(irc_server):
    client = irc_server.irc("alice")
    client.send_line("USER a 0 * :b", "PASS x")
    assert client.readline() == f"{S} 462 alice :You may not reregister"
    assert client.readline() == f"{S} 462 alice :You may not reregister"


def test_unknown_command_is_421(irc_server):
    client = irc_server.irc("alice")
    client.send_line("FROBNICATE now")
    assert client.readline() == f"{S} 421 alice FROBNICATE :Unknown command"


def test_missing_parameters_are_461(irc_server):
    client = irc_server.irc("alice")
    client.send_line("KICK #a")
    assert client.readline() == f"{S} 461 alice KICK :Not enough parameters"


# Password


@pytest.fixture
def locked_server(start_server, tmp_path):
    secret = tmp_path / "password"
    secret.write_text("sesame\n")
    return start_server("--rate", "0", "--irc-port", "0", "--password-file", str(secret))


def test_the_right_pass_registers(locked_server):
    client = locked_server.irc_connect()
    client.register("alice", password="sesame")


def test_a_wrong_pass_is_464_then_error_and_close(locked_server):
    client = locked_server.irc_connect()
    client.send_line("PASS nope", "NICK alice", "USER alice 0 * :A")
    assert client.readline() == f"{S} 464 alice :Password incorrect"
    assert client.readline() == "ERROR :Closing link: wrong password"
    assert client.read_to_eof() == b""


def test_no_pass_on_a_locked_server_is_464(locked_server):
    client = locked_server.irc_connect()
    client.send_line("NICK alice", "USER alice 0 * :A")
    assert client.readline() == f"{S} 464 alice :Password incorrect"


# Limits


def test_a_line_over_512_bytes_is_417_and_the_next_line_works(irc_server):
    client = irc_server.irc("alice")
    client.send_line("PRIVMSG alice :" + "x" * 500)
    assert client.readline() == f"{S} 417 alice :Input line was too long"
    client.sync()


def test_a_message_too_long_to_relay_in_one_line_is_417_and_not_relayed(irc_server):
    alice = irc_server.irc("alice")
    bob = irc_server.irc("bob")
    alice.join("#room")
    bob.join("#room")
    assert alice.readline() == ":bob!bob@127.0.0.1 JOIN :#room"
    # 510 bytes in: within the limit, but with the sender's prefix it would not fit 512 out.
    bob.send_line("PRIVMSG #room :" + "x" * (510 - len("PRIVMSG #room :")))
    assert bob.readline() == f"{S} 417 bob :Input line was too long"
    bob.send_line("PRIVMSG #room :fits")
    assert alice.readline() == ":bob!bob@127.0.0.1 PRIVMSG #room :fits"


def test_invalid_utf8_is_warned_and_relayed_with_replacement_characters(irc_server):
    alice = irc_server.irc("alice")
    line = irc_server.join()
    alice.join("#lobby")
    line.expect("*** alice joined #lobby")
    alice.send(b"PRIVMSG #lobby :caf\xe9\r\n")
    assert alice.readline() == f"{S} WARN PRIVMSG INVALID_UTF8 :Invalid UTF-8 was replaced with U+FFFD"
    assert line.readline() == "<alice> caf\ufffd"


def test_tags_over_4094_bytes_are_417(irc_server):
    client = irc_server.irc("alice")
    client.send_line("@+a=" + "x" * 4092 + " PING :x")
    assert client.readline() == f"{S} 417 alice :Input line was too long"
    client.sync()


def test_a_line_over_every_limit_is_417_once_and_the_next_line_works(irc_server):
    client = irc_server.irc("alice")
    client.send_line("@a=" + "x" * 10000 + " PING :x")
    assert client.readline() == f"{S} 417 alice :Input line was too long"
    client.sync()


def test_the_places_under_max_per_ip_are_shared_with_line_clients(start_server):
    server = start_server("--rate", "0", "--irc-port", "0", "--max-per-ip", "1")
    server.join()
    refused = server.irc_connect()
    assert refused.read_to_eof() == b"ERROR :Closing link: too many connections from your address\r\n"


def test_the_connect_budget_is_shared_with_line_clients(start_server):
    budget = ("--connect-burst", "1", "--connect-rate", "0.0001")
    server = start_server("--rate", "0", "--irc-port", "0", *budget)
    server.join()
    refused = server.irc_connect()
    expected = b"ERROR :Closing link: connecting too fast from your address, try again later\r\n"
    assert refused.read_to_eof() == expected


def test_max_clients_counts_irc_clients(start_server):
    server = start_server("--rate", "0", "--irc-port", "0", "--max-clients", "1")
    server.irc("alice")
    refused = server.connect()
    assert refused.read_to_eof() == b"!!! server full, try again later\n"


# PING, PONG, idle


def test_ping_is_answered_with_pong(irc_server):
    client = irc_server.irc("alice")
    client.send_line("PING :are you there")
    assert client.readline() == f"{S} PONG {IRC_SERVER} :are you there"


def test_a_silent_client_is_pinged_and_stays_while_it_answers(start_server):
    server = start_server("--rate", "0", "--irc-port", "0", "--idle-timeout", "3")
    client = server.irc("alice")
    for _ in range(2):
        assert client.readline(timeout=TIMEOUT) == f"PING :{IRC_SERVER}"
        client.send_line(f"PONG :{IRC_SERVER}")
    client.sync()


def test_a_client_that_does_not_answer_ping_is_dropped(start_server):
    server = start_server("--rate", "0", "--irc-port", "0", "--idle-timeout", "1")
    client = server.irc("alice")
    assert client.readline() == f"PING :{IRC_SERVER}"
    assert client.read_to_eof() == b"ERROR :Closing link: idle timeout\r\n"


# QUIT


def test_quit_is_answered_with_error_and_a_close(irc_server):
    client = irc_server.irc("alice")
    client.send_line("QUIT :gone fishing")
    assert client.read_to_eof() == b"ERROR :Bye!\r\n"


def test_quit_before_registration_closes(irc_server):
    client = irc_server.irc_connect()
    client.send_line("QUIT")
    assert client.read_to_eof() == b"ERROR :Bye!\r\n"


# TLS and the command line


def test_ircs_port_needs_a_certificate():
    status, _, errors = run_gchat("--ircs-port", "6697")
    assert status == 2
    assert errors == ["gchat: error: --ircs-port needs --certfile and --keyfile"]


def test_irc_port_in_use_is_one_line(irc_server):
    _, port = irc_server.irc_address()
    status, _, errors = run_gchat("--port", "0", "--irc-port", str(port))
    assert status == 1
    assert errors == [f"gchat: cannot listen on 127.0.0.1:{port}: Address already in use"]


def test_irc_clients_see_each_other_in_a_room(irc_server):
    alice = irc_server.irc("alice")
    bob = irc_server.irc("bob")
    alice.join("#room")
    bob.join("#room")
    assert alice.readline() == ":bob!bob@127.0.0.1 JOIN :#room"
    bob.send_line("PRIVMSG #room :hello alice")
    assert alice.readline() == ":bob!bob@127.0.0.1 PRIVMSG #room :hello alice"
