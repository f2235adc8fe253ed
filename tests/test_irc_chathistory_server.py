"""CHATHISTORY against a real ``python -m gchat --irc-port``: each subcommand, limits, refusals,
with the room's own history, with ``--store`` (across a restart) and with ``--bus``.

Each test talks over real sockets; waits end on the server's replies (an echo, a batch's end,
a PING's PONG).
"""

import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import IRC_SERVER, ChatServer, IrcClient, shared

from gchat.irc.chathistory import MAX_LIMIT, timestamp

S = f":{IRC_SERVER}"
CAPS = ("batch", "server-time", "echo-message", "draft/chathistory")
ROOM = "#dev"
_LINE = re.compile(r"@time=([^;\s]+)(?:;batch=history)? :(\S+) PRIVMSG (\S+) :(.*)")


@pytest.fixture(scope="module")
def module_server(start_module_server) -> ChatServer:
    # A room's history goes with the room once it is empty, so it can stay on here; the
    # /join budget of an address, which every test shares, is off (conftest's shared).
    return start_module_server("--rate", "0", "--irc-port", "0", "--join-rate", "0", "--history", "200")


@pytest.fixture
def server(module_server: ChatServer) -> Iterator[ChatServer]:
    """The module's server, shared by the tests that need no server of their own."""
    yield from shared(module_server)


def in_room(server: ChatServer, nick: str = "alice", caps: "tuple[str, ...]" = CAPS) -> IrcClient:
    client = server.irc(nick, caps)
    client.join(ROOM)
    return client


def said(client: IrcClient, count: int) -> "list[tuple[str, str]]":
    """``count`` lines said to the room, each in a later millisecond than the one before
    (the server stamps a line when it takes it, on this machine's clock): (time, text) each,
    as the echo showed them."""
    lines: list[tuple[str, str]] = []
    for number in range(count):
        if lines:
            shown = timestamp("timestamp=" + lines[-1][0])
            assert shown is not None
            while time.time() * 1000 < shown + 1:
                time.sleep(0.0005)  # until the clock has left the last line's millisecond
        client.send_line(f"PRIVMSG {ROOM} :line {number}")
        match = _LINE.fullmatch(client.readline())
        assert match, "not an echo"
        lines.append((match.group(1), match.group(4)))
    return lines


def ask(client: IrcClient, request: str, room: str = ROOM) -> "list[tuple[str, str]]":
    """``CHATHISTORY request``'s lines, checking its batch: (time, text) each."""
    client.send_line(f"CHATHISTORY {request}")
    assert client.readline() == f"{S} BATCH +history chathistory :{room}"
    found = []
    for line in client.until(r"^:\S+ BATCH :-history$")[:-1]:
        match = _LINE.fullmatch(line)
        assert match, line
        assert ";batch=history " in line
        found.append((match.group(1), match.group(4)))
    return found


def ref(lines: "list[tuple[str, str]]", index: int) -> str:
    return "timestamp=" + lines[index][0]


# --- subcommands ---------------------------------------------------------------------------


def test_latest_gives_the_newest_lines_oldest_first_in_a_chathistory_batch(server):
    alice = in_room(server)
    lines = said(alice, 5)
    assert ask(alice, f"LATEST {ROOM} * 3") == lines[2:]
    assert ask(alice, f"LATEST {ROOM} * 50") == lines


def test_latest_after_a_timestamp_gives_the_newest_lines_shown_later(server):
    alice = in_room(server)
    lines = said(alice, 6)
    assert ask(alice, f"LATEST {ROOM} {ref(lines, 2)} 50") == lines[3:]
    assert ask(alice, f"LATEST {ROOM} {ref(lines, 2)} 2") == lines[4:]


def test_before_gives_the_newest_lines_shown_earlier_than_a_timestamp(server):
    alice = in_room(server)
    lines = said(alice, 8)
    assert ask(alice, f"BEFORE {ROOM} {ref(lines, 6)} 50") == lines[:6]
    assert ask(alice, f"BEFORE {ROOM} {ref(lines, 6)} 2") == lines[4:6]


def test_after_gives_the_oldest_lines_shown_later_than_a_timestamp(server):
    alice = in_room(server)
    lines = said(alice, 8)
    assert ask(alice, f"AFTER {ROOM} {ref(lines, 3)} 50") == lines[4:]
    assert ask(alice, f"AFTER {ROOM} {ref(lines, 3)} 3") == lines[4:7]


def test_around_gives_the_older_half_then_the_line_at_the_timestamp_and_after(server):
    alice = in_room(server)
    lines = said(alice, 10)
    assert ask(alice, f"AROUND {ROOM} {ref(lines, 7)} 1") == [lines[7]]
    assert ask(alice, f"AROUND {ROOM} {ref(lines, 7)} 3") == lines[6:9]
    assert ask(alice, f"AROUND {ROOM} {ref(lines, 2)} 9") == lines[:9]


def test_between_leaves_out_both_ends_and_reads_from_the_first_towards_the_second(server):
    alice = in_room(server)
    lines = said(alice, 10)
    first, last = ref(lines, 0), ref(lines, -1)
    assert ask(alice, f"BETWEEN {ROOM} {first} {last} 50") == lines[1:-1]
    assert ask(alice, f"BETWEEN {ROOM} {last} {first} 50") == lines[1:-1]
    assert ask(alice, f"BETWEEN {ROOM} {first} {last} 3") == lines[1:4]
    assert ask(alice, f"BETWEEN {ROOM} {last} {first} 3") == lines[-4:-1]


def test_targets_lists_the_clients_rooms_by_their_latest_line_oldest_first(server):
    alice = in_room(server)
    alice.join("#ops")
    alice.join("#quiet")
    dev = said(alice, 1)
    while time.time() * 1000 < (timestamp("timestamp=" + dev[0][0]) or 0) + 1:
        time.sleep(0.0005)  # until the clock has left the #dev line's millisecond
    alice.send_line("PRIVMSG #ops :ops line")
    ops = _LINE.fullmatch(alice.readline())
    assert ops
    alice.send_line(
        "CHATHISTORY TARGETS timestamp=2020-01-01T00:00:00.000Z timestamp=2262-01-01T00:00:00.000Z 10"
    )
    assert alice.until(r"^:\S+ BATCH :-targets$") == [
        f"{S} BATCH +targets :draft/chathistory-targets",
        f"@batch=targets {S} CHATHISTORY TARGETS {ROOM} :{dev[0][0]}",
        f"@batch=targets {S} CHATHISTORY TARGETS #ops :{ops.group(1)}",
        f"{S} BATCH :-targets",
    ]
    alice.send_line(f"CHATHISTORY TARGETS timestamp={dev[0][0]} timestamp=2262-01-01T00:00:00.000Z 10")
    assert alice.until(r"^:\S+ BATCH :-targets$")[1:-1] == [
        f"@batch=targets {S} CHATHISTORY TARGETS #ops :{ops.group(1)}"
    ]


def test_a_client_that_asks_for_history_gets_none_replayed_on_join_and_others_do(server):
    alice = in_room(server)
    lines = said(alice, 2)
    bob = server.irc("bob", CAPS)
    assert bob.join(ROOM)[-1] == f"{S} 366 bob {ROOM} :End of /NAMES list"
    bob.sync()
    carol = server.irc("carol", ("batch", "server-time"))
    carol.join(ROOM)
    assert carol.readline() == f"{S} BATCH +history chathistory :{ROOM}"
    assert [_LINE.fullmatch(carol.readline()).group(4) for _ in lines] == [text for _, text in lines]


# --- limits and what is advertised ------------------------------------------------------------


def test_cap_and_isupport_advertise_chathistory_its_maximum_and_timestamps(server):
    client = server.irc_connect()
    client.send_line("CAP LS 302")
    assert "draft/chathistory" in client.readline().split(":")[-1].split()
    client.send_line("NICK alice", "USER alice 0 * :alice", "CAP END")
    isupport = next(line for line in client.until(r" 422 ") if " 005 " in line)
    assert f" CHATHISTORY={MAX_LIMIT} MSGREFTYPES=timestamp " in isupport


def test_a_limit_over_the_advertised_maximum_gets_the_maximum(server):
    line = server.join()
    line.say(f"/join {ROOM}")
    line.readline()
    alice = in_room(server)
    line.say(*(f"line {number}" for number in range(MAX_LIMIT + 5)))
    alice.until(rf"PRIVMSG {ROOM} :line {MAX_LIMIT + 4}$")
    found = ask(alice, f"LATEST {ROOM} * 1000")
    assert [text for _, text in found] == [f"line {number}" for number in range(5, MAX_LIMIT + 5)]


# --- refusals ----------------------------------------------------------------------------------


def test_a_room_the_client_is_not_in_or_that_does_not_exist_is_invalid_target(server):
    bob = in_room(server, "bob")
    said(bob, 2)
    alice = server.irc("alice", CAPS)
    for room in (ROOM, "#nowhere", "#bad!name"):
        alice.send_line(f"CHATHISTORY LATEST {room} * 10")
        assert alice.readline() == (
            f"{S} FAIL CHATHISTORY INVALID_TARGET LATEST {room} :Messages could not be retrieved"
        )
    alice.sync()


@pytest.mark.parametrize(
    ("request_", "reply"),
    [
        ("", "NEED_MORE_PARAMS * :Missing parameters"),
        (f"BETWEEN {ROOM} * 10", "NEED_MORE_PARAMS BETWEEN :Missing parameters"),
        (f"SEARCH {ROOM} * 10", "UNKNOWN_COMMAND SEARCH :Unknown command"),
        (f"LATEST {ROOM} * 0", "INVALID_PARAMS LATEST 0 :Invalid parameters"),
        (f"BEFORE {ROOM} yesterday 10", "INVALID_PARAMS BEFORE yesterday :Invalid parameters"),
        (
            f"AFTER {ROOM} msgid=abc 10",
            "INVALID_MSGREFTYPE AFTER msgid=abc :Only timestamp references are supported",
        ),
    ],
)
def test_a_request_that_cannot_be_answered_is_a_fail_standard_reply(server, request_, reply):
    alice = in_room(server)
    alice.send_line(f"CHATHISTORY {request_}".rstrip())
    assert alice.readline() == f"{S} FAIL CHATHISTORY {reply}"
    alice.sync()


def test_a_nick_has_no_history_an_empty_batch_as_private_messages_are_not_kept(server):
    alice = in_room(server)
    bob = server.irc("bob", CAPS)
    bob.send_line("PRIVMSG alice :psst")
    alice.readline()
    assert ask(alice, "LATEST bob * 10", room="bob") == []


def test_without_batch_the_lines_come_alone(server):
    alice = in_room(server, caps=("server-time", "echo-message"))
    lines = said(alice, 2)
    alice.send_line(f"CHATHISTORY LATEST {ROOM} * 10")
    assert alice.read_lines(2) == [
        f"@time={at} :alice!alice@127.0.0.1 PRIVMSG {ROOM} :{text}" for at, text in lines
    ]
    alice.sync()


# --- where the lines come from -------------------------------------------------------------------


def test_without_a_store_history_is_the_rooms_last_history_lines(start_server):
    server = start_server("--rate", "0", "--irc-port", "0", "--history", "3")
    alice = in_room(server)
    lines = said(alice, 5)
    assert ask(alice, f"LATEST {ROOM} * 10") == lines[2:]
    assert ask(alice, f"BEFORE {ROOM} {ref(lines, 3)} 10") == lines[2:3]


def stored(start_server, path: Path) -> ChatServer:
    return start_server("--rate", "0", "--irc-port", "0", "--history", "2", "--store", str(path))


def test_with_a_store_history_reaches_past_the_history_lines(start_server, tmp_path):
    alice = in_room(stored(start_server, tmp_path / "chat.db"))
    lines = said(alice, 6)
    assert ask(alice, f"LATEST {ROOM} * 10") == lines
    assert ask(alice, f"BEFORE {ROOM} {ref(lines, 4)} 3") == lines[1:4]
    assert ask(alice, f"AFTER {ROOM} {ref(lines, 0)} 2") == lines[1:3]


def test_with_a_store_history_survives_a_restart(start_server, tmp_path):
    server = stored(start_server, tmp_path / "chat.db")
    alice = in_room(server)
    lines = said(alice, 5)
    server.signal(signal.SIGTERM)
    assert server.wait() == 0
    again = in_room(stored(start_server, tmp_path / "chat.db"), "bob")
    assert ask(again, f"LATEST {ROOM} * 10") == lines
    assert ask(again, f"BETWEEN {ROOM} {ref(lines, 0)} {ref(lines, 4)} 10") == lines[1:4]


def test_with_bus_a_room_has_the_same_history_on_every_node(cluster):
    first, second = cluster.start(2, "--irc-port", "0", "--history", "20")
    alice = in_room(first)
    bob = in_room(second, "bob")
    alice.until(r" JOIN :#dev$")
    lines = said(alice, 4)
    bob.until(r"PRIVMSG #dev :line 3$")
    assert ask(bob, f"LATEST {ROOM} * 10") == lines
    assert ask(bob, f"AFTER {ROOM} {ref(lines, 1)} 10") == lines[2:]
