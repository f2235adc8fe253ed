"""Amplification by one address (issue 10, item 7), measured against a running gchat.

Three attacks, each from 20 connections of one address (127.0.0.2); the
victims connect from other loopback addresses (127.1.x.y), so that only the
attacker's address is the one limited.

``joins``: MEMBERS clients sit in ``#lobby`` (reading nothing: for a
measurement of a few seconds the kernel's buffers and ``--max-backlog`` hold
what they are sent); the attackers toggle ``/join #x`` and ``/join #lobby`` as
fast as the server reads them. A few sample members count the lines they
receive: times MEMBERS, that is what the server sends. A bystander (one more
member) measures the round trip of ``/ping`` before and during the attack.
``nicks``: the same with ``/nick tickN`` and ``/nick tockN`` toggled.
``churn``: the same, but the attackers only connect, read the greeting and
close, over and over (each a joined and a quit notice to the lobby); with
``--pid``, the server's CPU per attacker connection (``--members 0`` for the
cost of a connection alone; with ``--connect-rate`` on the server, of a refusal).

``msgs``: a victim reads at most ``--victim-rate`` bytes a second while the
attackers send ``/msg VICTIM <--size bytes>`` as fast as the server reads them;
does the server cut the victim off as a slow consumer, and when.

    python tests/perf/amplify.py joins --port 5000
    python tests/perf/amplify.py churn --port 5000
    python tests/perf/amplify.py churn --port 5000 --members 0 --pid $SERVER_PID
    python tests/perf/amplify.py msgs --port 5000 --size 4000

Start the server first, e.g. ``python -m gchat --port 5000 --max-clients 5000``
(defaults otherwise).
"""

import argparse
import re
import selectors
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

# The package's own CPU reading: it needs the project on the path first, as run.py does.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from gchat.bench.procs import server_cpu_s

ATTACKER = "127.0.0.2"
ATTACKERS = 20
PONG = b"!!! unknown command: /ping (try /help)\n"


def member_source(index: int) -> str:
    return f"127.1.{index // 250}.{index % 250 + 1}"


def connect(port: int, source: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0))
    return sock


def greet(sock: socket.socket) -> str:
    """Read up to the status line; the client's nick."""
    data = b""
    while b"Type /help" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise SystemExit(f"closed during the greeting: {data!r}")
        data += chunk
    match = re.search(rb"You are (\S+) in", data)
    assert match
    return match.group(1).decode()


class Flooder(threading.Thread):
    """One attacker connection: writes ``lines`` for ever, drains what it is sent."""

    def __init__(self, port: int, payload: bytes, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.sock = connect(port, ATTACKER)
        greet(self.sock)
        self.payload = payload
        self.stop = stop
        self.received = b""
        self.refusals = 0
        self.sent = 0
        # When the server first said the target was gone (it cut the victim off).
        self.gone: float | None = None

    def run(self) -> None:
        self.sock.setblocking(False)
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
        out = memoryview(self.payload)
        tail = b""
        while not self.stop.is_set():
            for _, events in sel.select(0.2):
                if events & selectors.EVENT_READ:
                    try:
                        chunk = self.sock.recv(1 << 20)
                    except BlockingIOError:
                        chunk = b"?"
                    if not chunk:
                        return
                    tail = (tail + chunk)[-200:]
                    self.refusals += chunk.count(b"!!! too many")
                    if self.gone is None and b"!!! no such user" in tail:
                        self.gone = time.monotonic()
                    self.received = tail
                if events & selectors.EVENT_WRITE:
                    try:
                        sent = self.sock.send(out)
                    except BlockingIOError:
                        sent = 0
                    except OSError:
                        return
                    self.sent += sent
                    out = out[sent:]
                    if not out:
                        out = memoryview(self.payload)


class Churner(threading.Thread):
    """One attacker's connection after another: connect, read the greeting, close; for ever."""

    def __init__(self, port: int, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.stop = stop
        self.refusals = 0
        self.connects = 0

    def run(self) -> None:
        while not self.stop.is_set():
            with connect(self.port, ATTACKER) as sock:
                data = b""
                while b"Type /help" not in data and b"!!!" not in data:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                self.refusals += data.count(b"!!! ")
                self.connects += 1


def drain_count(sock: socket.socket, seconds: float) -> int:
    """Lines received on ``sock`` in ``seconds``."""
    total = 0
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            chunk = sock.recv(1 << 20)
        except TimeoutError:
            break
        if not chunk:
            break
        total += chunk.count(b"\n")
    return total


def pings(sock: socket.socket, count: int) -> "list[float]":
    """Round trips of ``/ping`` in ms, reading whatever else comes in between."""
    times = []
    for _ in range(count):
        start = time.perf_counter()
        sock.sendall(b"/ping\n")
        data = b""
        while PONG not in data:
            sock.settimeout(30)
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise SystemExit("the bystander was disconnected")
            data = (data + chunk)[-4096:]
        times.append((time.perf_counter() - start) * 1000)
        time.sleep(0.02)
    return times


def percentiles(times: "list[float]") -> str:
    times = sorted(times)
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    return f"p50 {statistics.median(times):.1f} ms, p99 {p99:.1f} ms"


def joins(args: argparse.Namespace) -> None:
    members = []
    for index in range(args.members):
        sock = connect(args.port, member_source(index))
        members.append(sock)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    for sock in members:
        greet(sock)
    samples = members[:3]
    for sock in samples:
        drain_count(sock, 0.5)  # the members' own join notices
    print(f"bystander /ping without attack: {bystander(args)}", flush=True)
    stop = threading.Event()
    if args.attack == "joins":
        flooders = [Flooder(args.port, b"/join #x\n/join #lobby\n" * 2000, stop) for _ in range(ATTACKERS)]
    elif args.attack == "nicks":
        flooders = [
            Flooder(args.port, b"/nick tick%d\n/nick tock%d\n" % (n, n) * 2000, stop)
            for n in range(ATTACKERS)
        ]
    else:
        flooders = [Churner(args.port, stop) for _ in range(ATTACKERS)]
    for flooder in flooders:
        flooder.start()
    time.sleep(1.0)  # past the attackers' burst
    churners = [f for f in flooders if isinstance(f, Churner)]

    def tally() -> "tuple[Optional[float], int, float]":
        """The server's CPU seconds, the attackers' connections, and the time, for churn's --pid."""
        return server_cpu_s(args.pid), sum(f.connects for f in churners), time.monotonic()

    cpu_before, connects_before, started = tally()
    counts: list[int] = []

    def count(sock: socket.socket) -> None:
        drain_count(sock, 0.5)  # what was queued before the window
        counts.append(drain_count(sock, args.seconds))

    threads = [threading.Thread(target=count, args=(sock,)) for sock in samples]
    for thread in threads:
        thread.start()
    loud = bystander(args)
    for thread in threads:
        thread.join()
    cpu_after, connects_after, ended = tally()
    stop.set()
    if counts:
        per_member = statistics.mean(counts) / args.seconds
        print(
            f"sample members received {per_member:,.1f} notices/s each, "
            f"times {args.members} members = {per_member * args.members:,.0f} notices/s from the server",
            flush=True,
        )
    if cpu_before is not None and cpu_after is not None and connects_after > connects_before:
        made, used, seconds = connects_after - connects_before, cpu_after - cpu_before, ended - started
        print(
            f"server CPU: {used / made * 1e6:.0f} us an attacker connection ({made / seconds:,.0f} a"
            f" second, the server's core {100 * used / seconds:.0f}% busy)",
            flush=True,
        )
    print(f"bystander /ping during the attack: {loud}", flush=True)
    print(f"refusal lines the attackers got: {sum(f.refusals for f in flooders):,}", flush=True)
    if args.attack == "churn":
        connects = sum(f.connects for f in flooders if isinstance(f, Churner))
        print(f"attacker connections made: {connects:,}", flush=True)


def bystander(args: argparse.Namespace) -> str:
    """/ping round trips of a new member, measured in a process of its own (no GIL shared with the attack)."""
    command = [sys.executable, __file__, "ping", "--port", str(args.port), "--pings", str(args.pings)]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()


def ping(args: argparse.Namespace) -> None:
    sock = connect(args.port, "127.1.99.1")
    greet(sock)
    print(percentiles(pings(sock, args.pings)))


def msgs(args: argparse.Namespace) -> None:
    victim = connect(args.port, member_source(0))
    victim.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    nick = greet(victim)
    stop = threading.Event()
    line = f"/msg {nick} {'x' * args.size}\n".encode()
    flooders = [Flooder(args.port, line * 200, stop) for _ in range(ATTACKERS)]
    started = time.monotonic()
    for flooder in flooders:
        flooder.start()
    received = 0
    cut = None
    step = 0.05
    while time.monotonic() - started < args.seconds:
        # At most victim_rate bytes a second, in steps of 50 ms.
        victim.settimeout(1.0)
        budget = int(args.victim_rate * step)
        try:
            chunk = victim.recv(budget)
        except TimeoutError:
            chunk = b"?"
        if not chunk:
            cut = time.monotonic() - started
            break
        received += len(chunk)
        time.sleep(step)
    stop.set()
    elapsed = time.monotonic() - started
    # The server cuts a slow consumer without waiting for the kernel to send what it holds
    # (megabytes on loopback): the victim still reads that, so the attackers' first
    # "no such user" dates the cut.
    gone = [f.gone for f in flooders if f.gone is not None]
    if gone:
        verdict = (
            f"CUT as a slow consumer after {min(gone) - started:.1f} s "
            f"(EOF read after {cut or elapsed:.1f} s)"
        )
    else:
        verdict = f"still connected after {elapsed:.1f} s"
    print(
        f"victim reading {args.victim_rate / 1000:.0f} KB/s: {verdict}, received {received / 1000:,.0f} KB "
        f"({received / elapsed / 1000:.1f} KB/s); refusal lines the attackers got: "
        f"{sum(f.refusals for f in flooders):,}; "
        f"the attackers wrote {sum(f.sent for f in flooders) / 1000:,.0f} KB",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("attack", choices=("joins", "nicks", "churn", "msgs", "ping"))
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--pings", type=int, default=100)
    parser.add_argument(
        "--victim-rate", type=float, default=200_000.0, help="msgs: the victim's reading speed, bytes/s"
    )
    parser.add_argument("--size", type=int, default=400, help="msgs: bytes of text in each /msg")
    parser.add_argument(
        "--pid", type=int, action="append", default=[], help="churn: the server's process, for its CPU"
    )
    args = parser.parse_args()
    {"joins": joins, "nicks": joins, "churn": joins, "msgs": msgs, "ping": ping}[args.attack](args)


if __name__ == "__main__":
    sys.exit(main())
