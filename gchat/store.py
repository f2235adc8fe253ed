"""Rooms' history, topics and bans on disk (``--store``), so a restart loses nothing.

SQLite in WAL mode, written by one thread of its own: the event loop never
waits for the disk. ``record``, ``topic``, ``ban`` and ``unban`` only note
what changed; at the end of a loop turn the changes go to the writer as one
transaction, at most one every ``BATCH_SECONDS`` (a loop turn's changes are
never split). One transaction is in flight at a time and what changes
meanwhile waits for the next, so a disk slower than the chat gets fewer,
bigger transactions. The lines waiting are bounded (``QUEUE_LINES``): past
that the oldest unwritten lines are dropped and counted, never a room
blocked. Topics and bans are never dropped: each room's latest topic and
each address's latest state wait, a few bytes apiece. A write that fails (a
full disk, an I/O error) is logged once, its lines are lost and counted, its
topics and bans go with the next transaction; the chat goes on.

Commits use ``synchronous=NORMAL``: a committed transaction is in the
kernel's hands, so a killed process loses only the changes not yet
committed (about the last ``BATCH_SECONDS``, and the transaction in flight); a power
loss may also lose the commits since the last WAL checkpoint.
"""

import contextlib
import fcntl
import json
import logging
import math
import os
import sqlite3
import sys
import time
from array import array
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import chain, groupby
from operator import countOf, itemgetter
from typing import Callable, Optional, TypeVar

import gevent
from gevent.monkey import get_original
from gevent.threadpool import ThreadPool

from gchat.news import Kind, Message, micros

log = logging.getLogger("gchat")

_T = TypeVar("_T")
# Real threads and locks, even under gevent's monkey-patching: the writer must not be a greenlet.
_start_thread = get_original("_thread", "start_new_thread")
_allocate_lock = get_original("_thread", "allocate_lock")

# Lines waiting for the writer, beyond the transaction in flight; past this the oldest go.
QUEUE_LINES = 20000
# Seconds between tries after a write failed (a full disk): lines meanwhile wait, within QUEUE_LINES.
RETRY_SECONDS = 1.0
# Seconds from one transaction's start to the next's, at least: what a SIGKILL may lose, about.
BATCH_SECONDS = 0.05
# Seconds between looks at the writer while a flush waits for it.
FLUSH_POLL = 0.002
# Seconds without a failed write before the trouble is reported over. A nearly full disk takes
# some transactions (SQLite reuses the WAL's space) and fails others: that is one trouble, not many.
CALM_SECONDS = 60.0
# Lines of one room in one row at most (a chunk): see _SCHEMA.
CHUNK_LINES = 500
# Chunks one transaction deletes or trims at most for retention: a big backlog goes bit by bit.
PRUNE_CHUNKS = 100
# "gcht": marks a database as a gchat store, so another program's is refused, not changed.
APPLICATION_ID = 0x67636874
# 2: chunks in columns (``times``, see _SCHEMA); a store of schema 1 (JSON chunks) is upgraded
# in place at open, its rows read as they are.
SCHEMA_VERSION = 2
DAY = 86400.0

WRITE_FAILED = "the store cannot write (%s): chat goes on, its lines are not kept until the store can"
FALLING_BEHIND = "the store falls behind the chat: the oldest unwritten lines are dropped"
RECOVERED = "the store is writing again; %d lines were not kept"
READ_FAILED = "the store cannot read (%s): no history from it until it can"

# A room's lines of one transaction are one row, a chunk (at most CHUNK_LINES, oldest first):
# a row and an index entry a line cost the writer thread three times the CPU, taken from the
# chat's own core. A chunk is in columns, each made and read whole by C code (no Python, no
# object per line; JSON cost the chat's core 1 µs a line): ``times`` the lines' times, float64
# little-endian (as the chat took them, so they read back equal); ``data`` the nicks, then the
# hosts, then the texts, then the kinds (one _KIND_CODES letter a line, or nothing when all are
# plain), joined by _SEPARATOR. A field holding the separator (sanitizing removes it from what
# clients send, but the store does not count on it) makes that chunk JSON, as every chunk was in
# schema 1: ``times`` NULL and ``data`` a JSON array of [at in microseconds, nick, host, kind value,
# text].
_SCHEMA = """
CREATE TABLE IF NOT EXISTS rooms (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY,
    room INTEGER NOT NULL,
    first INTEGER NOT NULL,
    last INTEGER NOT NULL,
    lines INTEGER NOT NULL,
    data TEXT NOT NULL,
    times BLOB
);
CREATE INDEX IF NOT EXISTS chunks_by_room ON chunks (room, last);
CREATE TABLE IF NOT EXISTS topics (room TEXT PRIMARY KEY, text TEXT NOT NULL, by TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bans (address TEXT PRIMARY KEY) WITHOUT ROWID;
"""
# A transaction's chunks in as few statements as SQLite takes (999 parameters at most before 3.32):
# executemany would hand the GIL back and forth once a row, and under load the loop keeps it,
# starving the writer.
_INSERT_CHUNKS = "INSERT INTO chunks (room, first, last, lines, data, times) VALUES "
_CHUNK_VALUES = "(?, ?, ?, ?, ?, ?)"
_CHUNKS_A_STATEMENT = 999 // 6
# Schema 1 to 2: its JSON chunks stay as they are (``times`` NULL).
_UPGRADE_1 = "ALTER TABLE chunks ADD COLUMN times BLOB"
# Chunks come in time order: the oldest by id are the ones expiring.
_EXPIRED = (
    "SELECT id, room, lines FROM chunks WHERE id IN (SELECT id FROM chunks ORDER BY id LIMIT ?) AND last < ?"
)
# A room's chunks by ``last`` on the (room, last) index, so a read walks only the chunks it
# gives back and the one straddling its bound: those ending before a time, newest first; those
# ending at or after one, oldest first. A room's chunks are written in time order, so the one
# that straddles a time is the first ending at or after it.
_ROOM_ID = "(SELECT id FROM rooms WHERE name = ?)"
_CHUNKS = f"SELECT first, data, times FROM chunks WHERE room = {_ROOM_ID}"
_CHUNKS_BEFORE = _CHUNKS + " AND last < ? AND last >= ? ORDER BY last DESC"
_CHUNKS_FROM = _CHUNKS + " AND last >= ? ORDER BY last"


class StoreError(Exception):
    """The store cannot be used at start; the message is one line naming the file."""


@dataclass
class _Batch:
    """One transaction: what changed since the last one."""

    lines: "deque[Message]" = field(default_factory=deque)
    topics: "dict[str, tuple[str, str]]" = field(default_factory=dict)
    # By address: True banned, False unbanned.
    bans: "dict[str, bool]" = field(default_factory=dict)


@dataclass(frozen=True)
class _Outcome:
    error: Optional[str]
    # Retention left rows to delete: another transaction should follow.
    more: bool


_SEPARATOR = "\x1f"
_KIND_CODES = {Kind.SAY: "s", Kind.ACTION: "a", Kind.NOTICE: "n"}
_KINDS = {code: kind for kind, code in _KIND_CODES.items()}
# By id: an Enum hashes in Python, a call a line; an int hashes in C.
_KIND_CODES_BY_ID = {id(kind): code for kind, code in _KIND_CODES.items()}
_ROOM = itemgetter(0)
_SWAP = sys.byteorder != "little"

# A chunk as written: room id, first, last, lines, data, times.
_Chunk = tuple[int, int, int, int, str, Optional[bytes]]


def _chunks(lines: "Iterable[Message]", ids: "dict[str, int]") -> "list[_Chunk]":
    """``lines`` as chunks: each room's, in order."""
    chunks: list[_Chunk] = []
    ordered = list(lines)
    if ordered and countOf(map(_ROOM, ordered), ordered[0].room) == len(ordered):
        rooms = [(ordered[0].room, ordered)]  # one room (a flood's usual case): no sort, no copy
    else:
        # A stable sort: each room's lines stay in order.
        rooms = [(room, list(group)) for room, group in groupby(sorted(ordered, key=_ROOM), key=_ROOM)]
    for room, room_lines in rooms:
        for start in range(0, len(room_lines), CHUNK_LINES):
            chunks.append((ids[room], *_encode(room_lines[start : start + CHUNK_LINES])))
    return chunks


def _encode(lines: "list[Message]") -> "tuple[int, int, int, str, Optional[bytes]]":
    """first, last, lines, data, times of a chunk of ``lines`` (one room's, oldest first)."""
    _, nicks, hosts, texts, kinds, ats = zip(*lines)
    count = len(lines)
    first, last = micros(ats[0]), micros(ats[-1])
    if kinds.count(Kind.SAY) == count:  # by identity, in C
        codes = ""
    else:
        codes = "".join(map(_KIND_CODES_BY_ID.__getitem__, map(id, kinds)))
    data = _SEPARATOR.join(chain(nicks, hosts, texts, (codes,)))
    if data.count(_SEPARATOR) != 3 * count:
        kept = [(micros(at), nick, host, kind.value, text) for _, nick, host, text, kind, at in lines]
        return first, last, count, json.dumps(kept, ensure_ascii=False), None
    times = array("d", ats)
    if _SWAP:
        times.byteswap()
    return first, last, count, data, times.tobytes()


# A line as a chunk gives it back: at (seconds), nick, host, kind, text.
_Line = tuple[float, str, str, Kind, str]


def decode_chunk(data: str, times: Optional[bytes]) -> "list[_Line]":
    """A chunk's lines (its row's ``data`` and ``times``), oldest first, whichever way it was written."""
    if times is None:
        return [(at / 1e6, nick, host, Kind(kind), text) for at, nick, host, kind, text in json.loads(data)]
    ats = array("d")
    ats.frombytes(times)
    if _SWAP:
        ats.byteswap()
    count = len(ats)
    fields = data.split(_SEPARATOR)
    codes = fields[3 * count]
    kinds = [_KINDS[code] for code in codes] if codes else [Kind.SAY] * count
    return list(zip(ats, fields[:count], fields[count : 2 * count], kinds, fields[2 * count : 3 * count]))


class Store:
    """The one gchat store of a file; the file is locked while it is open."""

    def __init__(
        self, path: str, lock: int, connection: sqlite3.Connection, keep_days: float, keep_lines: int
    ) -> None:
        self.path = path
        self._lock = lock
        self._db = connection
        self._keep_days = keep_days
        self._keep_lines = keep_lines
        # Loop side: what the next transaction writes.
        self._lines: deque[Message] = deque(maxlen=QUEUE_LINES)
        self._topics: dict[str, tuple[str, str]] = {}
        self._bans: dict[str, bool] = {}
        # The transaction in flight (None: the writer is idle), and how it ended, set by the
        # writer thread. The loop notices the end on its next call (a record, a flush) or when
        # woken: under a flood gevent polls for the wake-up rarely, and a record comes first.
        self._batch: Optional[_Batch] = None
        self._outcome: Optional[_Outcome] = None
        # The writer's next transaction (None: stop), and the lock it waits on for it.
        self._handed: Optional[_Batch] = None
        self._go = _allocate_lock()
        self._go.acquire()
        self._wake = gevent.get_hub().loop.async_()
        self._wake.ref = False
        self._wake.start(self._check)
        # The next record must arrange a transaction (call _schedule): nothing is arranged that
        # would take its line, or the writer has just finished, or the next may begin (set by the
        # writer thread, see _run). Each other record costs the loop an append and a look at this.
        self._due = True
        # A submission is due (at the end of this loop turn, or at a retry), and the timer is set.
        self._scheduled = False
        self._timed = False
        self._timer = gevent.get_hub().loop.timer(RETRY_SECONDS)
        # When the last transaction was handed to the writer (time.monotonic()).
        self._began = -math.inf
        self._prune = False
        self._closed = False
        # Lines recorded but never written (dropped or failed): in all, and since the last report.
        self.lost = 0
        self.commits = 0
        self._unreported = 0
        self._troubled = False
        self._failed = -math.inf
        # Lost when the transaction in flight was handed over: none lost since, the trouble is over.
        self._lost_before = 0
        # Writer side (only the writer thread touches these, one transaction at a time).
        self._room_ids: dict[str, int] = {}
        # With --keep-lines: each room's line count, and the rooms over the limit.
        self._counts: Counter[int] = Counter()
        self._over: set[int] = set()
        # Readers (/history) take turns on one connection of their own, opened on first use.
        self._reader = ThreadPool(1)
        self._reading: Optional[sqlite3.Connection] = None
        self._read_failing = False

    @classmethod
    def open(cls, path: str, keep_days: float = 0.0, keep_lines: int = 0) -> "Store":
        """Open or create the store at ``path`` for this process alone.

        ``keep_days``, ``keep_lines``: lines older, or beyond a room's newest
        that many, are no longer given back and are deleted bit by bit; 0: no limit.
        """
        try:
            lock = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as err:
            raise StoreError(f"cannot open the store {path}: {err.strerror}") from None
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(lock)
            raise StoreError(f"the store {path} is in use by another gchat") from None
        try:
            connection = _connect(path)
        except StoreError:
            os.close(lock)
            raise
        store = cls(path, lock, connection, keep_days, keep_lines)
        if keep_lines:
            store._count_lines()
        # Lines a shorter retention than last time's has made due go now, bit by bit.
        store._prune = bool(keep_days or store._over)
        _start_thread(store._run, ())
        store._schedule()
        return store

    # --- the loop's side: note and return -----------------------------------------

    def record(self, message: Message) -> None:
        """Keep a room's line: noted now, written after this loop turn. Never blocks."""
        if self._closed:
            return
        lines = self._lines
        if len(lines) == QUEUE_LINES:
            self._lose(1, None)
        lines.append(message)
        if self._due:
            self._schedule()

    def topic(self, room: str, text: str, by: str) -> None:
        """``room``'s topic is now ``text`` (empty: none), set by ``by``."""
        self._topics[room] = (text, by)
        self._schedule()

    def ban(self, address: str) -> None:
        self._bans[address] = True
        self._schedule()

    def unban(self, address: str) -> None:
        self._bans[address] = False
        self._schedule()

    def bans(self) -> "frozenset[str]":
        """The addresses banned, for the start (waits as ``history`` does)."""
        return self._ask(self._read_bans, frozenset())

    def history(
        self, room: str, before: float, limit: int, after: float = -math.inf, newest: bool = True
    ) -> "tuple[Message, ...]":
        """Up to ``limit`` of ``room``'s lines from ``after`` to before ``before``, oldest first:
        the newest of them, or the oldest (``newest`` False).

        Waits for the disk in a thread (only the calling greenlet waits); a
        failed read is logged (once until one succeeds) and gives nothing.
        """
        if limit <= 0:
            return ()
        lines: tuple[Message, ...] = self._ask(self._read, (), room, before, limit, after, newest)
        return lines

    def room(self, name: str, lines: int) -> "tuple[str, tuple[Message, ...]]":
        """``name``'s topic (empty: none) and last ``lines`` lines, for a room coming back.

        Waits as ``history`` does.
        """
        nothing: tuple[str, tuple[Message, ...]] = ("", ())
        return self._ask(self._read_room, nothing, name, lines)

    def _ask(self, read: Callable[..., _T], failed: _T, *args: object) -> _T:
        if self._closed:
            return failed
        # Read what was recorded before the question, even if it was still on its way to the disk.
        self.flush()
        try:
            result: _T = self._reader.spawn(read, *args).get()
        except sqlite3.Error as err:
            if not self._read_failing:
                self._read_failing = True
                log.error(READ_FAILED, err)
            return failed
        self._read_failing = False
        return result

    def flush(self) -> None:
        """Wait until everything noted so far is written, or failed once; only the caller waits."""
        for _ in range(2):  # the transaction in flight, then one with everything else
            self._check()
            if self._batch is None:
                self._submit()
            if self._batch is None:
                return
            self._await()
            self._check()

    def _await(self) -> None:
        """Wait (this greenlet only) for the writer to finish what it was handed."""
        while self._outcome is None:
            gevent.sleep(FLUSH_POLL)

    def close(self) -> None:
        """Write everything noted so far, then close the file (the shutdown path)."""
        if self._closed:
            return
        self._closed = True
        self._prune = False
        self.flush()
        self._timer.stop()
        self._reader.spawn(self._close_reader).get()
        self._reader.kill()
        self._outcome = None
        self._handed = None  # the writer's last act: closing the file
        self._go.release()
        self._await()
        self._wake.stop()
        self._wake.close()
        os.close(self._lock)

    def _schedule(self) -> None:
        """Write at the end of this loop turn, unless a transaction is in flight (then after it).

        Not sooner than BATCH_SECONDS after the last one began: under load each
        transaction then carries many loop turns, which costs the disk far less.
        """
        # Before looking: a transaction ending after the look sets it again.
        self._due = False
        self._check()
        if self._scheduled or self._batch is not None or self._closed:
            return
        wait = self._began + BATCH_SECONDS - time.monotonic()
        if wait <= 0:
            self._scheduled = True
            gevent.get_hub().loop.run_callback(self._submit)
        elif not self._timed:
            self._later(wait)

    def _later(self, seconds: float) -> None:
        self._timer.stop()
        self._timer = gevent.get_hub().loop.timer(seconds)
        self._timer.start(self._on_timer)
        self._timed = True

    def _on_timer(self) -> None:
        self._timed = False
        self._submit()

    def _submit(self) -> None:
        self._scheduled = False
        self._check()
        if self._batch is not None:
            return
        if not (self._lines or self._topics or self._bans or self._prune):
            self._due = True
            return
        batch = self._batch = _Batch(self._lines, self._topics, self._bans)
        self._lines = deque(maxlen=QUEUE_LINES)
        self._topics = {}
        self._bans = {}
        self._prune = False
        self._lost_before = self.lost
        self._began = time.monotonic()
        self._outcome = None
        self._handed = batch
        self._go.release()

    def _check(self) -> None:
        """If the transaction in flight has ended, deal with it (in the loop; cheap when not)."""
        batch, outcome = self._batch, self._outcome
        if batch is None or outcome is None:
            return
        self._batch = None
        if outcome.error is not None:
            self._lose(len(batch.lines), outcome.error)
            # Unlike lines, a topic or a ban must not be lost: it goes again, unless changed since.
            self._topics = {**batch.topics, **self._topics}
            self._bans = {**batch.bans, **self._bans}
            if not self._closed and not self._scheduled:
                # Not at once: a full disk would make the retries a busy loop.
                self._scheduled = True
                self._later(RETRY_SECONDS)
            return
        self.commits += 1
        calm = time.monotonic() - self._failed >= CALM_SECONDS
        if self._troubled and calm and self.lost == self._lost_before and not self._closed:
            self._troubled = False
            log.info(RECOVERED, self._unreported)
            self._unreported = 0
        self._prune = outcome.more and not self._closed
        if self._lines or self._topics or self._bans or self._prune:
            self._schedule()

    def _lose(self, count: int, error: Optional[str]) -> None:
        self.lost += count
        self._unreported += count
        if error is not None:
            self._failed = time.monotonic()
        if not self._troubled:
            self._troubled = True
            if error is None:
                log.warning(FALLING_BEHIND)
            else:
                log.error(WRITE_FAILED, error)

    def _cutoff(self) -> int:
        return micros(time.time() - self._keep_days * DAY if self._keep_days else -math.inf)

    # --- the writer's side: in the writer thread, one transaction at a time ---------

    def _run(self) -> None:
        """The writer thread: one transaction at a time, as the loop hands them over.

        Waiting for the next, it tells the loop when BATCH_SECONDS have passed
        since the last began (``_due``: the next record submits what waits): under
        a flood gevent runs its timers late, or not at all, and a timer only
        covers a chat that has gone quiet.
        """
        while True:
            wait = self._began + BATCH_SECONDS - time.monotonic()
            if not self._go.acquire(timeout=max(wait, 0.0)):
                self._due = True
                self._go.acquire()
            batch = self._handed
            if batch is None:
                self._db.close()
                self._outcome = _Outcome(None, False)
                self._wake.send()
                return
            try:
                outcome = self._write(batch)
            except Exception as err:  # a bug must not kill the writer: the loop logs it
                outcome = _Outcome(repr(err), False)
            self._outcome = outcome
            self._due = True
            self._wake.send()

    def _write(self, batch: _Batch) -> _Outcome:
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            ids = {name: self._room_id(name) for name in {line.room for line in batch.lines}}
            chunks = _chunks(batch.lines, ids)
            for start in range(0, len(chunks), _CHUNKS_A_STATEMENT):
                part = chunks[start : start + _CHUNKS_A_STATEMENT]
                values = list(chain.from_iterable(part))
                db.execute(_INSERT_CHUNKS + ", ".join([_CHUNK_VALUES] * len(part)), values)
            for room, (text, by) in batch.topics.items():
                if text:
                    db.execute(
                        "INSERT OR REPLACE INTO topics (room, text, by) VALUES (?, ?, ?)", (room, text, by)
                    )
                else:
                    db.execute("DELETE FROM topics WHERE room = ?", (room,))
            for address, banned in batch.bans.items():
                if banned:
                    db.execute("INSERT OR IGNORE INTO bans (address) VALUES (?)", (address,))
                else:
                    db.execute("DELETE FROM bans WHERE address = ?", (address,))
            added: Counter[int] = Counter()
            for room_id, _, _, count, _, _ in chunks:
                added[room_id] += count
            removed, more = self._retain(added)
            db.execute("COMMIT")
        except sqlite3.Error as err:
            self._room_ids.clear()
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            return _Outcome(str(err), False)
        if self._keep_lines:
            counts = self._counts
            counts.update(added)
            counts.subtract(removed)
            over = self._over | set(added)
            self._over = {room_id for room_id in over if counts[room_id] > self._keep_lines}
        return _Outcome(None, more)

    def _room_id(self, name: str) -> int:
        room_id = self._room_ids.get(name)
        if room_id is None:
            self._db.execute("INSERT OR IGNORE INTO rooms (name) VALUES (?)", (name,))
            (room_id,) = self._db.execute("SELECT id FROM rooms WHERE name = ?", (name,)).fetchone()
            self._room_ids[name] = room_id
        return room_id

    def _retain(self, added: "Counter[int]") -> "tuple[Counter[int], bool]":
        """Delete or trim up to PRUNE_CHUNKS chunks past retention.

        How many lines of each room went, and whether more are due.
        """
        db = self._db
        removed: Counter[int] = Counter()
        budget = PRUNE_CHUNKS
        if self._keep_days:
            expired = db.execute(_EXPIRED, (budget, self._cutoff())).fetchall()
            db.executemany("DELETE FROM chunks WHERE id = ?", [(chunk_id,) for chunk_id, _, _ in expired])
            for _, room_id, lines in expired:
                removed[room_id] += lines
            budget -= len(expired)
        if self._keep_lines:
            for room_id in self._over | set(added):
                excess = self._counts[room_id] + added[room_id] - removed[room_id] - self._keep_lines
                oldest = db.execute(
                    "SELECT id, lines, data, times FROM chunks WHERE room = ? ORDER BY last, id LIMIT ?",
                    (room_id, max(0, budget)),
                )
                for chunk_id, lines, data, times in oldest:
                    if excess <= 0:
                        break
                    if lines <= excess:
                        db.execute("DELETE FROM chunks WHERE id = ?", (chunk_id,))
                        gone = lines
                    else:
                        kept = [
                            Message("", nick, host, text, kind, at)
                            for at, nick, host, kind, text in decode_chunk(data, times)[excess:]
                        ]
                        first, _, count, data, times = _encode(kept)
                        db.execute(
                            "UPDATE chunks SET first = ?, lines = ?, data = ?, times = ? WHERE id = ?",
                            (first, count, data, times, chunk_id),
                        )
                        gone = excess
                    removed[room_id] += gone
                    excess -= gone
                    budget -= 1
        return removed, budget <= 0

    def _count_lines(self) -> None:
        rows = self._db.execute("SELECT room, sum(lines) FROM chunks GROUP BY room").fetchall()
        self._counts = Counter(dict(rows))
        self._over = {room_id for room_id, count in self._counts.items() if count > self._keep_lines}

    # --- readers ------------------------------------------------------------------

    def _reads(self) -> sqlite3.Connection:
        if self._reading is None:
            self._reading = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        return self._reading

    def _read(
        self, room: str, before: float, limit: int, after: float = -math.inf, newest: bool = True
    ) -> "tuple[Message, ...]":
        """``limit`` lines of ``room`` from ``after`` to before ``before``: the newest, read from the
        chunk straddling ``before`` back, or the oldest, read from the one straddling ``after`` on."""
        until, since = micros(before), max(micros(after), self._cutoff())
        db = self._reads()
        chunks: Iterable[tuple[int, str, Optional[bytes]]]
        if newest:
            straddling = db.execute(_CHUNKS_FROM + " LIMIT 1", (room, until)).fetchall()
            chunks = chain(straddling, db.execute(_CHUNKS_BEFORE, (room, until, since)))
        else:
            chunks = db.execute(_CHUNKS_FROM, (room, since))
        found: list[_Line] = []
        for first, data, times in chunks:
            if first >= until:
                if newest:
                    continue
                break
            found.extend(line for line in decode_chunk(data, times) if since <= micros(line[0]) < until)
            if len(found) >= limit:
                break
        found.sort(key=lambda line: line[0])
        return tuple(
            Message(room, nick, host, text, kind, at)
            for at, nick, host, kind, text in (found[-limit:] if newest else found[:limit])
        )

    def _read_room(self, name: str, lines: int) -> "tuple[str, tuple[Message, ...]]":
        found = self._reads().execute("SELECT text FROM topics WHERE room = ?", (name,)).fetchone()
        return (found[0] if found else "", self._read(name, math.inf, lines) if lines else ())

    def _read_bans(self) -> "frozenset[str]":
        return frozenset(address for (address,) in self._reads().execute("SELECT address FROM bans"))

    def _close_reader(self) -> None:
        if self._reading is not None:
            self._reading.close()
            self._reading = None


def _connect(path: str) -> sqlite3.Connection:
    """A connection to a gchat store in WAL mode, its schema in place; StoreError if not one."""
    try:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as err:
        raise StoreError(f"cannot open the store {path}: {err}") from None
    try:
        _prepare(db, path)
    except sqlite3.OperationalError as err:
        db.close()
        raise StoreError(f"cannot open the store {path}: {err}") from None
    except sqlite3.DatabaseError as err:
        db.close()
        raise StoreError(f"the store {path} is damaged ({err}): move it away to start afresh") from None
    except StoreError:
        db.close()
        raise
    return db


def _prepare(db: sqlite3.Connection, path: str) -> None:
    def one(sql: str) -> object:
        return db.execute(sql).fetchone()[0]

    application = one("PRAGMA application_id")
    tables = one("SELECT count(*) FROM sqlite_master")
    if application != APPLICATION_ID and (application or tables):
        raise StoreError(f"{path} is not a gchat store: give --store a new file or one gchat made")
    version = one("PRAGMA user_version")
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise StoreError(f"the store {path} was made by a newer gchat (schema {version})")
    if one("PRAGMA journal_mode = WAL") != "wal":
        raise StoreError(f"cannot open the store {path}: WAL mode refused")
    db.execute("PRAGMA synchronous = NORMAL")
    if not tables:
        db.executescript(
            f"BEGIN; {_SCHEMA} PRAGMA application_id = {APPLICATION_ID}; "
            f"PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
        )
    elif version == 1:
        db.executescript(f"BEGIN; {_UPGRADE_1}; PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
    check = one("PRAGMA quick_check")
    if check != "ok":
        raise sqlite3.DatabaseError(str(check))
