"""The figures README gives for ``--store``: its size per million lines, and what a SIGKILL loses.

``size``: a million chat lines written through ``gchat.store.Store`` (as the
chat records them, 101 rooms, 54-character lines), then the file's size and
the write rate.

``kill``: a real ``python -m gchat --store`` on a fresh file, one client
sending lines at ``--rate`` lines/s (0: as fast as the server takes them)
and another reading them; after a random 0.5 to 1.5 s the server gets
SIGKILL. A line the reader had received but the file does not hold was lost:
the figure is how long before the kill the oldest such line was delivered
(0 when nothing delivered was lost), over ``--runs`` runs.

Run from the repository root: ``python tests/perf/store_figures.py size`` or ``kill``.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from gchat.store import decode_chunk  # noqa: E402

TEXT = "hello everyone, this is a chat line of ordinary length"


def size(lines: int) -> None:
    import gevent

    from gchat.news import Kind, Message
    from gchat.store import Store

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "chat.db"
        store = Store.open(str(path))
        rooms = [f"#room{number}" for number in range(100)] + ["#lobby"]
        now = time.time()
        started = time.perf_counter()
        for number in range(lines):
            room = rooms[number % len(rooms)]
            store.record(
                Message(room, f"user{number % 500}", "203.0.113.7", TEXT, Kind.SAY, now + number / 1e3)
            )
            if number % 200 == 199:
                gevent.sleep(0)  # a loop turn
                if number % 10000 == 9999:
                    store.flush()  # stay within the queue: this measures the file, not the dropping
        store.close()
        elapsed = time.perf_counter() - started
        total = sum(
            os.path.getsize(f"{path}{suffix}") for suffix in ("", "-wal") if os.path.exists(f"{path}{suffix}")
        )
        print(f"{lines} lines in {elapsed:.1f} s ({lines / elapsed:,.0f} lines/s), lost {store.lost}")
        print(
            f"file: {total / 1e6:.1f} MB, {total / lines:.0f} bytes a line ({total / lines:.0f} MB a million)"
        )


def _start(path: Path) -> tuple[subprocess.Popen[bytes], int]:
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gchat",
            "--port",
            "0",
            "--rate",
            "0",
            "--store",
            str(path),
            "--log-level",
            "info",
        ],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert server.stderr is not None
    for raw in server.stderr:
        found = re.search(rb"gchat listening on [^\s:]+:(\d+)", raw)
        if found:
            threading.Thread(target=server.stderr.read, daemon=True).start()
            return server, int(found.group(1))
    raise SystemExit("gchat did not start")


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.recv(4096)  # welcome and status
    return sock


def kill_once(rate: float, seconds: float) -> tuple[float, int, int]:
    """(age of the oldest delivered line lost at the kill, lines delivered, lines lost)."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "chat.db"
        server, port = _start(path)
        talker, reader = _connect(port), _connect(port)
        delivered: dict[str, float] = {}
        stop = threading.Event()

        def read() -> None:
            buffer = b""
            with reader:
                while not stop.is_set():
                    try:
                        chunk = reader.recv(65536)
                    except OSError:
                        return
                    if not chunk:
                        return
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")
                    now = time.monotonic()
                    for line in lines:
                        if line.startswith(b"<"):
                            delivered[line.split(b"> ", 1)[1].decode()] = now

        reading = threading.Thread(target=read, daemon=True)
        reading.start()
        started = time.monotonic()
        number = 0
        while time.monotonic() - started < seconds:
            talker.sendall(f"line {number}\n".encode())
            number += 1
            if rate:
                time.sleep(max(0.0, started + number / rate - time.monotonic()))
        killed = time.monotonic()
        server.send_signal(signal.SIGKILL)
        server.wait()
        stop.set()
        talker.close()
        reading.join(5)
        with sqlite3.connect(path) as db:
            chunks = db.execute("SELECT data, times FROM chunks")
            kept = {line[4] for data, times in chunks for line in decode_chunk(data, times)}
        lost = [at for text, at in delivered.items() if text not in kept]
        return (killed - min(lost) if lost else 0.0), len(delivered), len(lost)


def kill(runs: int, rate: float) -> None:
    windows = []
    for run in range(runs):
        window, delivered, lost = kill_once(rate, random.uniform(0.5, 1.5))
        windows.append(window)
        print(
            f"run {run + 1}: {delivered} lines delivered, {lost} lost,"
            f" the oldest of them delivered {window * 1e3:.1f} ms before the kill"
        )
    print(
        f"at {rate or 'full'} lines/s over {runs} runs: loss window median"
        f" {statistics.median(windows) * 1e3:.1f} ms, max {max(windows) * 1e3:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    sized = sub.add_parser("size", help="the store's size per million lines")
    sized.add_argument("--lines", type=int, default=1_000_000)
    killed = sub.add_parser("kill", help="what a SIGKILL loses")
    killed.add_argument("--runs", type=int, default=10)
    killed.add_argument(
        "--rate", type=float, default=1000.0, help="lines/s the talker sends; 0: as fast as it can"
    )
    options = parser.parse_args()
    if options.what == "size":
        size(options.lines)
    else:
        kill(options.runs, options.rate)


if __name__ == "__main__":
    main()
