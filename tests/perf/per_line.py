"""Server CPU a line costs, apart from its deliveries: one sender, one line at a time, R recipients.

The latency scenario (1,000 lines/s into 100 clients) is where gchat stays
behind Redis, and its CPU a delivery mixes two costs: what each line costs
once (waking, reading, parsing, the chat) and what each recipient adds (a
``send``). This separates them. One client sends a line, waits until every
recipient has it, and sends the next, so nothing batches; the server's user
and system CPU (``/proc/PID/stat``) over N lines, at R = 1 and R = 100, give
a line's own cost (R = 1, less one delivery) and a recipient's (the slope).
The server runs on core 0 as in ``run.py`` (same flags), the clients on core 1.

    python tests/perf/per_line.py [--servers gchat,redis] [--tree DIR] [--baseline DIR] [--repeat 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import socket
import statistics
import tempfile
from pathlib import Path

from run import BENCH_CPU, HOST, SERVERS, Scenario, Server, _tree_command, running_server

LINE = b"x" * 64
# What a recipient reads before it counts: a line server's greeting (gchat has admitted the
# client by then), Redis's confirmation of SUBSCRIBE.
GREETED = b"Welcome to the chatroom!\n"
SUBSCRIBED = b"c\r\n:1\r\n"
PUBLISH = b"*3\r\n$7\r\nPUBLISH\r\n$1\r\nc\r\n$64\r\n" + LINE + b"\r\n"
WARMUP = 500
SCENARIO = Scenario("per-line", "latency", 1)
UserSystem = tuple[float, float]


def read_until(sock: socket.socket, token: bytes) -> None:
    """Read until ``token`` has come (one line at a time: nothing of the next line is read)."""
    seen = b""
    while token not in seen:
        data = sock.recv(65536)
        if not data:
            raise SystemExit("per_line: the server closed a connection")
        seen = seen[-len(token) :] + data


def cpu_ticks(pid: int) -> tuple[int, int]:
    """The process's user and system CPU so far, in clock ticks."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return int(fields[11]), int(fields[12])


def measure(server: Server, recipients: int, lines: int, logdir: Path) -> UserSystem:
    """Microseconds of user and system CPU a line, on a fresh server."""
    with running_server(server, SCENARIO, True, logdir, f"{server.name}-{recipients}") as deployment:
        pid = deployment.processes[0][0].pid
        port = deployment.ports[0]
        clients = [socket.create_connection((HOST, port), timeout=10) for _ in range(recipients + 1)]
        *readers, sender = clients
        if server.proto == "redis":
            for sock in readers:
                sock.sendall(b"SUBSCRIBE c\r\n")
                read_until(sock, SUBSCRIBED)
            line, answer = PUBLISH, b"\r\n"
        else:
            for sock in clients:
                read_until(sock, GREETED)
            line, answer = LINE + b"\n", b""

        def run(count: int) -> None:
            for _ in range(count):
                sender.sendall(line)
                for sock in readers:
                    read_until(sock, LINE)
                if answer:
                    read_until(sender, answer)

        run(WARMUP)
        user0, system0 = cpu_ticks(pid)
        run(lines)
        user1, system1 = cpu_ticks(pid)
        for sock in clients:
            sock.close()
    tick = 1e6 / os.sysconf("SC_CLK_TCK") / lines
    return (user1 - user0) * tick, (system1 - system0) * tick


def gchat_in(tree: str, name: str) -> Server:
    """The 'gchat' entry, running the gchat package in ``tree``."""
    return dataclasses.replace(SERVERS["gchat"], name=name, command=_tree_command(Path(tree).resolve()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", default="gchat,redis", help="run.py's line servers, redis (gchat,redis)")
    parser.add_argument("--tree", help="measure the gchat package in this checkout instead")
    parser.add_argument("--baseline", help="add the server 'baseline': the gchat package in this checkout")
    parser.add_argument("--lines", type=int, default=20000, help="lines to 1 recipient; a fifth to 100")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; medians are printed (3)")
    options = parser.parse_args()
    os.sched_setaffinity(0, {BENCH_CPU})
    servers = dict(SERVERS)
    if options.tree:
        servers["gchat"] = gchat_in(options.tree, "gchat")
    if options.baseline:
        servers["baseline"] = gchat_in(options.baseline, "baseline")
    names = options.servers.split(",") + (["baseline"] if options.baseline else [])
    chosen = [servers[name] for name in names]
    if any(server.proto not in ("line", "redis") or server.nodes for server in chosen):
        parser.error("--servers: single line servers and redis only")
    runs: dict[str, list[tuple[tuple[float, float], tuple[float, float]]]] = {
        server.name: [] for server in chosen
    }
    with tempfile.TemporaryDirectory(prefix="per-line-") as logs:
        logdir = Path(logs)
        # Servers take turns, so a change in the machine over the runs reaches them all alike.
        for _ in range(options.repeat):
            for server in chosen:
                alone = measure(server, 1, options.lines, logdir)
                runs[server.name].append((alone, measure(server, 100, options.lines // 5, logdir)))
    for name, pairs in runs.items():
        # user, system: a line to one recipient; each further recipient's (the slope to 100)
        one = [statistics.median(alone[i] for alone, _ in pairs) for i in (0, 1)]
        more = [statistics.median((room[i] - alone[i]) / 99 for alone, room in pairs) for i in (0, 1)]
        hundred = statistics.median(sum(room) for _, room in pairs)
        print(
            f"{name}: a line to 1 recipient {sum(one):.1f} µs (user {one[0]:.1f}, system {one[1]:.1f});"
            f" each further recipient {sum(more):.2f} µs (user {more[0]:.2f}, system {more[1]:.2f});"
            f" a line to 100: {hundred:.0f} µs; medians of {options.repeat}"
        )


if __name__ == "__main__":
    main()
