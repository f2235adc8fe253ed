"""``--store``: a real gchat keeping history, topics and bans across restarts, and its start errors."""

import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import TIMEOUT, ChatServer, LineClient, on_disk, operator, run_gchat
from perf.store_figures import kill_once

from gchat.commands import HISTORY_USAGE
from gchat.store import BATCH_SECONDS

BANNED = b"!!! you are banned from this server\n"


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "chat.db"


@pytest.fixture
def stored(start_server, store_path, oper_file) -> Callable[..., ChatServer]:
    """Start gchat on the test's store (operators: boss), again and again."""

    def start(*flags: str) -> ChatServer:
        opers = ("--oper-file", oper_file)
        return start_server(
            "--rate", "0", "--shutdown-timeout", "1", *opers, "--store", str(store_path), *flags
        )

    return start


def stop(server: ChatServer, *clients: LineClient) -> None:
    """SIGTERM, each client reading to the end, and a clean exit."""
    server.signal(signal.SIGTERM)
    for client in clients:
        assert client.read_to_eof().decode().endswith("*** server shutting down\n")
        client.close()
    assert server.wait() == 0


def stored_lines(path: Path) -> "list[str]":
    """The texts of the chat lines in the store's file now."""
    return [text for _, text in on_disk(path)]


def older(client: LineClient, room: str, count: int) -> "list[str]":
    """``/history COUNT``: the lines it gives, after checking its header."""
    client.say(f"/history {count}")
    header = client.readline()
    if header == f"*** no older lines in {room}":
        return []
    found = 1 if header == f"*** 1 older line in {room}:" else int(header.split()[1])
    assert header == f"*** {found} older line{'s' if found > 1 else ''} in {room}:"
    return client.read_lines(found)


def test_a_flood_is_written_while_it_goes_on():
    # One client sending as fast as gchat reads keeps the loop from ever idling: gevent then
    # runs its timers late or never, and the store must not wait for one to write. Measured as
    # README's kill figure is: what a SIGKILL during the flood loses of what was delivered.
    window, delivered, lost = kill_once(rate=0, seconds=1.5)
    assert window < 8 * BATCH_SECONDS, f"{lost} of {delivered} lines lost, over {window:.3f} s"


# --- what a restart gives back ---------------------------------------------------------


def test_a_restart_after_sigterm_gives_back_history_topics_and_bans(stored):
    server = stored("--history", "3")
    boss = operator(server, "127.0.0.2")
    target = server.join("127.0.0.3")
    boss.say("/topic lobby topic", "one", "two", "three", "four")
    said = [f"<{boss.nick}> {text}" for text in ("one", "two", "three", "four")]
    target.expect("*** topic for #lobby: lobby topic", *said)
    boss.say("/join dev", "/topic dev topic", "in dev", f"/ban {target.nick}")
    boss.read_until("*** banned 127.0.0.3")
    boss.say("/join lobby")  # #dev empties: its topic and line stay in the store only
    boss.read_until("*** You are now in #lobby (1 user)")
    stop(server, boss)

    again = stored("--history", "3")
    newcomer = again.join()
    newcomer.expect("*** topic for #lobby: lobby topic", *said[1:])
    newcomer.say("/join dev")
    newcomer.expect(
        "*** You are now in #dev (1 user)", "*** topic for #dev: dev topic", f"<{boss.nick}> in dev"
    )
    assert again.connect(source="127.0.0.3").read_to_eof() == BANNED


def test_a_room_everyone_left_comes_back_with_its_topic_and_lines(stored):
    server = stored("--history", "5")
    boss = operator(server)
    boss.say("/join dev", "/topic builds", "green", "/join lobby")
    boss.read_until("*** You are now in #lobby (1 user)")
    newcomer = server.join()
    newcomer.say("/join dev")
    newcomer.expect("*** You are now in #dev (1 user)", "*** topic for #dev: builds", f"<{boss.nick}> green")


def test_history_gives_older_lines_than_those_shown_on_join_until_there_are_none(stored):
    server = stored("--history", "3")
    talker = server.join()
    talker.say(*(f"line {number}" for number in range(1, 11)))
    talker.ping()
    reader = server.join()
    said = [f"<{talker.nick}> line {number}" for number in range(1, 11)]
    reader.expect(*said[-3:])
    assert older(reader, "#lobby", 4) == said[3:7]
    assert older(reader, "#lobby", 100) == said[:3]
    assert older(reader, "#lobby", 100) == []


def test_history_is_per_room_and_starts_again_on_each_join(stored):
    server = stored("--history", "1")
    talker = server.join()
    talker.say("lobby 1", "lobby 2", "/join dev", "dev 1", "dev 2")
    talker.expect("*** You are now in #dev (1 user)")
    talker.ping()
    reader = server.connect()  # not server.join(): the talker, in #dev, is not told
    reader.expect("Welcome to the chatroom!", "*** You are guest2 in #lobby. Type /help for commands.")
    reader.expect(f"<{talker.nick}> lobby 2")
    assert older(reader, "#lobby", 10) == [f"<{talker.nick}> lobby 1"]
    reader.say("/join dev")
    reader.expect("*** You are now in #dev (2 users)", f"<{talker.nick}> dev 2")
    assert older(reader, "#dev", 10) == [f"<{talker.nick}> dev 1"]
    reader.say("/join lobby")
    reader.expect("*** You are now in #lobby (1 user)", f"<{talker.nick}> lobby 2")
    assert older(reader, "#lobby", 10) == [f"<{talker.nick}> lobby 1"]


@pytest.mark.parametrize("count", ["0", "101", "-1", "x", "\uff15"])
def test_history_with_a_bad_count_gives_its_usage(stored, count):
    client = stored().join()
    client.say(f"/history {count}")
    assert client.readline() == f"!!! usage: {HISTORY_USAGE}"


def test_history_without_a_store_has_no_older_lines(server):
    talker = server.join()
    talker.say("kept only in memory")
    talker.ping()
    newcomer = server.join()
    newcomer.expect(f"<{talker.nick}> kept only in memory")
    assert older(newcomer, "#lobby", 10) == []


# --- SIGKILL -----------------------------------------------------------------------


def test_sigkill_loses_only_the_newest_lines(stored, store_path):
    server = stored()
    talker, reader = server.join(), server.join()
    said = [f"line {number}" for number in range(300)]
    talker.say(*said)
    reader.expect(*(f"<{talker.nick}> {text}" for text in said))
    server.signal(signal.SIGKILL)
    server.wait()
    kept = stored_lines(store_path)
    assert kept == said[: len(kept)]


def test_sigkill_loses_nothing_once_written(stored, store_path):
    server = stored()
    talker = server.join()
    said = [f"line {number}" for number in range(300)]
    talker.say(*said)
    deadline = time.monotonic() + TIMEOUT
    while stored_lines(store_path) != said:
        assert time.monotonic() < deadline, "the lines never reached the store's file"
        time.sleep(0.01)  # polling a file: there is no event to wait on
    server.signal(signal.SIGKILL)
    server.wait()
    newcomer = stored("--history", "300").join()
    newcomer.expect(*(f"<{talker.nick}> {text}" for text in said))


# --- start errors: one line, status 1 --------------------------------------------------


def test_a_store_that_cannot_be_opened_is_one_line_at_start(tmp_path):
    missing = tmp_path / "missing" / "chat.db"
    status, _, errors = run_gchat("--port", "0", "--store", str(missing))
    assert (status, errors) == (1, [f"gchat: cannot open the store {missing}: No such file or directory"])


def test_a_damaged_store_is_one_line_at_start(store_path):
    store_path.write_bytes(b"garbage\n" * 1000)
    status, _, errors = run_gchat("--port", "0", "--store", str(store_path))
    assert (status, errors) == (
        1,
        [f"gchat: the store {store_path} is damaged (file is not a database): move it away to start afresh"],
    )


def test_a_store_in_use_by_another_gchat_is_one_line_at_start(start_server, store_path):
    start_server("--store", str(store_path))
    status, _, errors = run_gchat("--port", "0", "--store", str(store_path))
    assert (status, errors) == (1, [f"gchat: the store {store_path} is in use by another gchat"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--store", "x.db", "--bus", "redis://127.0.0.1:1/0"], "--store and --bus do not go together"),
        (["--keep-days", "1"], "--keep-days and --keep-lines need --store"),
        (["--store", "x.db", "--keep-lines", "-1"], "argument --keep-lines: invalid value '-1'"),
        (["--store", "x.db", "--keep-days", "soon"], "argument --keep-days: invalid value 'soon'"),
    ],
)
def test_bad_store_flags_give_one_line(args, message):
    status, _, errors = run_gchat(*args)
    assert status == 2
    assert len(errors) == 1
    assert errors[0].startswith(f"gchat: error: {message}")
