"""Issue 10's read-ahead and linger attacks, measured on one ``python -m gchat`` (not part of the suite).

    python tests/perf/hostile.py ghosts -n 200     # 64 KiB of /msg lines each, then a reset
    python tests/perf/hostile.py shutdown -n 100   # SIGTERM with clients that never close
    python tests/perf/hostile.py quit -n 100       # /quit, and the client never closes
    python tests/perf/hostile.py throttled -n 500  # server CPU while clients are held back by --rate

``--tree DIR`` runs the gchat package found in DIR (e.g. an older checkout) instead of this one.
"""

import argparse
import contextlib
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent.parent
NOTICE = b"*** server shutting down\n"


class Server:
    def __init__(self, tree: str, *flags: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gchat", "--port", "0", *flags],
            cwd=tree,
            env={**os.environ, "PYTHONPATH": tree},
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
        )
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            match = re.search(rb"listening on .+:(\d+)", raw)
            if match:
                self.port = int(match.group(1))
                break
        else:
            raise SystemExit("the server did not start")
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()

    def connect(self, source: str = "127.0.0.1") -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10, source_address=(source, 0))
        return sock

    def status_kb(self, field: str) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise KeyError(field)

    def descriptors(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def until(condition: Callable[[], bool], limit: float) -> "float | None":
    """Seconds until ``condition`` holds (checked every 10 ms), or None after ``limit``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > limit:
            return None
        time.sleep(0.01)
    return time.monotonic() - started


def shown(seconds: "float | None", limit: float) -> str:
    return f"{seconds:.2f} s" if seconds is not None else f"not within {limit:g} s"


def read_to_eof(sock: socket.socket) -> bytes:
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def ghosts(tree: str, count: int) -> None:
    server = Server(tree, "--max-per-ip", str(count))
    victim = server.connect("127.0.0.2")
    stream = victim.makefile("rb")
    stream.readline()
    nick = re.search(rb"You are (\S+)", stream.readline()).group(1).decode()  # type: ignore[union-attr]
    received: list[float] = []

    def read_victim() -> None:
        for line in stream:
            if re.match(rb"\*guest\d+\* ", line):
                received.append(time.monotonic())

    victim.settimeout(None)
    threading.Thread(target=read_victim, daemon=True).start()
    rss, descriptors = server.status_kb("VmRSS"), server.descriptors()
    chunk = (f"/msg {nick} x\n".encode() * 65536)[:65536]
    attackers = [server.connect() for _ in range(count)]
    for index, sock in enumerate(attackers):
        # Each in a room of its own: nothing said later reaches it, so no failed send gives it away.
        sock.sendall(f"/join g{index}\n".encode() + chunk)
    time.sleep(0.5)  # let the server read what it will
    for sock in attackers:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    gone = time.monotonic()
    rss_after = server.status_kb("VmRSS")

    def admitted() -> bool:
        with server.connect() as probe:
            return probe.recv(100).startswith(b"Welcome")

    place = until(admitted, 60)
    released = until(lambda: server.descriptors() <= descriptors, 60)
    time.sleep(max(0.0, 20 - (time.monotonic() - gone)))
    late = sum(1 for stamp in received if stamp > gone + 1)
    peak = server.status_kb("VmHWM")
    print(f"{count} connections, 64 KiB of /msg lines each, then a reset:")
    print(f"  RSS {rss} KiB before, {rss_after} KiB just after the resets, peak {peak} KiB")
    print(f"  a --max-per-ip place free after {shown(place, 60)}")
    print(f"  all sessions released after {shown(released, 60)}")
    print(f"  private lines to the victim: {len(received)}, {late} of them more than 1 s after the resets")
    server.proc.kill()


def readers(server: Server, count: int) -> "list[socket.socket]":
    clients = [server.connect() for _ in range(count)]
    for sock in clients:
        sock.sendall(b"/ping\n")
        data = b""
        while b"/ping" not in data:
            data += sock.recv(65536)
    return clients


def shutdown(tree: str, count: int) -> None:
    server = Server(tree, "--shutdown-timeout", "30")
    clients = readers(server, count)
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    told = sum(read_to_eof(sock).endswith(NOTICE) for sock in clients)  # and the sockets stay open
    status = server.proc.wait(60)
    print(
        f"{count} clients that read everything and never close, --shutdown-timeout 30, SIGTERM: "
        f"exit {status} after {time.monotonic() - started:.2f} s; {told} of {count} got the notice"
    )


def quit_(tree: str, count: int) -> None:
    server = Server(tree, "--shutdown-timeout", "30", "--rate", "0")
    descriptors = server.descriptors()
    clients = [server.connect() for _ in range(count)]
    for sock in clients:
        sock.sendall(b"/quit\n")
    for sock in clients:
        read_to_eof(sock)  # and the socket stays open
    released = until(lambda: server.descriptors() <= descriptors, 60)
    print(
        f"{count} clients /quit and never close, --shutdown-timeout 30: "
        f"their descriptors released after {shown(released, 60)}"
    )
    server.proc.kill()


def throttled(tree: str, count: int) -> None:
    server = Server(tree, "--history", "0")
    clients = [server.connect() for _ in range(count)]
    for index, sock in enumerate(clients):
        sock.setblocking(False)
        # A room each (no fan-out), then far more than --rate 20 lets through; all stay connected.
        sock.send(f"/join r{index}\n".encode() + b"/nosuch\n" * 20000)
    time.sleep(3)
    cpu, started = server.cpu_seconds(), time.monotonic()
    while time.monotonic() - started < 10:
        for sock in clients:
            with contextlib.suppress(BlockingIOError):
                sock.recv(1 << 20)
        time.sleep(0.05)
    used = (server.cpu_seconds() - cpu) / (time.monotonic() - started)
    print(f"{count} clients held back by --rate 20 ({count * 20} lines/s): server CPU {used:.0%} of a core")
    server.proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("attack", choices=["ghosts", "shutdown", "quit", "throttled"])
    parser.add_argument("-n", type=int, default=100, help="connections (100)")
    parser.add_argument("--tree", default=str(ROOT), help="directory holding the gchat package to run")
    args = parser.parse_args()
    run = {"ghosts": ghosts, "shutdown": shutdown, "quit": quit_, "throttled": throttled}[args.attack]
    run(args.tree, args.n)


if __name__ == "__main__":
    main()
