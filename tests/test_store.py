"""gchat.store on real SQLite files: what it keeps, when it writes, and how it fails.

The store writes in a thread while the calling greenlet goes on; tests wait
for it with ``flush`` (or a bounded poll where the point is that nobody asked).
"""

import contextlib
import json
import logging
import math
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import gevent
import pytest
from conftest import ROOT, TIMEOUT, on_disk

from gchat.news import Kind, Message
from gchat.store import (
    FALLING_BEHIND,
    PRUNE_CHUNKS,
    QUEUE_LINES,
    RECOVERED,
    WRITE_FAILED,
    Store,
    StoreError,
)

DAY = 86400.0


def line(text: str, room: str = "#lobby", at: float = 0.0, kind: Kind = Kind.SAY) -> Message:
    return Message(room, "alice", "127.0.0.1", text, kind, at or time.time())


def texts(lines: "tuple[Message, ...]") -> "list[str]":
    return [message.text for message in lines]


def rows(path: Path, room: str = "#lobby") -> "list[str]":
    """The texts of ``room``'s lines on disk, read by a connection of the test's own."""
    return [text for name, text in on_disk(path) if name == room]


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        gevent.sleep(0.001)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "chat.db"


@pytest.fixture
def store(path: Path) -> Iterator[Store]:
    opened = Store.open(str(path))
    yield opened
    opened.close()


def open_elsewhere(path: Path) -> str:
    """What another process is told when it opens ``path`` (empty: it opened it)."""
    script = (
        "import sys\nfrom gchat.store import Store, StoreError\n"
        "try:\n    Store.open(sys.argv[1]).close()\nexcept StoreError as err:\n    print(err)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)], cwd=ROOT, capture_output=True, timeout=TIMEOUT, check=True
    )
    return done.stdout.decode().strip()


# --- writing ---------------------------------------------------------------------------


def test_lines_of_one_loop_turn_are_written_in_one_transaction(store, path):
    for number in range(100):
        store.record(line(f"first {number}"))
    wait_until(lambda: store.commits == 1, "the first transaction")
    for number in range(50):
        store.record(line(f"second {number}"))
    wait_until(lambda: store.commits == 2, "the second transaction")
    gevent.sleep(0.05)
    assert store.commits == 2
    assert len(rows(path)) == 150


def test_record_returns_while_the_writer_waits_for_the_disk(store, path):
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    store.record(line("waiting"))
    gevent.sleep(0)  # the loop turn ends: the line is handed to the writer, which waits
    started = time.monotonic()
    for number in range(1000):
        store.record(line(f"meanwhile {number}"))
    assert time.monotonic() - started < 1.0
    assert rows(path) == []
    blocker.execute("ROLLBACK")
    store.flush()
    assert len(rows(path)) == 1001


def test_a_disk_slower_than_the_chat_drops_the_oldest_unwritten_lines_and_logs_once(store, path, caplog):
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    store.record(line("in flight"))
    gevent.sleep(0)  # handed to the writer, which waits for the blocker
    with caplog.at_level(logging.INFO, logger="gchat"):
        for number in range(QUEUE_LINES + 100):
            store.record(line(f"queued {number}"))
        assert store.lost == 100
        blocker.execute("ROLLBACK")
        store.flush()
    on_disk = rows(path)
    assert on_disk[:2] == ["in flight", "queued 100"]
    assert on_disk[-1] == f"queued {QUEUE_LINES + 99}"
    assert len(on_disk) == QUEUE_LINES + 1
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [FALLING_BEHIND, RECOVERED % 100]


def test_a_topic_cleared_is_gone_after_reopening(path):
    store = Store.open(str(path))
    store.topic("#lobby", "old news", "op")
    store.topic("#dev", "builds", "op")
    store.flush()
    store.topic("#lobby", "", "op")
    store.close()
    reopened = Store.open(str(path))
    assert (reopened.room("#lobby", 0), reopened.room("#dev", 0)) == (("", ()), ("builds", ()))
    reopened.close()


def test_nothing_is_recorded_after_close(path):
    store = Store.open(str(path))
    store.record(line("kept"))
    store.close()
    store.record(line("too late"))
    assert rows(path) == ["kept"]


# --- reading ---------------------------------------------------------------------------


def test_reopened_it_gives_each_rooms_topic_and_last_lines_and_the_bans(path):
    store = Store.open(str(path))
    now = time.time()
    for number in range(30):
        store.record(line(f"lobby {number}", at=now + number))
    store.record(line("waves", room="#dev", at=now, kind=Kind.ACTION))
    store.topic("#dev", "builds", "op")
    store.ban("10.0.0.1")
    store.ban("10.0.0.2")
    store.unban("10.0.0.1")
    store.close()
    reopened = Store.open(str(path))
    topic, lines = reopened.room("#lobby", 20)
    assert (topic, texts(lines)) == ("", [f"lobby {number}" for number in range(10, 30)])
    topic, (waves,) = reopened.room("#dev", 20)
    assert (topic, waves.room, waves.nick, waves.host, waves.text, waves.kind) == (
        "builds",
        "#dev",
        "alice",
        "127.0.0.1",
        "waves",
        Kind.ACTION,
    )
    assert waves.at == pytest.approx(now, abs=1e-6)  # kept to the microsecond
    assert reopened.room("#nowhere", 20) == ("", ())
    assert reopened.bans() == frozenset({"10.0.0.2"})
    reopened.close()


def test_history_gives_a_rooms_lines_before_a_time_oldest_first(store):
    now = time.time()
    for number in range(10):
        store.record(line(f"line {number}", at=now + number))
    store.record(line("elsewhere", room="#dev", at=now))
    store.flush()
    assert texts(store.history("#lobby", now + 7, 3)) == ["line 4", "line 5", "line 6"]
    assert texts(store.history("#lobby", now + 2, 100)) == ["line 0", "line 1"]
    assert store.history("#nowhere", math.inf, 10) == ()


def test_history_reads_a_span_either_way_across_chunks_from_the_one_straddling_its_bound(store):
    now = time.time()
    for number in range(10):
        store.record(line(f"line {number}", at=now + number))
        if number % 3 == 2:
            store.flush()  # a chunk a transaction: lines 0-2, 3-5, 6-8, then 9
    store.flush()
    assert texts(store.history("#lobby", now + 8, 3, now + 2, newest=False)) == ["line 2", "line 3", "line 4"]
    assert texts(store.history("#lobby", now + 8, 3, now + 2)) == ["line 5", "line 6", "line 7"]
    assert texts(store.history("#lobby", now + 4, 2)) == ["line 2", "line 3"]
    assert texts(store.history("#lobby", math.inf, 2, now + 4, newest=False)) == ["line 4", "line 5"]
    assert texts(store.history("#lobby", math.inf, 100, now + 8.5)) == ["line 9"]
    assert store.history("#lobby", now + 4, 100, now + 4) == ()


def test_lines_of_every_kind_in_one_room_read_back_as_recorded(store):
    now = time.time()
    recorded = [
        line(f"line {number}", at=now + number / 7, kind=kind)
        for number, kind in enumerate([Kind.SAY, Kind.ACTION, Kind.SAY, Kind.NOTICE, Kind.SAY])
    ]
    for message in recorded:
        store.record(message)
    store.flush()
    assert store.history("#lobby", math.inf, 10) == tuple(recorded)


def test_a_line_holding_the_chunks_separator_reads_back_whole(store):
    now = time.time()
    recorded = ["before", "unit\x1fseparator\x00nul", "after"]
    for number, text in enumerate(recorded):
        store.record(line(text, at=now + number))
    store.flush()
    assert texts(store.history("#lobby", math.inf, 10)) == recorded


# The schema of the first --store (user_version 1): every chunk a JSON array.
SCHEMA_1 = """
CREATE TABLE rooms (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE chunks (
    id INTEGER PRIMARY KEY, room INTEGER NOT NULL, first INTEGER NOT NULL, last INTEGER NOT NULL,
    lines INTEGER NOT NULL, data TEXT NOT NULL
);
CREATE INDEX chunks_by_room ON chunks (room, last);
CREATE TABLE topics (room TEXT PRIMARY KEY, text TEXT NOT NULL, by TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE bans (address TEXT PRIMARY KEY) WITHOUT ROWID;
PRAGMA application_id = 1734568052;
PRAGMA user_version = 1;
"""


def test_a_store_of_the_first_schema_is_read_and_written_on(path):
    at = round(time.time() - 10, 6)
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA_1)
        db.execute("INSERT INTO rooms (id, name) VALUES (1, '#lobby')")
        micros = [round((at + number) * 1e6) for number in range(3)]
        kept = [
            [micro, "bob", "10.0.0.9", "action" if micro == micros[1] else "say", f"old {number}"]
            for number, micro in enumerate(micros)
        ]
        db.execute(
            "INSERT INTO chunks (room, first, last, lines, data) VALUES (1, ?, ?, 3, ?)",
            (micros[0], micros[-1], json.dumps(kept)),
        )
        db.execute("INSERT INTO topics VALUES ('#lobby', 'from before', 'op')")
    db.close()
    store = Store.open(str(path), keep_lines=4)
    store.record(line("new 0", at=at + 5))
    store.record(line("new 1", at=at + 6))
    store.close()
    reopened = Store.open(str(path))
    topic, lines = reopened.room("#lobby", 10)
    reopened.close()
    # keep_lines trimmed the old chunk by one line, and rewrote the rest.
    assert (topic, texts(lines)) == ("from before", ["old 1", "old 2", "new 0", "new 1"])
    assert [(message.nick, message.kind, message.at) for message in lines[:2]] == [
        ("bob", Kind.ACTION, pytest.approx(at + 1, abs=1e-6)),
        ("bob", Kind.SAY, pytest.approx(at + 2, abs=1e-6)),
    ]


# --- opening ---------------------------------------------------------------------------


def test_a_store_open_in_one_process_is_refused_to_another(store, path):
    assert open_elsewhere(path) == f"the store {path} is in use by another gchat"


def test_a_closed_store_opens_in_another_process(path):
    Store.open(str(path)).close()
    assert open_elsewhere(path) == ""


def test_a_file_that_is_not_a_database_is_refused_as_damaged(path):
    path.write_bytes(b"not a database at all\n" * 500)
    with pytest.raises(StoreError) as refused:
        Store.open(str(path))
    assert str(refused.value) == (
        f"the store {path} is damaged (file is not a database): move it away to start afresh"
    )


def test_a_store_with_damaged_pages_is_refused_as_damaged(path):
    store = Store.open(str(path))
    for number in range(2000):
        store.record(line(f"line {number} " + "x" * 100))
    store.close()
    data = bytearray(path.read_bytes())
    page = 4096
    data[3 * page : 6 * page] = b"\xff" * (3 * page)
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=r"^the store .* is damaged \(.*\): move it away to start afresh$"):
        Store.open(str(path))


def test_another_programs_database_is_refused(path):
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE accounts (name TEXT)")
    with pytest.raises(StoreError) as refused:
        Store.open(str(path))
    assert str(refused.value) == f"{path} is not a gchat store: give --store a new file or one gchat made"


@pytest.mark.parametrize(
    ("where", "reason"),
    [
        (lambda tmp: tmp, "Is a directory"),
        (lambda tmp: tmp / "missing" / "chat.db", "No such file or directory"),
    ],
)
def test_a_path_that_cannot_be_opened_is_refused(tmp_path, where, reason):
    target = where(tmp_path)
    with pytest.raises(StoreError) as refused:
        Store.open(str(target))
    assert str(refused.value) == f"cannot open the store {target}: {reason}"


# --- a full disk -----------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs: a disk that really fills up (needs root for mount)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def fill_up(path: Path) -> None:
    with path.open("wb", buffering=0) as filler, contextlib.suppress(OSError):
        while True:
            filler.write(b"\0" * 512)


def test_a_full_disk_is_logged_once_and_what_waits_is_written_when_space_is_back(small_disk, caplog):
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * 128 * 1024)
    store = Store.open(str(small_disk / "chat.db"))
    with caplog.at_level(logging.INFO, logger="gchat"):
        for chunk in range(200):
            for number in range(50):
                store.record(line(f"chunk {chunk} line {number} " + "x" * 200))
            store.flush()
            if store.lost:
                break
        assert store.lost, "the disk never filled up"
        fill_up(small_disk / "last-bytes")
        store.topic("#lobby", "kept through it", "op")
        for attempt in range(3):
            store.record(line(f"lost too {attempt}"))
            store.flush()
        filler.unlink()
        (small_disk / "last-bytes").unlink()
        store.record(line("after"))
        store.flush()
        store.close()
    # Once: a nearly full disk takes some transactions and fails others, all one trouble.
    (failure,) = [record.getMessage() for record in caplog.records]
    assert failure == WRITE_FAILED % "database or disk is full"
    reopened = Store.open(str(small_disk / "chat.db"))
    topic, lines = reopened.room("#lobby", 1)
    reopened.close()
    assert (topic, texts(lines)) == ("kept through it", ["after"])


# --- retention -------------------------------------------------------------------------


def test_keep_lines_keeps_each_rooms_newest_lines(path):
    store = Store.open(str(path), keep_lines=10)
    now = time.time()
    for number in range(25):
        store.record(line(f"lobby {number}", at=now + number))
    for number in range(5):
        store.record(line(f"dev {number}", room="#dev", at=now + number))
    store.close()
    assert rows(path) == [f"lobby {number}" for number in range(15, 25)]
    assert rows(path, "#dev") == [f"dev {number}" for number in range(5)]


def test_a_lower_keep_lines_prunes_an_old_store_in_bounded_transactions(path):
    store = Store.open(str(path))
    now = time.time()
    for number in range(3 * PRUNE_CHUNKS):
        store.record(line(f"line {number}", at=now + number))
        store.flush()  # a transaction each: a chunk each
    store.close()
    store = Store.open(str(path), keep_lines=1)
    # PRUNE_CHUNKS chunks a transaction: three transactions at least.
    wait_until(lambda: store.commits >= 3 and len(rows(path)) == 1, "the pruning")
    store.close()
    assert rows(path) == [f"line {3 * PRUNE_CHUNKS - 1}"]


def test_keep_days_drops_older_lines(path):
    store = Store.open(str(path), keep_days=1)
    now = time.time()
    for number in range(10):
        store.record(line(f"old {number}", at=now - 3 * DAY + number))
    store.flush()
    for number in range(5):
        store.record(line(f"new {number}", at=now + number))
    store.flush()
    assert texts(store.room("#lobby", 100)[1]) == [f"new {number}" for number in range(5)]
    assert texts(store.history("#lobby", math.inf, 100)) == [f"new {number}" for number in range(5)]
    store.close()
    assert rows(path) == [f"new {number}" for number in range(5)]
