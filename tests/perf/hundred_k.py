"""100,000 clients on one machine: several gchat nodes, one port, one Redis, one line to all.

Issue 5's "Done when": as many concurrent clients as asked for (default
100,000), over as many nodes as the open-files limit requires, all nodes
listening on ONE port (``--reuse-port``: the kernel spreads the connections)
and sharing one ``redis-server`` (``--bus``). Then one client says one line,
and every other client must receive exactly that line; the run reports the
time for it to reach all of them and the memory it all takes.

What it does, every wait bounded (a stalled run fails, it never hangs):

1. starts ``redis-server`` on a free port, no persistence;
2. starts K nodes one after another (so each node id in Redis is known to
   belong to a pid), all ``--reuse-port`` on one free port, with
   ``--announce-limit`` (without it each of N joins into one room is announced
   to the whole room: N²/2 notices, 5e9 for 100,000), ``--history 0``,
   ``--rate 0`` and ``--log-level warning``; each node's stderr goes to a file;
3. starts G load generators (this file, ``_generator``), each a single process
   with plain non-blocking sockets on one epoll, each binding its sockets to
   its own source address (127.0.0.2, 127.0.0.3, ...; all of 127/8 is
   loopback) and to source ports it counts itself: the kernel's ephemeral
   range gives a (source, destination) pair only ~28,000 ports, and its
   search for a free one grows slow as they fill (see ``Generator.open``);
4. connects every client and waits for its welcome and status line (the
   status line is sent when the node applies the client's own join as it comes
   back from Redis: the client is then in #lobby for the whole cluster);
5. waits until the nodes are quiet, counts clients per node (Redis's user
   table and the nodes' open descriptors) and reads every process's memory;
6. ``--rounds`` times: one client sends one line; every generator timestamps
   each client's receipt with ``time.monotonic_ns()`` (CLOCK_MONOTONIC is one
   clock for the whole machine) and checks the line byte for byte;
7. checks that nothing else arrived, no client was dropped, no node lost its
   bus link or was declared lost, and reports.

Every process it starts is in its own session, dies with this one
(PR_SET_PDEATHSIG) and is killed in a ``finally``.

    python tests/perf/hundred_k.py                              # 100,000 clients, 6 nodes
    python tests/perf/hundred_k.py --clients 10000 --nodes 2    # a quick proof
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import ctypes
import datetime
import errno
import gc
import json
import math
import os
import platform
import resource
import secrets
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
PER_PROCESS = 17000
# Generators bind their source ports themselves, counting up from here (see Generator.open).
FIRST_SOURCE_PORT = 10000
LAST_SOURCE_PORT = 65535
WELCOME = b"Welcome to the chatroom!"
STATUS = b"*** You are "
START_TIMEOUT = 30.0
CONTROL_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


# ---------------------------------------------------------------------------
# The load generator: one process, N client sockets on one epoll.
# It talks to the orchestrator in JSON lines: commands on stdin, events on stdout.
# ---------------------------------------------------------------------------

NEW, HANDSHAKE, READY, DEAD = 0, 1, 2, 3


class Generator:
    def __init__(self, args: argparse.Namespace) -> None:
        self.host = args.host
        self.port = args.port
        self.source = args.source
        self.n = args.clients
        self.window = args.window
        self.sender = args.sender
        self.socks: list[socket.socket | None] = [None] * self.n
        self.state = bytearray(self.n)
        self.bufs: list[bytes] = [b""] * self.n
        self.nicks: list[str] = [""] * self.n
        self.by_fd: dict[int, int] = {}
        self.epoll = select.epoll()
        self.epoll.register(0, select.EPOLLIN)
        self.control = b""
        self.next = 0
        self.source_port = FIRST_SOURCE_PORT
        self.in_flight = 0
        self.ready = 0
        self.failed = 0
        self.dropped = 0  # clients lost after they were ready
        self.errors: collections.Counter[str] = collections.Counter()
        self.connecting = False
        self.t_start = 0
        self.t_last_ready = 0
        self.pre_lines = 0  # lines after the status line, before the first round (join notices)
        self.stray = 0  # lines no round expected: duplicates, echoes, anything else
        self.stray_samples: list[str] = []
        # The current round.
        self.round = 0
        self.expected = b""
        self.got = bytearray(self.n)
        self.times: list[int | None] = []
        self.remaining = 0
        self.wrong = 0
        self.wrong_samples: list[str] = []
        self.reported = True

    # -- output to the orchestrator

    def emit(self, **message: Any) -> None:
        data = (json.dumps(message, separators=(",", ":")) + "\n").encode()
        view = memoryview(data)
        while view:
            view = view[os.write(1, view) :]

    # -- connecting

    def open(self) -> socket.socket:
        """A socket connecting (non-blocking) from the next free port of this generator's address.

        The source port is chosen here, not by the kernel: the kernel's search
        for an ephemeral port (``__inet_hash_connect``) walks ports whose bind
        buckets are shared by every source address, and with ~100,000
        connections over ~28,000 ports it used most of a core per generator
        (the connect rate fell from ~5,000/s to ~450/s). An explicit bind
        looks up only (address, port). SO_REUSEADDR lets the port be taken
        over from a TIME_WAIT socket of an earlier run (the 4-tuple differs:
        every run listens on a fresh port).
        """
        while True:
            port = self.source_port
            if port > LAST_SOURCE_PORT:
                raise OSError(errno.EADDRNOTAVAIL, "no source port left")
            self.source_port += 1
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((self.source, port))
                code = sock.connect_ex((self.host, self.port))
            except OSError as error:
                sock.close()
                if error.errno == errno.EADDRINUSE:
                    continue  # someone else's port on this address
                raise
            if code in (0, errno.EINPROGRESS):
                return sock
            sock.close()
            if code not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL):
                raise OSError(code, os.strerror(code))

    def fill(self) -> None:
        while self.connecting and self.next < self.n and self.in_flight < self.window:
            index = self.next
            self.next += 1
            try:
                sock = self.open()
            except OSError as error:
                self.state[index] = DEAD
                self.failed += 1
                self.errors[f"connect: {error.strerror or error}"] += 1
                continue
            if index == 0 and self.sender:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.socks[index] = sock
            self.by_fd[sock.fileno()] = index
            self.state[index] = HANDSHAKE
            self.in_flight += 1
            # Readable covers both the welcome and a failed connect (EPOLLERR).
            self.epoll.register(sock.fileno(), select.EPOLLIN)

    def fail(self, index: int, reason: str) -> None:
        state = self.state[index]
        if state == DEAD:
            return
        sock = self.socks[index]
        if sock is not None:
            self.by_fd.pop(sock.fileno(), None)
            with contextlib.suppress(OSError, ValueError):
                self.epoll.unregister(sock.fileno())
            sock.close()
            self.socks[index] = None
        self.state[index] = DEAD
        self.errors[reason] += 1
        if state == HANDSHAKE:
            self.in_flight -= 1
            self.failed += 1
        elif state == READY:
            self.ready -= 1
            self.dropped += 1
            if self.round and not self.got[index] and self.times[index] is not None:
                self.got[index] = 1
                self.remaining -= 1
                if not self.remaining:
                    self.report_round(True)

    def handshake(self, index: int, data: bytes, now: int) -> None:
        buf = self.bufs[index] + data
        first = buf.find(b"\n")
        if first >= 0 and buf.startswith(b"!!! "):
            self.fail(index, "refused: " + buf[:first].decode(errors="replace"))
            return
        second = buf.find(b"\n", first + 1) if first >= 0 else -1
        if second < 0:
            if len(buf) > 4096:
                self.fail(index, "no status line in 4 KiB")
            else:
                self.bufs[index] = buf
            return
        status = buf[first + 1 : second]
        words = status.split(b" ")
        if buf[:first] != WELCOME or not status.startswith(STATUS) or words[4:6] != [b"in", b"#lobby."]:
            self.fail(index, "unexpected greeting: " + buf[: second + 1].decode(errors="replace")[:120])
            return
        self.bufs[index] = b""
        self.nicks[index] = words[3].decode()
        self.pre_lines += buf.count(b"\n", second + 1)
        self.state[index] = READY
        self.in_flight -= 1
        self.ready += 1
        self.t_last_ready = now

    def note_stray(self, data: bytes) -> None:
        self.stray += max(data.count(b"\n"), 1)
        if len(self.stray_samples) < 5:
            self.stray_samples.append(data[:200].decode(errors="replace"))

    def readable(self, index: int) -> None:
        sock = self.socks[index]
        if sock is None:
            return
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as error:
            self.fail(index, f"recv: {error.strerror or error}")
            return
        now = time.monotonic_ns()
        if not data:
            self.fail(index, "closed by the server")
            return
        state = self.state[index]
        if state == HANDSHAKE:
            self.handshake(index, data, now)
        elif not self.round:
            self.pre_lines += data.count(b"\n")
        elif self.got[index] or self.times[index] is None:
            # Already has its line, or is the sender (no echo): nothing may come.
            self.note_stray(data)
        else:
            buf = self.bufs[index] + data
            end = buf.find(b"\n")
            if end < 0:
                self.bufs[index] = buf
                return
            self.bufs[index] = b""
            line = buf[: end + 1]
            if line == self.expected:
                self.times[index] = now
            else:
                self.wrong += 1
                if len(self.wrong_samples) < 5:
                    self.wrong_samples.append(line[:200].decode(errors="replace"))
            if end + 1 < len(buf):
                self.note_stray(buf[end + 1 :])
            self.got[index] = 1
            self.remaining -= 1
            if not self.remaining:
                self.report_round(True)

    # -- rounds

    def arm(self, round_number: int, line: str) -> None:
        self.round = round_number
        self.expected = line.encode() + b"\n"
        self.got = bytearray(self.n)
        # None: not a receiver (dead, or the sender); -1: not (yet) received.
        self.times = [
            -1 if self.state[index] == READY and not (index == 0 and self.sender) else None
            for index in range(self.n)
        ]
        self.remaining = sum(1 for value in self.times if value is not None)
        self.wrong = 0
        self.wrong_samples = []
        self.reported = False
        self.emit(ev="armed", round=round_number, receivers=self.remaining)
        if not self.remaining:
            self.report_round(True)

    def report_round(self, complete: bool) -> None:
        if self.reported:
            return
        self.reported = True
        self.emit(
            ev="round",
            round=self.round,
            complete=complete,
            times=self.times,
            wrong=self.wrong,
            wrong_samples=self.wrong_samples,
        )

    def send_line(self, text: str) -> None:
        sock = self.socks[0]
        if not self.sender or sock is None or self.state[0] != READY:
            self.emit(ev="error", message="the sender is not connected")
            return
        data = text.encode() + b"\n"
        t0 = time.monotonic_ns()
        sent = sock.send(data)
        if sent != len(data):
            self.emit(ev="error", message=f"the sender sent {sent} of {len(data)} bytes")
            return
        self.emit(ev="sent", t0=t0)

    def status(self) -> dict[str, Any]:
        return {
            "ready": self.ready,
            "failed": self.failed,
            "dropped": self.dropped,
            "in_flight": self.in_flight,
            "started": self.next,
            "errors": dict(self.errors.most_common(10)),
            "pre_lines": self.pre_lines,
            "stray": self.stray,
            "stray_samples": self.stray_samples,
        }

    def command(self, message: dict[str, Any]) -> bool:
        cmd = message["cmd"]
        if cmd == "connect":
            self.connecting = True
            self.t_start = time.monotonic_ns()
        elif cmd == "arm":
            self.arm(message["round"], message["line"])
        elif cmd == "send":
            self.send_line(message["text"])
        elif cmd == "finish":
            self.report_round(False)
        elif cmd == "status":
            self.emit(ev="status", **self.status())
        elif cmd == "quit":
            return False
        return True

    def read_control(self) -> bool:
        data = os.read(0, 65536)
        if not data:
            return False  # the orchestrator is gone
        self.control += data
        *lines, self.control = self.control.split(b"\n")
        return all(self.command(json.loads(line)) for line in lines if line.strip())

    def run(self) -> None:
        self.emit(ev="hello", pid=os.getpid(), nofile=resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        last_progress = 0.0
        poll = self.epoll.poll
        by_fd = self.by_fd
        while True:
            self.fill()
            for fd, _ in poll(0.25, 8192):
                if fd == 0:
                    if not self.read_control():
                        return
                    continue
                index = by_fd.get(fd)
                if index is not None:
                    self.readable(index)
            if self.connecting:
                now = time.monotonic()
                if self.next >= self.n and not self.in_flight:
                    self.connecting = False
                    self.emit(
                        ev="connected",
                        t_start=self.t_start,
                        t_last_ready=self.t_last_ready,
                        nicks=self.nicks,
                        **self.status(),
                    )
                elif now - last_progress >= 1.0:
                    last_progress = now
                    self.emit(ev="progress", **self.status())


def generator_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="hundred_k.py _generator")
    parser.add_argument("--host", default=HOST)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument("--window", type=int, required=True)
    parser.add_argument("--sender", action="store_true")
    args = parser.parse_args(argv)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # Tens of thousands of long-lived objects and nothing cyclic: the cyclic GC
    # would only walk them, pausing the generator in the middle of a round.
    gc.disable()
    Generator(args).run()
    os._exit(0)  # the kernel closes the sockets; no need to walk them


# A generator needs nothing of gchat: it starts here, before the imports below.
if __name__ == "__main__" and sys.argv[1:2] == ["_generator"]:
    generator_main(sys.argv[2:])


# ---------------------------------------------------------------------------
# The orchestrator.
# ---------------------------------------------------------------------------

sys.path.insert(0, str(ROOT))
from gchat.bench.procs import read_cpu_s, read_rss_kb, read_status_kb  # noqa: E402
from gchat.bench.stats import percentile  # noqa: E402
from gchat.rlimit import raise_open_files  # noqa: E402


class RunError(Exception):
    """The run broke: a process died, stalled, or answered wrongly."""


class TimedOut(RunError):
    """A generator did not say what was waited for in time."""


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the orchestrator dies, however it dies."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


def loadavg() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def machine_cpu_s() -> tuple[float, float]:
    """CPU seconds the whole machine (all cores) was busy, and the part in interrupts, from /proc/stat.

    Loopback TCP is largely processed in softirq context, which the kernel
    does not always charge to the process that sent: a process's CPU time
    and the machine's interrupt time overlap by an unknown amount, so
    "other" below is the machine's busy time minus our processes' time.
    """
    with open("/proc/stat") as stat:
        user, nice, system, _idle, _iowait, irq, softirq, steal = (
            int(value) for value in stat.readline().split()[1:9]
        )
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq + steal) / tick, (irq + softirq) / tick


def fd_count(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def mib(kib: int | None) -> str:
    return "?" if kib is None else f"{kib / 1024:,.1f}"


class Proc:
    """A started process: its own session, its stderr in a file, new stderr lines watched."""

    def __init__(self, name: str, argv: list[str], log: Path, *, pipes: bool = False, **kwargs: Any) -> None:
        self.name = name
        self.log = log
        self._log_offset = 0
        with open(log, "wb") as err:
            self.popen = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE if pipes else subprocess.DEVNULL,
                stdout=subprocess.PIPE if pipes else err,
                stderr=err,
                start_new_session=True,
                preexec_fn=_die_with_parent,
                **kwargs,
            )
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def new_log_lines(self) -> list[str]:
        try:
            with open(self.log, "rb") as file:
                file.seek(self._log_offset)
                data = file.read()
        except OSError:
            return []
        end = data.rfind(b"\n") + 1
        self._log_offset += end
        return data[:end].decode(errors="replace").splitlines()

    def kill(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(STOP_TIMEOUT)


class GenProc(Proc):
    """A load generator: JSON commands in, JSON events out."""

    def __init__(self, index: int, source: str, clients: int, *args: Any, **kwargs: Any) -> None:
        super().__init__(f"gen{index}", *args, pipes=True, **kwargs)
        self.index = index
        self.source = source
        self.clients = clients
        self.buf = b""
        self.eof = False
        assert self.popen.stdout is not None
        os.set_blocking(self.popen.stdout.fileno(), False)

    def send(self, **message: Any) -> None:
        assert self.popen.stdin is not None
        try:
            self.popen.stdin.write((json.dumps(message) + "\n").encode())
            self.popen.stdin.flush()
        except BrokenPipeError:
            raise RunError(f"{self.name} is gone: {tail(self.log)}") from None


class Cluster:
    """Everything the run started, and what it watches while it waits."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.redis: Proc | None = None
        self.redis_port = 0
        self.redis_client: Any = None
        self.nodes: list[Proc] = []
        self.node_ids: list[str] = []
        self.gens: list[GenProc] = []
        self.log_lines: list[str] = []  # every line any node wrote to its stderr
        self.nicks: dict[int, list[str]] = {}  # per generator, its clients' nicks in order
        # How far behind the furthest node's subscription has been (Redis's output buffer for it,
        # bytes), sampled twice a second: Redis cuts a subscriber off at 8 MB for 60 s or 32 MB.
        self.peak_pubsub_omem = 0
        self._sampled = 0.0

    def all(self) -> list[Proc]:
        return [*self.nodes, *self.gens, *([self.redis] if self.redis else [])]

    def watch(self) -> None:
        """Echo new node stderr lines; fail at once if a node or Redis died."""
        for proc in self.nodes:
            for line in proc.new_log_lines():
                self.log_lines.append(f"{proc.name}: {line}")
                print(f"  [{proc.name} stderr] {line}", flush=True)
        for proc in [*self.nodes, *([self.redis] if self.redis else [])]:
            if not proc.alive():
                raise RunError(
                    f"{proc.name} (pid {proc.pid}) exited with status {proc.popen.returncode}:\n"
                    + tail(proc.log)
                )
        now = time.monotonic()
        if self.redis_client is not None and now - self._sampled >= 0.5:
            self._sampled = now
            for entry in self.redis_client.client_list(_type="pubsub"):
                self.peak_pubsub_omem = max(self.peak_pubsub_omem, int(entry.get("omem", 0)))

    def pump(self, timeout: float) -> list[tuple[GenProc, dict[str, Any]]]:
        """Whatever the generators said within ``timeout`` seconds."""
        self.watch()
        live = {gen.popen.stdout.fileno(): gen for gen in self.gens if not gen.eof}  # type: ignore[union-attr]
        ready, _, _ = select.select(list(live), [], [], timeout)
        out = []
        for fd in ready:
            gen = live[fd]
            try:
                data = os.read(fd, 1 << 22)
            except BlockingIOError:
                continue
            if not data:
                gen.eof = True
                gen.popen.wait(STOP_TIMEOUT)
                raise RunError(f"{gen.name} exited (status {gen.popen.returncode}):\n{tail(gen.log)}")
            gen.buf += data
            *lines, gen.buf = gen.buf.split(b"\n")
            for line in lines:
                message = json.loads(line)
                if message.get("ev") == "error":
                    raise RunError(f"{gen.name}: {message.get('message')}")
                out.append((gen, message))
        return out

    def gather(
        self,
        gens: list[GenProc],
        event: str,
        timeout: float,
        what: str,
        other: Callable[[GenProc, dict[str, Any]], None] | None = None,
    ) -> dict[int, dict[str, Any]]:
        """One ``event`` from each of ``gens``, within ``timeout`` seconds."""
        got: dict[int, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        while len(got) < len(gens):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                missing = [gen.name for gen in gens if gen.index not in got]
                raise TimedOut(f"no {what} from {', '.join(missing)} within {timeout:g} s")
            for gen, message in self.pump(min(remaining, 1.0)):
                if message.get("ev") == event:
                    got[gen.index] = message
                elif other is not None:
                    other(gen, message)
        return got

    def kill_all(self) -> None:
        # Nodes first (a node losing its clients would otherwise announce 100,000 quits), then the
        # generators, then Redis.
        for proc in [*self.nodes, *self.gens, *([self.redis] if self.redis else [])]:
            proc.kill()
        if self.redis_client is not None:
            with contextlib.suppress(Exception):
                self.redis_client.close()


def start_redis(cluster: Cluster, args: argparse.Namespace) -> None:
    import redis

    port = free_port()
    argv = [
        args.redis_server,
        "--port",
        str(port),
        "--bind",
        HOST,
        "--save",
        "",
        "--appendonly",
        "no",
        # Each node holds a few connections (bus worker, subscription, one more
        # while it (re)connects); the rest is room for this script and redis-cli.
        "--maxclients",
        str(16 * args.nodes + 64),
        "--dir",
        str(cluster.run_dir),
    ]
    cluster.redis = Proc("redis", argv, cluster.run_dir / "redis.log")
    cluster.redis_port = port
    client = redis.Redis(host=HOST, port=port, socket_timeout=30, socket_connect_timeout=2)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            client.ping()
            break
        except redis.RedisError as error:
            if not cluster.redis.alive() or time.monotonic() > deadline:
                raise RunError(f"redis-server did not start: {error}\n{tail(cluster.redis.log)}") from None
            time.sleep(0.05)
    cluster.redis_client = client


def start_nodes(cluster: Cluster, args: argparse.Namespace, port: int) -> None:
    """Start the nodes one at a time, so that each new id in gchat:nodes names the node just started."""
    bus = f"redis://{HOST}:{cluster.redis_port}/0"
    for index in range(args.nodes):
        argv = [
            sys.executable,
            "-m",
            "gchat",
            "--host",
            HOST,
            "--port",
            str(port),
            "--reuse-port",
            "--bus",
            bus,
            "--announce-limit",
            str(args.announce_limit),
            "--max-clients",
            str(args.max_clients),
            "--log-level",
            "warning",
            "--rate",
            "0",
            "--history",
            "0",
            "--node-timeout",
            f"{args.node_timeout:g}",
        ]
        node = Proc(f"node{index + 1}", argv, cluster.run_dir / f"node{index + 1}.stderr", cwd=args.node_root)
        cluster.nodes.append(node)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            cluster.watch()
            ids = {value.decode() for value in cluster.redis_client.smembers("gchat:nodes")}
            new = ids - set(cluster.node_ids)
            if len(new) == 1:
                cluster.node_ids.append(new.pop())
                break
            if len(new) > 1:
                raise RunError(f"unexpected nodes in Redis: {sorted(new)}")
            if time.monotonic() > deadline:
                raise RunError(f"{node.name} did not join the bus within {START_TIMEOUT:g} s")
            time.sleep(0.05)


def start_generators(cluster: Cluster, args: argparse.Namespace, port: int) -> None:
    base = [int(part) for part in args.source_base.split(".")]
    share, extra = divmod(args.clients, args.generators)
    for index in range(args.generators):
        source = ".".join(str(part) for part in [*base[:3], base[3] + index])
        clients = share + (1 if index < extra else 0)
        argv = [
            sys.executable,
            str(Path(__file__).resolve()),
            "_generator",
            "--host",
            HOST,
            "--port",
            str(port),
            "--source",
            source,
            "--clients",
            str(clients),
            "--window",
            str(args.window),
            *(["--sender"] if index == 0 else []),
        ]
        cluster.gens.append(GenProc(index, source, clients, argv, cluster.run_dir / f"gen{index}.stderr"))
    hellos = cluster.gather(cluster.gens, "hello", START_TIMEOUT, "start-up")
    for gen in cluster.gens:
        nofile = hellos[gen.index]["nofile"]
        if nofile < gen.clients + 16:
            raise RunError(f"{gen.name} may open {nofile} files, not enough for {gen.clients} clients")


def connect_all(cluster: Cluster, args: argparse.Namespace) -> dict[str, Any]:
    """Connect every client; report progress; fail on a stall or past the deadline."""
    started = time.monotonic()
    t_start = time.monotonic_ns()
    for gen in cluster.gens:
        gen.send(cmd="connect")
    progress: dict[int, dict[str, Any]] = {}
    done: dict[int, dict[str, Any]] = {}
    best, best_at, last_print = -1, started, 0.0
    while len(done) < len(cluster.gens):
        now = time.monotonic()
        if now - started > args.connect_timeout:
            raise RunError(f"connecting took over --connect-timeout {args.connect_timeout:g} s")
        for gen, message in cluster.pump(1.0):
            if message["ev"] == "progress":
                progress[gen.index] = message
            elif message["ev"] == "connected":
                done[gen.index] = progress[gen.index] = message
        ready = sum(message["ready"] for message in progress.values())
        failed = sum(message["failed"] for message in progress.values())
        now = time.monotonic()
        if ready > best:
            best, best_at = ready, now
        elif now - best_at > args.stall_timeout:
            raise RunError(f"no client became ready for {args.stall_timeout:g} s (stuck at {ready:,})")
        if now - last_print >= 10 or len(done) == len(cluster.gens):
            last_print = now
            print(
                f"  {now - started:6.1f} s: {ready:,} ready, {failed:,} failed (per generator: "
                f"{' '.join(str(progress.get(gen.index, {}).get('ready', 0)) for gen in cluster.gens)}; "
                f"load {loadavg()})",
                flush=True,
            )
    ready = sum(message["ready"] for message in done.values())
    last = max(message["t_last_ready"] for message in done.values())
    errors: collections.Counter[str] = collections.Counter()
    for message in done.values():
        errors.update(message["errors"])
    return {
        "ready": ready,
        "failed": sum(message["failed"] for message in done.values()),
        "connect_s": (last - t_start) / 1e9,
        "errors": dict(errors),
        "pre_lines": sum(message["pre_lines"] for message in done.values()),
        "nicks": {index: message["nicks"] for index, message in done.items()},
        "per_generator": [done[gen.index]["ready"] for gen in cluster.gens],
        "per_generator_s": [
            round((done[gen.index]["t_last_ready"] - t_start) / 1e9, 2) for gen in cluster.gens
        ],
    }


def settle(cluster: Cluster, args: argparse.Namespace, clients: int) -> dict[str, Any]:
    """Wait until Redis knows every client and every node and generator has gone quiet."""
    started = time.monotonic()
    deadline = started + args.settle_timeout
    users = 0
    while time.monotonic() < deadline:
        cluster.watch()
        users = int(cluster.redis_client.hlen("gchat:users"))
        if users >= clients:
            break
        time.sleep(0.5)
    procs = [*cluster.nodes, *cluster.gens]
    quiet = False
    before = {proc.pid: read_cpu_s(proc.pid) or 0.0 for proc in procs}
    while time.monotonic() < deadline:
        cluster.pump(1.0)
        after = {proc.pid: read_cpu_s(proc.pid) or 0.0 for proc in procs}
        busiest = max(after[pid] - before[pid] for pid in after)
        before = after
        if busiest < 0.05:
            quiet = True
            break
    return {"settle_s": time.monotonic() - started, "redis_users": users, "quiet": quiet}


def per_node_counts(cluster: Cluster) -> tuple[dict[str, int], dict[str, str]]:
    """Users per node id, and each nick's node id, from Redis's user table."""
    counts: collections.Counter[str] = collections.Counter()
    where: dict[str, str] = {}
    cursor = 0
    while True:
        cursor, entries = cluster.redis_client.hscan("gchat:users", cursor, count=10000)
        for value in entries.values():
            # ROOM NUL NODE NUL NICK, then whatever later versions add (24f637b: NUL ADDRESS).
            room, node, nick = value.decode().split("\0")[:3]
            if room == "#lobby":
                counts[node] += 1
                where[nick] = node
        if not cursor:
            break
    return dict(counts), where


def memory(cluster: Cluster) -> dict[str, Any]:
    def of(proc: Proc) -> dict[str, int | None]:
        return {"rss_kib": read_rss_kb(proc.pid), "hwm_kib": read_status_kb(proc.pid, "VmHWM")}

    nodes = [of(node) for node in cluster.nodes]
    redis = of(cluster.redis) if cluster.redis else {}
    gens = [of(gen) for gen in cluster.gens]
    total = sum(item["rss_kib"] or 0 for item in nodes) + (redis.get("rss_kib") or 0)
    info = cluster.redis_client.info("memory")
    return {
        "nodes": nodes,
        "redis": redis,
        "redis_used_memory": info.get("used_memory"),
        "generators": gens,
        "total_rss_kib": total,
        "generators_rss_kib": sum(item["rss_kib"] or 0 for item in gens),
    }


def cpu_snapshot(cluster: Cluster) -> dict[str, float]:
    """CPU seconds so far: the nodes, the generators, Redis, the whole machine and its interrupts."""
    busy, irq = machine_cpu_s()
    return {
        "wall": time.monotonic(),
        "nodes": sum(read_cpu_s(proc.pid) or 0.0 for proc in cluster.nodes),
        "generators": sum(read_cpu_s(proc.pid) or 0.0 for proc in cluster.gens),
        "redis": (read_cpu_s(cluster.redis.pid) or 0.0) if cluster.redis else 0.0,
        "machine": busy,
        "interrupts": irq,
    }


def cpu_used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Who used the CPU between two snapshots (other: everything else on the machine)."""
    used = {key: after[key] - before[key] for key in before}
    used["other"] = used["machine"] - used["nodes"] - used["generators"] - used["redis"]
    return {key: round(value, 3) for key, value in used.items()}


def one_round(
    cluster: Cluster, args: argparse.Namespace, number: int, sender_nick: str, where: dict[str, str]
) -> dict[str, Any]:
    text = f"hundredk {secrets.token_hex(6)} round {number}"
    line = f"<{sender_nick}> {text}"
    for gen in cluster.gens:
        gen.send(cmd="arm", round=number, line=line)
    rounds: dict[int, dict[str, Any]] = {}

    def early(gen: GenProc, message: dict[str, Any]) -> None:
        if message.get("ev") == "round":
            rounds[gen.index] = message

    armed = cluster.gather(cluster.gens, "armed", CONTROL_TIMEOUT, f"round {number} arming", early)
    receivers = sum(message["receivers"] for message in armed.values())
    sender = cluster.gens[0]
    cpu_before = cpu_snapshot(cluster)
    sender.send(cmd="send", text=text)
    sent = cluster.gather([sender], "sent", CONTROL_TIMEOUT, f"round {number} send", early)
    t0 = sent[sender.index]["t0"]
    waiting = [gen for gen in cluster.gens if gen.index not in rounds]
    timed_out = False
    try:
        rounds.update(cluster.gather(waiting, "round", args.round_timeout, f"round {number} receipt"))
    except TimedOut:
        timed_out = True
        late = [gen for gen in cluster.gens if gen.index not in rounds]
        for gen in late:
            gen.send(cmd="finish")
        rounds.update(cluster.gather(late, "round", CONTROL_TIMEOUT, f"round {number} report"))
    cpu = cpu_used(cpu_before, cpu_snapshot(cluster))
    latencies: list[float] = []
    by_node: dict[str, list[float]] = collections.defaultdict(list)
    missing = wrong = 0
    wrong_samples: list[str] = []
    for gen in cluster.gens:
        message = rounds[gen.index]
        wrong += message["wrong"]
        wrong_samples += message["wrong_samples"]
        nicks = cluster.nicks[gen.index]
        for index, value in enumerate(message["times"]):
            if value is None:
                continue
            if value < 0:
                missing += 1
                continue
            ms = (value - t0) / 1e6
            latencies.append(ms)
            by_node[where.get(nicks[index], "?")].append(ms)
    missing -= wrong  # a wrong line is counted once, as wrong
    latencies.sort()
    result: dict[str, Any] = {
        "round": number,
        "line": line,
        "receivers": receivers,
        "received": len(latencies),
        "missing": missing,
        "wrong": wrong,
        "wrong_samples": wrong_samples[:5],
        "timed_out": timed_out,
        "cpu_s": cpu,
    }
    if latencies:
        result.update(
            reach_all_ms=latencies[-1],
            first_ms=latencies[0],
            median_ms=percentile(latencies, 50),
            p99_ms=percentile(latencies, 99),
            per_node_reach_all_ms={node: max(values) for node, values in by_node.items()},
        )
    return result


def final_status(cluster: Cluster) -> dict[str, Any]:
    for gen in cluster.gens:
        gen.send(cmd="status")
    statuses = cluster.gather(cluster.gens, "status", CONTROL_TIMEOUT, "final status")
    errors: collections.Counter[str] = collections.Counter()
    samples: list[str] = []
    for message in statuses.values():
        errors.update(message["errors"])
        samples += message["stray_samples"]
    return {
        "ready": sum(message["ready"] for message in statuses.values()),
        "dropped": sum(message["dropped"] for message in statuses.values()),
        "stray_lines": sum(message["stray"] for message in statuses.values()),
        "stray_samples": samples[:5],
        "errors": dict(errors),
    }


def redis_health(cluster: Cluster) -> dict[str, Any]:
    client = cluster.redis_client
    stats = client.info("stats")
    clients = client.info("clients")
    listing = client.client_list()
    subscribers = [entry for entry in listing if int(entry.get("sub", 0) or 0) > 0]
    return {
        "nodes_in_redis": sorted(value.decode() for value in client.smembers("gchat:nodes")),
        "users_in_redis": int(client.hlen("gchat:users")),
        "connected_clients": clients.get("connected_clients"),
        "subscribers": len(subscribers),
        "total_connections_received": stats.get("total_connections_received"),
        "rejected_connections": stats.get("rejected_connections"),
        "peak_subscriber_output_buffer": cluster.peak_pubsub_omem,
        "total_commands_processed": stats.get("total_commands_processed"),
    }


def export_revision(rev: str, into: Path) -> str:
    """``gchat/`` as committed at ``rev``, unpacked under ``into``; returns the full commit hash.

    Nodes then run code that a commit names, whatever the working tree holds
    meanwhile (others may be editing it while a long run goes on).
    """
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--verify", f"{rev}^{{commit}}"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        into.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", commit, "gchat"], capture_output=True, timeout=60, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(into)], input=archive, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError) as error:
        raise SystemExit(f"hundred_k.py: cannot export gchat/ at {rev}: {error}") from None
    return commit


def git_revision() -> str:
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "gchat"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"
    return head + (" (gchat/ modified)" if dirty else "")


def run(args: argparse.Namespace, cluster: Cluster, report: dict[str, Any]) -> bool:
    """The whole measurement; fills ``report``; True if every check held."""
    port = free_port()
    (busy0, irq0), wall0 = machine_cpu_s(), time.monotonic()
    print(f"redis-server on {HOST}, then {args.nodes} nodes on {HOST}:{port} (--reuse-port)", flush=True)
    start_redis(cluster, args)
    start_nodes(cluster, args, port)
    baseline_fds = [fd_count(node.pid) or 0 for node in cluster.nodes]
    report["empty_node_rss_kib"] = [read_rss_kb(node.pid) for node in cluster.nodes]
    print(f"  empty nodes: RSS {', '.join(mib(kib) for kib in report['empty_node_rss_kib'])} MiB", flush=True)
    print(
        f"{args.generators} generators from {cluster_sources(args)}, {args.clients:,} clients "
        f"(window {args.window} each), load {loadavg()}",
        flush=True,
    )
    start_generators(cluster, args, port)
    cpu0 = {proc.pid: read_cpu_s(proc.pid) or 0.0 for proc in cluster.all()}
    connected = connect_all(cluster, args)
    cluster.nicks.update(connected.pop("nicks"))
    cpu1 = {proc.pid: read_cpu_s(proc.pid) or 0.0 for proc in cluster.all()}
    report["connect"] = connected
    report["connect"]["cpu_s"] = {
        proc.name: round(cpu1[proc.pid] - cpu0[proc.pid], 2) for proc in cluster.all()
    }
    report["connect"]["load_after"] = loadavg()
    print(
        f"connected {connected['ready']:,} of {args.clients:,} in {connected['connect_s']:.1f} s"
        f" ({connected['ready'] / max(connected['connect_s'], 1e-9):,.0f}/s), {connected['failed']:,} failed"
        + (f": {connected['errors']}" if connected["errors"] else ""),
        flush=True,
    )
    if not connected["ready"]:
        raise RunError("no client connected")
    report["settle"] = settle(cluster, args, connected["ready"])
    counts, where = per_node_counts(cluster)
    nodes = []
    for index, node in enumerate(cluster.nodes):
        fds = fd_count(node.pid)
        nodes.append(
            {
                "name": node.name,
                "pid": node.pid,
                "id": cluster.node_ids[index],
                "clients": counts.get(cluster.node_ids[index], 0),
                "fds_added": None if fds is None else fds - baseline_fds[index],
            }
        )
    report["nodes"] = nodes
    report["memory_connected"] = memory(cluster)
    print_counts(report)
    sender_nick = cluster.nicks[0][0]
    rounds = []
    for number in range(1, args.rounds + 1):
        result = one_round(cluster, args, number, sender_nick, where)
        rounds.append(result)
        print_round(result, cluster)
        if result["timed_out"]:
            break
        pause_until = time.monotonic() + args.pause
        while time.monotonic() < pause_until:
            cluster.pump(max(min(pause_until - time.monotonic(), 1.0), 0.0))
    report["rounds"] = rounds
    # Whatever else is on its way (a duplicate, an echo) has time to arrive.
    cluster.pump(1.0)
    report["final"] = final_status(cluster)
    report["memory_end"] = memory(cluster)
    report["redis"] = redis_health(cluster)
    report["cpu_s_total"] = {
        proc.name: round((read_cpu_s(proc.pid) or 0.0) - cpu0.get(proc.pid, 0.0), 2) for proc in cluster.all()
    }
    usage = resource.getrusage(resource.RUSAGE_SELF)
    ours = sum(read_cpu_s(proc.pid) or 0.0 for proc in cluster.all()) + usage.ru_utime + usage.ru_stime
    elapsed = time.monotonic() - wall0
    busy, irq = machine_cpu_s()
    capacity = elapsed * (os.cpu_count() or 1)
    report["machine"]["busy_share"] = round((busy - busy0) / capacity, 3)
    report["machine"]["other_cpu_share"] = round(max(busy - busy0 - ours, 0.0) / capacity, 3)
    report["machine"]["interrupt_cpu_share"] = round((irq - irq0) / capacity, 3)
    report["machine"]["load_end"] = loadavg()
    report["alive_at_end"] = {proc.name: proc.alive() for proc in [*cluster.nodes, cluster.redis] if proc}
    cluster.watch()
    report["node_stderr"] = cluster.log_lines
    return verdict(report, args)


def cluster_sources(args: argparse.Namespace) -> str:
    base = [int(part) for part in args.source_base.split(".")]
    last = ".".join(str(part) for part in [*base[:3], base[3] + args.generators - 1])
    return f"{args.source_base}..{last}"


def verdict(report: dict[str, Any], args: argparse.Namespace) -> bool:
    problems = []
    connect = report["connect"]
    if connect["ready"] != args.clients:
        problems.append(f"{args.clients - connect['ready']:,} clients did not connect: {connect['errors']}")
    final = report["final"]
    if final["dropped"]:
        problems.append(f"{final['dropped']:,} connected clients were dropped: {final['errors']}")
    if final["stray_lines"]:
        problems.append(f"{final['stray_lines']:,} unexpected lines: {final['stray_samples']}")
    for result in report["rounds"]:
        if result["missing"] or result["wrong"] or result["timed_out"]:
            problems.append(
                f"round {result['round']}: {result['missing']:,} missing, {result['wrong']:,} wrong"
                + (" (timed out)" if result["timed_out"] else "")
            )
    if len(report["rounds"]) < args.rounds:
        problems.append(f"only {len(report['rounds'])} of {args.rounds} rounds ran")
    redis = report["redis"]
    if len(redis["nodes_in_redis"]) != args.nodes:
        problems.append(f"Redis lists {len(redis['nodes_in_redis'])} live nodes, not {args.nodes}")
    if redis["subscribers"] != args.nodes:
        problems.append(f"Redis has {redis['subscribers']} subscribers, not {args.nodes}")
    if redis["total_connections_received"] != redis["connected_clients"]:
        # Every node's links are opened once and never closed while all is well: a link that
        # was dropped (by Redis at its output buffer limit, or by the node) shows up here.
        problems.append(
            f"Redis accepted {redis['total_connections_received']} connections but "
            f"{redis['connected_clients']} are open: some link was dropped and made again"
        )
    if report["node_stderr"]:
        problems.append(f"the nodes logged {len(report['node_stderr'])} warning/error lines")
    if not report["settle"]["quiet"]:
        problems.append("the nodes never went quiet after connecting (settle timed out)")
    report["problems"] = problems
    return not problems


def print_counts(report: dict[str, Any]) -> None:
    memory_now = report["memory_connected"]
    settle_info = report["settle"]
    print(
        f"settled in {settle_info['settle_s']:.1f} s (Redis knows {settle_info['redis_users']:,} users"
        f"{'' if settle_info['quiet'] else ', NOT quiet'})",
        flush=True,
    )
    for node, mem in zip(report["nodes"], memory_now["nodes"]):
        print(
            f"  {node['name']} pid {node['pid']} id {node['id']}: {node['clients']:,} clients "
            f"({node['fds_added']:,} fds), RSS {mib(mem['rss_kib'])} MiB",
            flush=True,
        )
    print(
        f"  redis RSS {mib(memory_now['redis'].get('rss_kib'))} MiB; total nodes + redis "
        f"{mib(memory_now['total_rss_kib'])} MiB; generators {mib(memory_now['generators_rss_kib'])} MiB",
        flush=True,
    )


def print_round(result: dict[str, Any], cluster: Cluster) -> None:
    if "reach_all_ms" not in result:
        print(f"round {result['round']}: nothing received", flush=True)
        return
    reach = result["per_node_reach_all_ms"]
    slowest = ", ".join(
        f"{node.name} {reach[ident]:,.0f}"
        for node, ident in zip(cluster.nodes, cluster.node_ids)
        if ident in reach
    )
    print(
        f"round {result['round']}: {result['received']:,}/{result['receivers']:,} received, reach all "
        f"{result['reach_all_ms']:,.0f} ms (first {result['first_ms']:,.1f}, "
        f"median {result['median_ms']:,.0f}, p99 {result['p99_ms']:,.0f}); per node: {slowest}"
        + (f"; {result['missing']:,} MISSING" if result["missing"] else "")
        + (f"; {result['wrong']:,} WRONG {result['wrong_samples']}" if result["wrong"] else ""),
        flush=True,
    )
    cpu = result["cpu_s"]
    cores = os.cpu_count() or 1
    print(
        f"  CPU s in these {cpu['wall']:.2f} s: machine {cpu['machine']:.2f} "
        f"({cpu['machine'] / (cpu['wall'] * cores) * 100:.0f}% of {cores} cores; interrupts "
        f"{cpu['interrupts']:.2f}): nodes {cpu['nodes']:.2f}, generators {cpu['generators']:.2f}, "
        f"redis {cpu['redis']:.2f}, everything else {cpu['other']:.2f}",
        flush=True,
    )


def summarize(report: dict[str, Any]) -> None:
    rounds = [result for result in report.get("rounds", []) if "reach_all_ms" in result]
    if rounds:
        summary = {
            key: statistics.median(result[key] for result in rounds)
            for key in ("reach_all_ms", "median_ms", "p99_ms", "first_ms")
        }
        report["summary"] = summary
        print(
            f"\nmedian of {len(rounds)} rounds: reach all {summary['reach_all_ms']:,.0f} ms, "
            f"median client {summary['median_ms']:,.0f} ms, p99 {summary['p99_ms']:,.0f} ms "
            f"(rounds: {', '.join(format(result['reach_all_ms'], ',.0f') for result in rounds)})",
            flush=True,
        )
    end = report.get("memory_end")
    if end:
        print(
            f"RSS at the end: nodes + redis {mib(end['total_rss_kib'])} MiB "
            f"(nodes {', '.join(mib(item['rss_kib']) for item in end['nodes'])}; "
            f"redis {mib(end['redis'].get('rss_kib'))}); generators {mib(end['generators_rss_kib'])} MiB",
            flush=True,
        )
    machine = report["machine"]
    if "busy_share" not in machine:
        print(f"load before {machine['load_start']}", flush=True)
        return
    print(
        f"load before {machine['load_start']}, after {machine.get('load_end', '?')}; during the run the "
        f"machine was {machine.get('busy_share', 0) * 100:.0f}% busy: everything but this run "
        f"{machine.get('other_cpu_share', 0) * 100:.0f}%, interrupts (loopback TCP) "
        f"{machine.get('interrupt_cpu_share', 0) * 100:.0f}%",
        flush=True,
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    soft = raise_open_files()
    parser = argparse.ArgumentParser(
        prog="python tests/perf/hundred_k.py",
        description="Many clients over several gchat nodes on one port and one Redis: one line to all.",
    )
    parser.add_argument("--clients", type=int, default=100000, help="clients in all (default: %(default)s)")
    parser.add_argument(
        "--nodes", type=int, help=f"gchat nodes (default: one per {PER_PROCESS:,} clients, at least 2)"
    )
    parser.add_argument(
        "--generators", type=int, help=f"load generator processes (default: one per {PER_PROCESS:,} clients)"
    )
    parser.add_argument(
        "--max-clients",
        type=int,
        default=max(soft - 1000, 1),
        help="each node's --max-clients (default: the open-files limit minus 1,000: %(default)s)",
    )
    parser.add_argument(
        "--announce-limit",
        type=int,
        default=1,
        help="each node's --announce-limit; 0 announces every join to everyone (default: %(default)s)",
    )
    parser.add_argument(
        "--node-timeout", type=float, default=5.0, help="each node's --node-timeout, s (default: %(default)s)"
    )
    parser.add_argument(
        "--rounds", type=int, default=5, help="lines sent, one at a time (default: %(default)s)"
    )
    parser.add_argument(
        "--pause", type=float, default=2.0, help="seconds between rounds (default: %(default)s)"
    )
    parser.add_argument(
        "--window", type=int, default=200, help="handshakes in flight per generator (default: %(default)s)"
    )
    parser.add_argument(
        "--source-base", default="127.0.0.2", help="first generator's source address (default: %(default)s)"
    )
    parser.add_argument("--connect-timeout", type=float, default=1800.0, help="s (default: %(default)s)")
    parser.add_argument(
        "--stall-timeout",
        type=float,
        default=60.0,
        help="fail when no client becomes ready for this long, s (default: %(default)s)",
    )
    parser.add_argument("--settle-timeout", type=float, default=300.0, help="s (default: %(default)s)")
    parser.add_argument("--round-timeout", type=float, default=60.0, help="s (default: %(default)s)")
    parser.add_argument("--redis-server", default="redis-server", help="the binary (default: %(default)s)")
    parser.add_argument(
        "--logs", type=Path, help="directory for every process's stderr (default: a new one in /tmp)"
    )
    parser.add_argument("--json", type=Path, help="write the full report there")
    parser.add_argument(
        "--rev",
        help="run the nodes from gchat/ as committed at REV (git archive into the log directory), "
        "not from the working tree",
    )
    args = parser.parse_args(argv)
    if args.nodes is None:
        args.nodes = max(math.ceil(args.clients / PER_PROCESS), 2)
    if args.generators is None:
        args.generators = max(math.ceil(args.clients / PER_PROCESS), 1)
    if args.clients < 2 or args.nodes < 1 or args.generators < 1:
        parser.error("need at least 2 clients, 1 node and 1 generator")
    share = math.ceil(args.clients / args.nodes)
    if share > args.max_clients:
        parser.error(f"{share:,} clients per node do not fit --max-clients {args.max_clients:,}: add --nodes")
    if math.ceil(args.clients / args.generators) + 64 > soft:
        parser.error(f"the open-files limit ({soft:,}) is too low per generator: add --generators")
    if not shutil.which(args.redis_server):
        parser.error(f"{args.redis_server} not found (Debian: apt-get install redis-server)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run_dir = args.logs or Path(tempfile.mkdtemp(prefix="hundred_k-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    if args.rev:
        args.node_root = run_dir / "src"
        gchat_revision = export_revision(args.rev, args.node_root)[:12] + " (committed, exported)"
    else:
        args.node_root = ROOT
        gchat_revision = git_revision()
    report: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "gchat": gchat_revision,
        "python": platform.python_version(),
        "args": {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()},
        "machine": {
            "cpus": os.cpu_count(),
            "load_start": loadavg(),
            "uptime": subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip(),
            "open_files": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
            "ephemeral_ports": Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split(),
        },
        "logs": str(run_dir),
    }
    print(f"logs in {run_dir}; gchat {gchat_revision}; {report['machine']['uptime']}", flush=True)
    cluster = Cluster(run_dir)
    ok = False

    def on_signal(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        ok = run(args, cluster, report)
    except RunError as error:
        report["error"] = str(error)
        print(f"\nFAILED: {error}", file=sys.stderr, flush=True)
        for proc in cluster.nodes:
            text = tail(proc.log)
            if text:
                print(f"--- {proc.name} stderr ({proc.log}):\n{text}", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        report["error"] = "interrupted"
        print("\ninterrupted", file=sys.stderr, flush=True)
    finally:
        with contextlib.suppress(Exception):
            summarize(report)
        cluster.kill_all()
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=1) + "\n")
    for problem in report.get("problems", []):
        print(f"PROBLEM: {problem}", flush=True)
    print("OK: every check held" if ok else "NOT OK", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
