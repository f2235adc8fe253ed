"""Compare gchat with four peers under the same load: ``tox -e perf`` runs this.

A speed figure means nothing alone; this runner puts gchat next to what one
could have instead, each started fresh for every run on the same machine and
driven by the same load generator: ``loadgen`` (``tests/perf/loadgen.c``, built
here with the system C compiler) in the throughput, latency, fan-out and capacity
scenarios, where a Python generator would be the bottleneck, and ``python -m
gchat.bench`` in the slow one:

* ``card``: the design card's gevent server, a queue and a writer greenlet per
  client (``tests/perf/card_server.py``), the design gchat departs from;
* ``thread``: the seed's thread-per-client design with its broadcast called
  (``tests/perf/thread_server.py``), what the project started from;
* ``asyncio``: the idiomatic asyncio-streams server (``tests/perf/asyncio_server.py``),
  what a Python developer would write without gevent;
* ``redis``: ``redis-server`` PUBLISH/SUBSCRIBE, a tuned C event loop, the
  ceiling one can hope to approach from Python.

The server is pinned to core 0 and the load generator to core 1 (``taskset``),
so neither steals the other's CPU. Every scenario runs ``--repeat`` times
(default 3) per server, servers interleaved so drift hits all alike, and the
median of each figure is reported. A throughput ratio (deliveries/s) is shown
only from runs in which both servers used at least 95% of their core, measured
by the compiled generator: otherwise the generator or the machine, not the
server, set the rate, and only CPU per delivery compares. A server whose run shows any loss,
duplicate, reordering or malformed line is INVALID for that scenario: fast
wrong answers are not speed. A run that crashes or times out is FAILED.

Output: a ratio table (gchat/peer) on stdout, and ``tests/perf/results/latest.json``,
``latest.md`` and ``latest.png`` (deliveries/s and p99 latency against room size).

``--cluster`` runs another comparison in the same way: gchat clusters of 1, 2
and 3 nodes (``--bus``) on a fresh redis-server each run, nodes and Redis all
on the server core, clients round-robin over the nodes; and gchat without a
bus. Ratios are against the one-node cluster of the same run, and the results
go to ``tests/perf/results/cluster/``. ``--store`` compares gchat with and
without ``--store`` (a fresh SQLite file each run); results in ``tests/perf/results/store/``.

``--irc`` compares gchat's IRC listener (``gchat-irc``: ``python -m gchat
--irc-port``) with the IRC servers Debian packages, ``ngircd`` and ``inspircd``
(each configured per run, in the run's temporary directory, without flood
penalties or connection caps), and gchat's line protocol for reference, over
``--proto irc`` in both load generators; results in ``tests/perf/results/irc/``.
``--web`` compares gchat's web page protocol (``gchat-ws``: ``python -m gchat
--web-port``, ``--proto ws --echo`` in both load generators) with its line
protocol on the same flags; results in ``tests/perf/results/web/``.

Every wait is bounded and every process started here runs in its own session
(process group) that is killed in a ``finally``, so an interrupted or failed
run leaves nothing behind.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import dataclasses
import datetime
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

# The runner reuses the package's own pieces: it needs ROOT on the path first.
from gchat.bench.procs import server_cpu_s, server_status_kb  # noqa: E402
from gchat.bench.stats import percentile  # noqa: E402
from gchat.rlimit import raise_open_files  # noqa: E402

PERF_DIR = ROOT / "tests" / "perf"
RESULTS_DIR = PERF_DIR / "results"
# The --store runs' SQLite files (one per port, replaced each run).
STORE_DIR = Path(tempfile.gettempdir()) / "gchat-perf-store"
HOST = "127.0.0.1"
SERVER_CPU = 0
BENCH_CPU = 1
# Bounds on waits that do not depend on the scenario.
STARTUP_TIMEOUT = 20.0
STOP_TIMEOUT = 8.0
PROBE_TIMEOUT = 1.0
# Bytes per line (LF included): the bench's default, and the slow scenario's (see scenarios()).
SIZE = 64
SLOW_SIZE = 1024


# ---------------------------------------------------------------------------
# What the load generator prints, mapped to the figures this runner reports.
# THE one place to adapt when gchat.bench's --json output changes.
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class Figures:
    """One bench report, reduced to what the comparison needs."""

    metrics: dict[str, float]  # canonical names (see METRICS), canonical units
    failures: list[str]  # wrong answers (loss, duplicates, reorders, damage): INVALID
    errors: list[str]  # the run itself broke (closed, stalled, no connection): FAILED
    counts: dict[str, int]  # loss / dup / reorder / malformed, for the notes
    saturated: bool  # the load generator used over 90% of its core


def _at(raw: Any, *path: str) -> Any:
    """raw[path[0]][path[1]]..., or None as soon as a step is missing."""
    for key in path:
        if not isinstance(raw, dict) or key not in raw:
            return None
        raw = raw[key]
    return raw


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _latency(into: dict[str, float], figures: Any, prefix: str = "") -> None:
    for key, name in (
        ("p50", "p50_ms"),
        ("p90", "p90_ms"),
        ("p99", "p99_ms"),
        ("p99.9", "p999_ms"),
        ("max", "max_ms"),
    ):
        value = _number(_at(figures, key))
        if value is not None:
            into[prefix + name] = value


def figures(raw: dict[str, Any]) -> Figures:
    """Map ``python -m gchat.bench MODE --json`` output (see gchat/bench/report.py) to Figures."""
    mode = raw.get("mode")
    results = raw.get("results") or {}
    metrics: dict[str, float] = {}
    if mode in ("throughput", "latency"):
        for key, name in (("deliveries_per_s", "deliveries_per_s"), ("lines_accepted_per_s", "lines_per_s")):
            value = _number(results.get(key))
            if value is not None:
                metrics[name] = value
        _latency(metrics, results.get("latency_ms"))
        cpu = _number(results.get("server_cpu"))
        if cpu is not None:
            metrics["server_cpu"] = cpu
            if metrics.get("deliveries_per_s"):
                # CPU the server spent per delivery: a fair figure even when the
                # load generator, not the server, limited the rate.
                metrics["cpu_us_per_delivery"] = cpu * 1e6 / metrics["deliveries_per_s"]
    elif mode == "slow":
        _latency(metrics, _at(results, "baseline", "latency_ms"), "base_")
        _latency(metrics, _at(results, "with_slow_client", "latency_ms"), "slow_")
        ratio = _number(results.get("p99_ratio"))
        if ratio is not None:
            metrics["p99_ratio"] = ratio
        dropped = results.get("slow_client_dropped")
        if isinstance(dropped, bool):
            metrics["slow_dropped"] = 1.0 if dropped else 0.0
    elif mode == "capacity":
        largest = _number(results.get("max_clients_under_limit"))
        if largest is not None:
            metrics["capacity_clients"] = largest
        steps = [step for step in results.get("steps") or [] if isinstance(step, dict)]
        under = [step for step in steps if step.get("under_limit")]
        if under:
            # The reach-all p95 in the largest room under the limit: where two servers both reach
            # the largest room the scenario grows to, this still says which is further from the limit.
            top = _number(under[-1].get("p95_ms"))
            if top is not None:
                metrics["capacity_top_p95_ms"] = top
        # The busiest the generator was in any step's round (a step's own share, not a whole
        # run's, so one saturated step is not averaged away).
        busiest = [_number(step.get("generator_cpu")) for step in steps]
        if busiest and all(value is not None for value in busiest):
            metrics["generator_cpu"] = max(value for value in busiest if value is not None)
        # What the server's core spent per delivery, the median over the steps: the figure a busy
        # machine changes least (a reach time also counts the turns other processes take on it).
        costs = sorted(v for v in (_number(step.get("server_us_per_delivery")) for step in steps) if v)
        if costs:
            metrics["cpu_us_per_delivery"] = statistics.median(costs)
    elif mode == "fanout":
        reach = _at(results, "reach_all_ms") or {}
        for key, name in (("median", "reach_all_median_ms"), ("max", "reach_all_max_ms")):
            value = _number(reach.get(key))
            if value is not None:
                metrics[name] = value
        samples = sorted(v for v in reach.get("samples") or [] if _number(v) is not None)
        clients = _number(results.get("clients"))
        if samples:
            metrics["reach_all_p99_ms"] = percentile(samples, 99.0)
            if clients and sum(samples) > 0:
                # Lines go one at a time, each once the last reached everyone:
                # deliveries over the time spent delivering.
                metrics["deliveries_per_s"] = clients * len(samples) / (sum(samples) / 1000)
        connect = _number(results.get("connect_s"))
        if connect is not None:
            metrics["connect_s"] = connect
        per_connection = _number(_at(results, "server_rss_kb", "per_connection"))
        if per_connection is not None:
            metrics["rss_per_conn_kib"] = per_connection
    if mode in ("throughput", "latency", "fanout"):
        generator = [_number(_at(item, "cpu")) for item in _at(raw, "generator", "cpu") or []]
        if generator and all(value is not None for value in generator):
            metrics["generator_cpu"] = max(value for value in generator if value is not None)
    checks = raw.get("checks") or {}
    counts = {
        "loss": int(checks.get("losses") or 0),
        "dup": int(checks.get("duplicates") or 0),
        "reorder": int(checks.get("reorders") or 0),
        "malformed": int(checks.get("malformed_total") or 0),
    }
    failures = [str(item) for item in raw.get("failures") or []]
    if any(counts.values()) and not failures:
        failures = [", ".join(f"{name} {count:,}" for name, count in counts.items() if count)]
    return Figures(
        metrics=metrics,
        failures=failures,
        errors=[str(item) for item in raw.get("errors") or []],
        counts=counts,
        saturated=bool(_at(raw, "generator", "saturated_workers")),
    )


# ---------------------------------------------------------------------------
# Metrics, servers, scenarios.
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Metric:
    """How a figure is shown; ``higher_is_better`` None: shown, never turned into a ratio."""

    label: str
    higher_is_better: bool | None
    fmt: Callable[[float], str]


def _count(value: float) -> str:
    return f"{value:,.0f}"


def _ms(value: float) -> str:
    return f"{value:.3f}" if value < 1 else f"{value:,.2f}"


def _one(value: float) -> str:
    return f"{value:,.1f}"


def _two(value: float) -> str:
    return f"{value:.2f}"


def _percent(value: float) -> str:
    return f"{value:.0%}"


def _yes_no(value: float) -> str:
    return "yes" if value >= 0.5 else "no"


METRICS: dict[str, Metric] = {
    "deliveries_per_s": Metric("deliveries/s", True, _count),
    "lines_per_s": Metric("lines in/s", True, _count),
    "cpu_us_per_delivery": Metric("server CPU us/delivery", False, _two),
    "server_cpu": Metric("server CPU", None, _percent),
    "generator_cpu": Metric("generator CPU", None, _percent),
    "p50_ms": Metric("p50 ms", False, _ms),
    "p90_ms": Metric("p90 ms", False, _ms),
    "p99_ms": Metric("p99 ms", False, _ms),
    "p999_ms": Metric("p99.9 ms", False, _ms),
    "max_ms": Metric("max ms", False, _ms),
    "reach_all_median_ms": Metric("reach-all median ms", False, _ms),
    "reach_all_p99_ms": Metric("reach-all p99 ms", False, _ms),
    "reach_all_max_ms": Metric("reach-all max ms", False, _ms),
    "connect_s": Metric("connect s", False, _two),
    "rss_per_conn_kib": Metric("RSS KiB/connection", False, _one),
    "base_p99_ms": Metric("p99 ms, all reading", False, _ms),
    "slow_p99_ms": Metric("p99 ms, one not reading", False, _ms),
    "slow_max_ms": Metric("max ms, one not reading", False, _ms),
    "p99_ratio": Metric("p99 slowdown (x)", False, _two),
    "slow_dropped": Metric("non-reader dropped", None, _yes_no),
    "peak_rss_mib": Metric("server peak RSS MiB", False, _one),
    "capacity_clients": Metric("largest room, p95 reach-all < 500 ms", True, _count),
    "capacity_top_p95_ms": Metric("reach-all p95 ms in that room", None, _ms),
    "others_server_core": Metric("others' use of server core", None, _percent),
    "others_bench_core": Metric("others' use of generator core", None, _percent),
}
# Other processes using more than this share of a pinned core during a run: its figures are low.
DISTURBED = 0.1
# A run measured the server's speed only if the server used at least this share of its core:
# below it, something else (the load generator, other processes) set the rate.
SATURATED_CORE = 0.95
# Rates: a ratio of two of them says which server is faster only from saturated runs.
THROUGHPUT_METRICS = ("deliveries_per_s", "lines_per_s")

# Which figures each bench mode's rows show, in order (only those some server has).
MODE_METRICS: dict[str, tuple[str, ...]] = {
    "throughput": (
        "deliveries_per_s",
        "lines_per_s",
        "cpu_us_per_delivery",
        "server_cpu",
        "generator_cpu",
        "p50_ms",
        "p99_ms",
        "peak_rss_mib",
    ),
    "latency": ("p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms", "cpu_us_per_delivery", "server_cpu"),
    "fanout": (
        "reach_all_median_ms",
        "reach_all_p99_ms",
        "reach_all_max_ms",
        "deliveries_per_s",
        "connect_s",
        "generator_cpu",
        "rss_per_conn_kib",
        "peak_rss_mib",
    ),
    "slow": ("base_p99_ms", "slow_p99_ms", "slow_max_ms", "p99_ratio", "slow_dropped", "peak_rss_mib"),
    "capacity": (
        "capacity_clients",
        "capacity_top_p95_ms",
        "cpu_us_per_delivery",
        "generator_cpu",
        "peak_rss_mib",
    ),
}
# Rows of every mode after its own: on a shared machine, how much of each pinned core others took.
SHARED_METRICS = ("others_server_core", "others_bench_core")


@dataclasses.dataclass(frozen=True)
class Server:
    """A server under test: how to start it on a given port and how to talk to it.

    With ``nodes``, it is a cluster: that many processes from ``command``, each
    on a port of its own and on one fresh redis-server (see running_server).
    """

    name: str
    proto: str  # the bench's --proto: "line", "redis", "irc" or "ws"
    command: Callable[[int, Scenario], list[str]]
    about: str
    nodes: int = 0
    # Passed to either load generator after the scenario's own arguments.
    bench_args: tuple[str, ...] = ()


def _gchat_command(port: int, scenario: Scenario) -> list[str]:
    # --log-level warning: info logs a line per chat message, which would be
    # measured as server cost. --rate/--burst a million: the benchmark is the
    # flood the rate limit exists to slow down, but the limiter stays in the
    # path (every line still takes a token), as the protocol is measured whole.
    # A big --max-backlog so a load generator that
    # falls behind is not cut off as a slow consumer mid-measurement, except in
    # the slow mode, where cutting the slow reader off is the behaviour measured.
    command = [
        sys.executable,
        "-m",
        "gchat",
        "--host",
        HOST,
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--rate",
        "1000000",
        "--burst",
        "1000000",
        # The capacity room's 19,000 and its 4 senders, as Redis's --maxclients.
        "--max-clients",
        "19100",
        "--shutdown-timeout",
        "1",
        # Every load generator client comes from one address: announce every join, as
        # the published results did, rather than leave out those past the address's budget.
        "--announce-rate",
        "0",
    ]
    if scenario.mode != "slow":
        command += ["--max-backlog", "16777216"]
    return command


def _gchat_store_command(port: int, scenario: Scenario) -> list[str]:
    """gchat keeping history in SQLite (--store): a fresh file every run, named after its port."""
    STORE_DIR.mkdir(exist_ok=True)
    path = STORE_DIR / f"chat-{port}.db"
    for suffix in ("", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    return [*_gchat_command(port, scenario), "--store", str(path)]


def _tree_command(tree: Path) -> Callable[[int, Scenario], list[str]]:
    """The 'gchat' entry's command, but running the gchat package found in ``tree``."""

    def command(port: int, scenario: Scenario) -> list[str]:
        run = f"import runpy, sys; sys.path.insert(0, {str(tree)!r}); runpy.run_module('gchat', run_name='__main__')"  # noqa: E501
        return [sys.executable, "-c", run, *_gchat_command(port, scenario)[3:]]

    return command


def _peer_command(script: str) -> Callable[[int, Scenario], list[str]]:
    def command(port: int, scenario: Scenario) -> list[str]:
        return [sys.executable, str(PERF_DIR / script), "--port", str(port)]

    return command


def _redis_command(port: int, scenario: Scenario) -> list[str]:
    # No persistence (nothing to measure there); maxclients above the default
    # 10,000 so the largest rooms fit next to the publishers (the 19,000-client
    # capacity room has 4 of them; Redis lowers it to the open-files limit).
    return [
        "redis-server",
        "--port",
        str(port),
        "--bind",
        HOST,
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "no",
        "--maxclients",
        "19100",
        "--loglevel",
        "warning",
    ]


def _gchat_irc_command(port: int, scenario: Scenario) -> list[str]:
    # The same server and flags as the gchat entry, measured on its IRC listener;
    # its line listener takes a port of its own that nobody uses. Every IRC client
    # JOINs, all from one address: no per-address join budget (--join-rate 0),
    # as the peers have none.
    return [
        *_gchat_command(free_port(), scenario),
        "--irc-port",
        str(port),
        "--join-rate",
        "0",
    ]


def _gchat_web_command(port: int, scenario: Scenario) -> list[str]:
    # The same server and flags as the gchat entry, measured on its web port (the
    # page's WebSocket); its line listener takes a port of its own that nobody uses.
    return [*_gchat_command(free_port(), scenario), "--web-port", str(port)]


_config_dir: Path | None = None


def config_dir() -> Path:
    """Where the IRC peers' configuration files go: one directory per runner, removed at exit."""
    global _config_dir
    if _config_dir is None:
        _config_dir = Path(tempfile.mkdtemp(prefix="gchat-perf-conf-"))
        atexit.register(shutil.rmtree, _config_dir, True)
    return _config_dir


def system_binary(name: str) -> str | None:
    """A daemon's path: Debian installs IRC servers in /usr/sbin, which a user's PATH may lack."""
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))


# The IRC peers are configured for a benchmark, not for the internet (into
# config_dir(), a file per port, as each run starts on a port of its own): every
# client comes from 127.0.0.1, and the senders flood. So no per-address or
# per-class connection limits, no flood penalties or command-rate limits, no
# DNS or ident lookups, send and receive queues that a saturated receiver does
# not overrun, and PINGs rare enough (10 minutes) that none is due in a run
# (the load generators answer them anyway). A member limit per channel is
# neither server's default.
NGIRCD_CONF = """\
[Global]
\tName = bench.ngircd
\tInfo = gchat perf peer
\tListen = {host}
\tPorts = {port}
\tMotdPhrase = gchat perf peer
\tPidFile =
[Limits]
\tMaxConnections = 0
\tMaxConnectionsIP = 0
\tMaxJoins = 0
\tMaxNickLength = 30
\tMaxPenaltyTime = 0
\tPingTimeout = 600
\tPongTimeout = 600
\tIdleTimeout = 0
[Options]
\tDNS = no
\tIdent = no
\tPAM = no
"""


def _ngircd_command(port: int, scenario: Scenario) -> list[str]:
    # MaxPenaltyTime = 0 turns off ngIRCd's per-command penalty (its flood control:
    # a client that sends faster than a line a second is read more and more slowly);
    # started as root it switches to "nobody" by itself.
    config = config_dir() / f"ngircd-{port}.conf"
    config.write_text(NGIRCD_CONF.format(host=HOST, port=port))
    return [system_binary("ngircd") or "ngircd", "--nodaemon", "--config", str(config)]


INSPIRCD_CONF = """\
<server name="bench.inspircd" description="gchat perf peer" network="bench">
<admin name="bench" nick="bench" email="bench@localhost">
<bind address="{host}" port="{port}" type="clients">
<connect name="bench" allow="*" timeout="60" pingfreq="10m" hardsendq="1G" softsendq="1G" recvq="64M"
         threshold="1000000000" commandrate="4000000000" fakelag="no" localmax="1000000"
         globalmax="1000000" limit="1000000" maxconnwarn="no" resolvehostnames="no" useident="no">
<performance softlimit="1000000" clonesonconnect="no" quietbursts="yes">
<pid file="{workdir}/inspircd-{port}.pid">
<log method="file" type="* -USERINPUT -USEROUTPUT" level="sparse" target="{workdir}/inspircd-{port}.log">
<files motd="{workdir}/inspircd-{port}.motd">
"""


def _inspircd_command(port: int, scenario: Scenario) -> list[str]:
    # threshold and commandrate (millicommands/s) far above any flood, fakelag off:
    # InspIRCd's flood control; softlimit: its connection cap (it lowers it to
    # the open-files limit). --runasroot: it refuses root otherwise (a CI container).
    workdir = config_dir()
    config = workdir / f"inspircd-{port}.conf"
    (workdir / f"inspircd-{port}.motd").write_text("gchat perf peer\n")
    config.write_text(INSPIRCD_CONF.format(host=HOST, port=port, workdir=workdir))
    binary = system_binary("inspircd") or "inspircd"
    return [binary, "--nofork", "--runasroot", f"--config={config}"]


SERVERS: dict[str, Server] = {
    server.name: server
    for server in (
        Server("gchat", "line", _gchat_command, "this project (gevent)"),
        Server("gchat-store", "line", _gchat_store_command, "gchat with --store: every line kept in SQLite"),
        Server(
            "card",
            "line",
            _peer_command("card_server.py"),
            "the design card: gevent, a queue and a writer greenlet per client",
        ),
        Server("thread", "line", _peer_command("thread_server.py"), "the seed, thread per client"),
        # For per_line.py only (one line at a time): it drops what the kernel does not take.
        Server("relay", "line", _peer_command("relay_server.py"), "gevent's floor: relays a line, no more"),
        Server("asyncio", "line", _peer_command("asyncio_server.py"), "idiomatic asyncio streams"),
        Server("redis", "redis", _redis_command, "redis-server PUBLISH/SUBSCRIBE"),
        Server("gchat-irc", "irc", _gchat_irc_command, "gchat's IRC listener (--irc-port), same flags"),
        Server(
            "ngircd",
            "irc",
            _ngircd_command,
            "ngIRCd, the C IRC server Debian packages (ngircd)",
            # ngIRCd listens with a backlog of 10 (hard-coded): connections past it wait
            # for SYN-ACK retransmissions, seconds apart, and a big room never fills in
            # time. Opened 10 at a time, they are accepted at once.
            bench_args=("--batch", "10"),
        ),
        Server("inspircd", "irc", _inspircd_command, "InspIRCd, the C++ IRC server Debian packages"),
        Server(
            "gchat-ws",
            "ws",
            _gchat_web_command,
            "gchat's web page protocol (--web-port), same flags",
            # The page's style echoes a sender's own lines.
            bench_args=("--echo",),
        ),
        *(
            Server(
                f"cluster-{count}",
                "line",
                _gchat_command,
                f"{count} gchat node{'s' if count > 1 else ''} with --bus on one redis-server, clients"
                " round-robin over them",
                nodes=count,
            )
            for count in (1, 2, 3)
        ),
    )
}


@dataclasses.dataclass(frozen=True)
class Comparison:
    """Which servers run side by side, and the ratio that follows each one's column.

    Every server other than ``reference`` gets a ratio column against it:
    ``reference/server`` when ``reference_first`` (gchat/peer: how gchat
    compares with each peer), else ``server/reference`` (cluster-2/cluster-1:
    what each node added to a one-node cluster changes).
    """

    title: str
    servers: tuple[str, ...]
    reference: str
    reference_first: bool
    # Bench modes or scenario keys run by default; empty: every scenario.
    modes: tuple[str, ...]
    out: Path
    how_to_read: str
    # Lines/s of the latency scenarios (see scenarios()).
    latency_rates: tuple[float, ...] = (1000.0,)

    def pairs(self, servers: Sequence[str]) -> dict[str, tuple[str, str]]:
        """Server -> (numerator, denominator) of the ratio column after it, among ``servers``."""
        if self.reference not in servers:
            return {}
        return {
            name: (self.reference, name) if self.reference_first else (name, self.reference)
            for name in servers
            if name != self.reference
        }


PEERS = Comparison(
    title="gchat against its peers",
    servers=("gchat", "card", "thread", "asyncio", "redis"),
    reference="gchat",
    reference_first=True,
    modes=(),
    out=RESULTS_DIR,
    how_to_read="`gchat/PEER` is gchat's figure divided by the peer's: above 1 is better for gchat where"
    " `better` is `higher`, below 1 where it is `lower`.",
)
CLUSTER = Comparison(
    title="gchat as a cluster on one Redis: 1, 2 and 3 nodes, and without a bus",
    servers=("gchat", "cluster-1", "cluster-2", "cluster-3"),
    reference="cluster-1",
    reference_first=False,
    modes=("throughput", "latency"),
    out=RESULTS_DIR / "cluster",
    # At 1,000 lines/s a cluster's one core is nearly busy, and queueing is
    # most of the latency; at 200 the Redis round trip shows on its own.
    latency_rates=(200.0, 1000.0),
    how_to_read="`X/cluster-1` is X's figure divided by the one-node cluster's, measured in the same"
    " run: what each added node changes (cluster-2, cluster-3), and what the Redis hop costs against"
    " gchat's in-process bus (gchat, no `--bus`). Above 1 is better for X where `better` is `higher`,"
    " below 1 where it is `lower`. The nodes and their redis-server all share the server core, so"
    " more nodes cannot mean more throughput here; server CPU and peak RSS are sums over all of them.",
)

STORE = Comparison(
    title="gchat with and without --store",
    servers=("gchat", "gchat-store"),
    reference="gchat",
    reference_first=False,
    modes=("throughput", "latency"),
    out=RESULTS_DIR / "store",
    how_to_read="`gchat-store/gchat` is the figure with `--store` (every line written to SQLite by a"
    " thread of its own) divided by the one without, measured in the same run: above 1 is better with"
    " the store where `better` is `higher`, below 1 where it is `lower`. Issue 15 asks 0.9 or more of"
    " the throughput.",
)


IRC = Comparison(
    title="gchat's IRC listener against the IRC servers Debian packages",
    servers=("gchat-irc", "ngircd", "inspircd", "gchat"),
    reference="gchat-irc",
    reference_first=True,
    # Throughput with 100 and 1,000 clients; fan-out (the 10,000-client room
    # unless --fanout-sizes): time to reach all and RSS per connection.
    modes=("throughput", "fanout"),
    out=RESULTS_DIR / "irc",
    how_to_read="`gchat-irc/PEER` is the IRC listener's figure divided by the peer's, measured in the same"
    " run: above 1 is better for gchat where `better` is `higher`, below 1 where it is `lower`. The"
    " goal: deliveries/s at or above the better of ngircd and inspircd, RSS KiB/connection below both."
    " `gchat` is the line protocol on the same server, for reference.",
)


WEB = Comparison(
    title="gchat's web page protocol against its line protocol",
    servers=("gchat-ws", "gchat"),
    reference="gchat",
    reference_first=False,
    modes=("throughput", "fanout"),
    out=RESULTS_DIR / "web",
    how_to_read="`gchat-ws/gchat` is the web page protocol's figure (WebSocket, JSON events) divided by"
    " the line protocol's, on the same server and flags, measured in the same run: above 1 is better for"
    " the web where `better` is `higher`, below 1 where it is `lower`. Issue 14's goal: deliveries/s at"
    " 0.7 or more (throughput and fan-out), RSS KiB/connection at 2 or less.",
)


@dataclasses.dataclass(frozen=True)
class Scenario:
    """One bench invocation, run against every server."""

    key: str
    mode: str
    clients: int
    senders: int | None = None
    rate: float | None = None
    messages: int | None = None
    duration: float | None = None
    warmup: float | None = None
    size: int = SIZE
    # The bench's bound on each wait (its --timeout), None for its default (10 s).
    timeout: float | None = None

    def bench_args(self) -> list[str]:
        # Capacity grows the room up to its size; the other modes hold it.
        room = "--max-clients" if self.mode == "capacity" else "--clients"
        args = [self.mode, room, str(self.clients), "--size", str(self.size)]
        for flag, value in (
            ("--senders", self.senders),
            ("--rate", self.rate),
            ("--messages", self.messages),
            ("--duration", self.duration),
            ("--warmup", self.warmup),
            ("--timeout", self.timeout),
        ):
            if value is not None:
                args += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
        return args

    def hard_timeout(self) -> float:
        """Outer bound on one bench run, past the bench's own bounds (each wait --timeout, default 10 s)."""
        wait = self.timeout or 10.0
        phases = (self.duration or 10.0) + (self.warmup or 2.0)
        if self.mode == "slow":
            phases *= 2
        if self.mode == "fanout":
            # A line that takes seconds to reach the room is a broken run, not a slow one.
            phases = (self.messages or 20) * 5.0 + wait
        # The bench may wait --timeout per batch of 500 connections; past 0.15 s a client
        # (gchat's 10,000-client room takes ~0.05 s a client here) the run is broken.
        connect = min((2 * -(-self.clients // 500) + 6) * wait, 60 + 0.15 * self.clients)
        return phases + connect + 2 * wait + 60.0


def scenarios(
    quick: bool,
    fanout_sizes: Sequence[int],
    size: int | None = None,
    latency_rates: Sequence[float] = (1000.0,),
) -> list[Scenario]:
    """The default plan, or a short smoke plan with small rooms for ``--quick``.

    ``size`` (bytes per line) overrides the defaults: 64, and 1 KiB in the slow
    scenario. ``latency_rates``: lines/s of each latency scenario.
    """
    if quick:
        duration, warmup, messages = 2.0, 0.5, 20
        plan = [
            Scenario("throughput-20x5", "throughput", 20, senders=5),
            Scenario("throughput-100x10", "throughput", 100, senders=10),
        ]
        # The full latency scenarios, only shorter: 1,000 lines/s into 100 clients is
        # where the design card's CPU is compared with gchat's.
        plan += [
            Scenario(f"latency-100@{rate:g}", "latency", 100, senders=10, rate=rate) for rate in latency_rates
        ]
        slow = Scenario("slow-20@1000", "slow", 20, senders=5, rate=1000.0)
    else:
        duration, warmup, messages = 10.0, 2.0, 100
        plan = [
            Scenario("throughput-100x10", "throughput", 100, senders=10),
            Scenario("throughput-1000x10", "throughput", 1000, senders=10),
        ]
        plan += [
            Scenario(f"latency-100@{rate:g}", "latency", 100, senders=10, rate=rate) for rate in latency_rates
        ]
        slow = Scenario("slow-100@1000", "slow", 100, senders=10, rate=1000.0)
    # 1 KiB lines in the slow scenario, so that what the non-reader is owed outgrows
    # the kernel's socket buffers (megabytes on loopback) within the run: with 64-byte
    # lines the buffers absorb it all and no server is put to the test.
    slow = dataclasses.replace(slow, size=SLOW_SIZE)
    plan += [Scenario(f"fanout-{room}", "fanout", room, messages=messages) for room in fanout_sizes]
    plan.append(slow)
    # 4 senders, one line at a time each, the room grown by 1,000 up to what one
    # process may hold open here (the load generator's own sockets included).
    plan.append(
        Scenario(
            "capacity-19000" if not quick else "capacity-3000",
            "capacity",
            3000 if quick else 19000,
            messages=10,
        )
    )
    return [
        dataclasses.replace(
            item,
            duration=None if item.mode in ("fanout", "capacity") else duration,
            warmup=None if item.mode in ("fanout", "capacity") else warmup,
            size=size or item.size,
            # gchat tells the room about every join, so connecting N clients makes
            # N**2/2 notices: in the 10,000-client room a batch of connections waits
            # far past the bench's default 10 s for its welcome lines. Connect time
            # is reported on its own; the wait bound grows with the room so that
            # what the scenario is about still gets measured.
            timeout=max(10.0, item.clients / 50),
        )
        for item in plan
    ]


# ---------------------------------------------------------------------------
# Processes: pinning, start, readiness, stop.
# ---------------------------------------------------------------------------


def pinning() -> tuple[bool, str]:
    """Whether server and load generator can each get a core of their own, and why not."""
    if shutil.which("taskset") is None:
        return False, "taskset not found (util-linux): running unpinned"
    try:
        cpus = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        cpus = set(range(os.cpu_count() or 1))
    if not {SERVER_CPU, BENCH_CPU} <= cpus:
        return False, f"cores {SERVER_CPU} and {BENCH_CPU} are not both available ({sorted(cpus)}): unpinned"
    probe = subprocess.run(
        ["taskset", "-c", str(BENCH_CPU), "true"], capture_output=True, timeout=10, check=False
    )
    if probe.returncode != 0:
        return False, f"taskset does not work here ({probe.stderr.decode().strip()}): running unpinned"
    return True, f"server on core {SERVER_CPU}, load generator on core {BENCH_CPU}"


def pinned(cpu: int, command: list[str], pin: bool) -> list[str]:
    # taskset execs the command, so the child's pid is the server's own (for --pid).
    return ["taskset", "-c", str(cpu), *command] if pin else command


def free_port() -> int:
    """A port nobody listens on right now (the server may still lose a race: start() retries)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def kill_group(proc: subprocess.Popen[Any], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM the process group, then SIGKILL it if it has not gone within ``timeout``."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
    # The group may outlive its leader (a child that forked); always finish it off.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout)


class ServerDied(RuntimeError):
    pass


def _probe(port: int, proto: str) -> bool:
    """One readiness check: a line server greets, redis answers PING, an IRC or web server answers a line."""
    try:
        with socket.create_connection((HOST, port), timeout=PROBE_TIMEOUT) as sock:
            sock.settimeout(PROBE_TIMEOUT)
            if proto == "redis":
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
            if proto == "irc":
                # Unregistered, a PING gets a PONG or "not registered": either says it is up.
                sock.sendall(b"PING :perf\r\n")
            if proto == "ws":
                # Any status line says the web port is up (the page is served at /).
                sock.sendall(b"GET / HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (HOST.encode(), port))
            data = b""
            while b"\n" not in data:
                chunk = sock.recv(256)
                if not chunk:
                    return False
                data += chunk
            return True
    except OSError:
        return False


def _tail(path: Path, limit: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return ""


@contextlib.contextmanager
def one_process(
    name: str, command: Callable[[int], list[str]], proto: str, pin: bool, log_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """Start ``command(port)`` on a free port, yield (process, port) once it answers, always stop it."""
    proc: subprocess.Popen[bytes] | None = None
    try:
        for _attempt in range(3):
            port = free_port()
            with log_path.open("wb") as log:
                proc = subprocess.Popen(
                    pinned(SERVER_CPU, command(port), pin),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=ROOT,
                    start_new_session=True,
                )
            deadline = time.monotonic() + STARTUP_TIMEOUT
            while time.monotonic() < deadline:
                if proc.poll() is not None or _probe(port, proto):
                    break
                time.sleep(0.05)
            if proc.poll() is None and _probe(port, proto):
                break
            kill_group(proc)
            if "in use" not in _tail(log_path):
                raise ServerDied(f"{name} did not start: {_tail(log_path, 500).strip() or 'no output'}")
        else:
            raise ServerDied(f"{name}: no free port after 3 tries")
        yield proc, port
    finally:
        if proc is not None:
            kill_group(proc)


# What a gchat node logs when it loses its Redis (gchat/redisbus.py), e.g. a
# subscription redis-server closed for its client-output-buffer-limit.
LINK_LOST = "cluster link lost"


@dataclasses.dataclass
class Deployment:
    """A server as started for one run: the ports clients use, and every process with its log."""

    ports: list[int]
    processes: list[tuple[subprocess.Popen[bytes], Path]]
    # The logs of a cluster's nodes.
    node_logs: list[Path] = dataclasses.field(default_factory=list)

    def pids(self) -> list[int]:
        return [proc.pid for proc, _ in self.processes]

    def died(self) -> str | None:
        """The log tail of a process that has exited, if one has."""
        for proc, log in self.processes:
            if proc.poll() is not None:
                return f"{log.name}: {_tail(log, 300).strip()}"
        return None

    def link_lost(self) -> str | None:
        """A node's own words if it lost Redis during the run: it served its clients alone then."""
        for log in self.node_logs:
            for line in _tail(log).splitlines():
                if LINK_LOST in line:
                    return f"{log.name}: {line.strip()}"
        return None


@contextlib.contextmanager
def running_server(
    server: Server, scenario: Scenario, pin: bool, logdir: Path, tag: str
) -> Iterator[Deployment]:
    """Start ``server`` fresh, yield it once every process answers, always stop them all.

    A cluster gets a redis-server of its own (so no run sees another's nicks
    or history), then its nodes, each with ``--bus`` on it: all on the server
    core, as one server would be. Nodes stop before their Redis.
    """
    deployment = Deployment([], [])
    with contextlib.ExitStack() as stack:

        def start(role: str, command: Callable[[int], list[str]], proto: str) -> tuple[int, Path]:
            log = logdir / f"{tag}.{role}.log"
            proc, port = stack.enter_context(one_process(f"{server.name} {role}", command, proto, pin, log))
            deployment.processes.append((proc, log))
            return port, log

        if not server.nodes:
            deployment.ports.append(
                start("server", lambda port: server.command(port, scenario), server.proto)[0]
            )
            yield deployment
            return
        redis_port, _ = start("redis", lambda port: _redis_command(port, scenario), "redis")
        bus = ["--bus", f"redis://{HOST}:{redis_port}/0"]
        for index in range(1, server.nodes + 1):
            port, log = start(
                f"node{index}", lambda port: [*server.command(port, scenario), *bus], server.proto
            )
            deployment.ports.append(port)
            deployment.node_logs.append(log)
        yield deployment


def core_busy_s(cpu: int) -> float | None:
    """Seconds core ``cpu`` has run anything (user, nice, system in /proc/stat) since boot."""
    try:
        with open("/proc/stat") as stat:
            for line in stat:
                if line.startswith(f"cpu{cpu} "):
                    user, nice, system = (int(field) for field in line.split()[1:4])
                    return (user + nice + system) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return None
    return None


class OthersMeter:
    """How much of each pinned core other processes took while a bench ran.

    The machine may be shared: a core's busy time less what our own processes
    used on it (the server's, read from /proc; the load generator's, counted
    once it has been waited for) is someone else's, and the run's figures are
    that much low. Core 0 runs nothing of ours but the server, core 1 nothing
    but the load generator.
    """

    def __init__(self, pids: Sequence[int]) -> None:
        self._pids = pids
        self._start = self._sample()

    def _sample(self) -> tuple[float, float | None, float | None, float | None, float]:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return (
            time.monotonic(),
            core_busy_s(SERVER_CPU),
            server_cpu_s(self._pids),
            core_busy_s(BENCH_CPU),
            children.ru_utime + children.ru_stime,
        )

    def shares(self) -> dict[str, float]:
        """Others' share of each core since the start; call after waiting for the load generator."""
        end = self._sample()
        wall = end[0] - self._start[0]
        _, busy0, server0, busy1, bench0 = self._start
        _, busy0_end, server_end, busy1_end, bench_end = end
        found: dict[str, float] = {}
        if wall <= 0:
            return found
        if busy0 is not None and busy0_end is not None and server0 is not None and server_end is not None:
            found["others_server_core"] = max(busy0_end - busy0 - (server_end - server0), 0.0) / wall
        if busy1 is not None and busy1_end is not None:
            found["others_bench_core"] = max(busy1_end - busy1 - (bench_end - bench0), 0.0) / wall
        return found


def peak_rss_mib(pids: Sequence[int]) -> float | None:
    """The server's peak resident set (VmHWM) so far; a cluster's, summed over its processes."""
    peak_kb = server_status_kb(pids, "VmHWM")
    return None if peak_kb is None else peak_kb / 1024


# ---------------------------------------------------------------------------
# The load generators: loadgen (compiled here) where rates are measured, gchat.bench elsewhere.
# ---------------------------------------------------------------------------

LOADGEN_SOURCE = PERF_DIR / "loadgen.c"
# Bench modes loadgen implements; the other (slow) uses gchat.bench.
LOADGEN_MODES = ("throughput", "latency", "fanout", "capacity")
PYTHON_BENCH = "gchat.bench"
LOADGEN = "loadgen"


def build_loadgen(into: Path) -> tuple[Path | None, str]:
    """Compile loadgen.c with the system compiler into ``into``: (binary, what was done) or (None, why not).

    Built at every run from the source, so no binary is ever committed or stale.
    """
    compiler = shutil.which("cc") or shutil.which("gcc")
    fallback = (
        "the throughput, latency, fan-out and capacity scenarios fall back to python -m gchat.bench,"
        " which cannot saturate a fast server: no throughput ratios, compare CPU per delivery, and"
        " reach-all times in big rooms are partly its own"
    )
    if compiler is None:
        return None, f"no C compiler (cc or gcc) on PATH to build {LOADGEN_SOURCE.name}: {fallback}"
    binary = into / LOADGEN
    try:
        done = subprocess.run(
            [compiler, "-O2", "-o", str(binary), str(LOADGEN_SOURCE)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return None, f"{compiler} could not build {LOADGEN_SOURCE.name} ({err}): {fallback}"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        return None, f"{compiler} could not build {LOADGEN_SOURCE.name} ({last}): {fallback}"
    return binary, (
        f"load generator: {LOADGEN_SOURCE.name} built with {compiler} -O2 ({', '.join(LOADGEN_MODES)})"
    )


# ---------------------------------------------------------------------------
# One run, and the medians over repetitions.
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class Run:
    """One fresh server under one bench invocation, and the verdict on it."""

    server: str
    scenario: str
    repetition: int
    status: str  # "ok", "invalid" (wrong answers), "failed" (crashed, stalled, timed out)
    note: str
    wall_s: float
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    saturated: bool = False
    raw: dict[str, Any] | None = None
    instrument: str = PYTHON_BENCH

    def server_saturated(self) -> bool:
        """The server, not the generator or the machine, set this run's rate (see SATURATED_CORE).

        Only the compiled generator's runs count: the Python one is slower than the
        fastest servers, so its runs cannot rank them.
        """
        return self.instrument == LOADGEN and self.metrics.get("server_cpu", 0.0) >= SATURATED_CORE


def parse_json(stdout: str) -> dict[str, Any] | None:
    """The bench's one JSON object: the whole output, else its last line that parses."""
    text = stdout.strip()
    for candidate in [text, *reversed(text.splitlines())]:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def bench_command(
    scenario: Scenario, server: Server, deployment: Deployment, options: argparse.Namespace
) -> tuple[str, list[str]]:
    """(instrument, command): loadgen where it runs the mode and was built, else gchat.bench."""
    where = [
        "--host",
        HOST,
        "--port",
        ",".join(str(port) for port in deployment.ports),
        "--proto",
        server.proto,
        "--pid",
        ",".join(str(pid) for pid in deployment.pids()),
    ]
    if options.window is not None and scenario.mode == "throughput":
        where += ["--window", str(options.window)]
    if options.loadgen is not None and scenario.mode in LOADGEN_MODES:
        # A node admits a client once its join is back from Redis (see below).
        ready = ["--await-room"] if server.nodes else []
        # loadgen takes gchat.bench's arguments for these modes.
        return LOADGEN, [str(options.loadgen), *scenario.bench_args(), *where, *ready, *server.bench_args]
    command = [
        sys.executable,
        "-m",
        "gchat.bench",
        *scenario.bench_args(),
        *where,
        *server.bench_args,
        "--json",
    ]
    if server.nodes:
        # A node admits a client once its join is back from Redis: a client
        # counted ready at its welcome could miss the first lines.
        command.append("--await-join")
    if options.procs is not None:
        command += ["--procs", str(options.procs)]
    return PYTHON_BENCH, command


def run_once(
    server: Server,
    scenario: Scenario,
    repetition: int,
    options: argparse.Namespace,
    pin: bool,
    logdir: Path,
) -> Run:
    """One fresh server, one bench invocation, judged: ok, INVALID (wrong answers) or FAILED."""
    tag = f"{scenario.key}.{server.name}.{repetition}"
    started = time.monotonic()

    def verdict(status: str, note: str = "", **extra: Any) -> Run:
        return Run(server.name, scenario.key, repetition, status, note, time.monotonic() - started, **extra)

    if options.timeout is not None:
        scenario = dataclasses.replace(scenario, timeout=options.timeout)
    limit = scenario.hard_timeout()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    try:
        with running_server(server, scenario, pin, logdir, tag) as deployment:
            others = OthersMeter(deployment.pids())
            instrument, command = bench_command(scenario, server, deployment, options)
            bench = subprocess.Popen(
                pinned(BENCH_CPU, command, pin),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=ROOT,
                env=env,
                start_new_session=True,
                text=True,
            )
            try:
                stdout, stderr = bench.communicate(timeout=limit)
            except subprocess.TimeoutExpired:
                return verdict("failed", f"load generator still running after {limit:.0f} s: killed")
            finally:
                kill_group(bench)
            disturbed = others.shares() if pin else {}
            peak = peak_rss_mib(deployment.pids())
            died = deployment.died()
            link_lost = deployment.link_lost()
    except ServerDied as err:
        return verdict("failed", str(err))

    raw = parse_json(stdout)
    if raw is None:
        detail = (stderr.strip().splitlines() or [f"exit {bench.returncode}, no output"])[-1]
        return verdict("failed", f"no JSON from the load generator: {detail}")
    found = figures(raw)
    if peak is not None:
        found.metrics["peak_rss_mib"] = peak
    found.metrics.update(disturbed)
    extra = {
        "metrics": found.metrics,
        "counts": found.counts,
        "saturated": found.saturated,
        "raw": raw,
        "instrument": instrument,
    }
    if link_lost:
        # Cut off from the others, a node serves its own clients alone: the
        # lines it could not pass on are the bus's failure, not wrong answers.
        return verdict("failed", f"a node lost its Redis during the run: {link_lost}", **extra)
    if found.failures:
        return verdict("invalid", "; ".join(found.failures), **extra)
    if died:
        return verdict("failed", f"server died during the run: {died}", **extra)
    if found.errors:
        return verdict("failed", "; ".join(found.errors), **extra)
    if bench.returncode != 0:
        detail = (stderr.strip().splitlines() or [""])[-1]
        return verdict("failed", f"load generator exit {bench.returncode}: {detail}", **extra)
    return verdict("ok", **extra)


@dataclasses.dataclass
class Summary:
    """One server in one scenario, over its repetitions."""

    status: str  # "ok", "invalid", "failed"
    metrics: dict[str, float]
    note: str
    runs: int
    # THROUGHPUT_METRICS' medians over the runs that saturated the server: what ratios use.
    saturated_metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    saturated_runs: int = 0


def _medians(runs: list[Run], names: Iterable[str]) -> dict[str, float]:
    found = {name: [run.metrics[name] for run in runs if name in run.metrics] for name in names}
    return {name: statistics.median(values) for name, values in found.items() if values}


def summarise(runs: list[Run]) -> Summary:
    """Medians when every repetition was good; otherwise the worst verdict and why."""
    invalid = [run for run in runs if run.status == "invalid"]
    failed = [run for run in runs if run.status == "failed"]
    if invalid:
        return Summary("invalid", {}, f"{len(invalid)}/{len(runs)} runs: {invalid[0].note}", len(runs))
    if failed:
        return Summary("failed", {}, f"{len(failed)}/{len(runs)} runs: {failed[0].note}", len(runs))
    medians = _medians(runs, {name for run in runs for name in run.metrics})
    saturated = [run for run in runs if run.server_saturated()]
    return Summary("ok", medians, "", len(runs), _medians(saturated, THROUGHPUT_METRICS), len(saturated))


# ---------------------------------------------------------------------------
# Reporting: ratio table, markdown, JSON, plot.
# ---------------------------------------------------------------------------

Table = dict[str, dict[str, Summary]]  # scenario key -> server -> summary
# A throughput ratio left out because a server was not the limit in any run.
UNSATURATED = "unsat"


def cell(summary: Summary | None, metric: str) -> str:
    if summary is None:
        return "-"
    if summary.status != "ok":
        return summary.status.upper()
    value = summary.metrics.get(metric)
    return "-" if value is None else METRICS[metric].fmt(value)


def ratio(table_row: dict[str, Summary], pair: tuple[str, str], metric: str) -> str:
    """The first server's figure over the second's; only when both are valid numbers."""
    mine, theirs = table_row.get(pair[0]), table_row.get(pair[1])
    if mine is None or theirs is None:
        return "-"
    if METRICS[metric].higher_is_better is None:
        return "-"
    if mine.status != "ok" or theirs.status != "ok":
        return "n/a"
    if metric in THROUGHPUT_METRICS:
        # Which server is faster shows only where both were the limit (see ratio_notes).
        a, b = mine.saturated_metrics.get(metric), theirs.saturated_metrics.get(metric)
        if a is None or b is None:
            return UNSATURATED if metric in mine.metrics and metric in theirs.metrics else "-"
    else:
        a, b = mine.metrics.get(metric), theirs.metrics.get(metric)
    if a is None or b is None:
        return "-"
    if b == 0:
        return "inf" if a > 0 else "n/a"
    return f"{a / b:.2f}"


def table_rows(
    plan: list[Scenario], table: Table, servers: list[str], comparison: Comparison
) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the one comparison table: values, each followed by its ratio to the reference."""
    pairs = comparison.pairs(servers)
    header = ["scenario", "metric", "better"]
    for name in servers:
        header.append(name)
        if name in pairs:
            header.append("/".join(pairs[name]))
    rows: list[list[str]] = []
    for scenario in plan:
        row_data = table.get(scenario.key, {})
        present = {m for summary in row_data.values() for m in summary.metrics}
        metrics = [m for m in (*MODE_METRICS.get(scenario.mode, ()), *SHARED_METRICS) if m in present]
        if not metrics:
            # Every server INVALID or FAILED: one row still says so.
            metrics = list(MODE_METRICS.get(scenario.mode, ("deliveries_per_s",)))[:1]
        for metric in metrics:
            spec = METRICS[metric]
            better = {True: "higher", False: "lower", None: "info"}[spec.higher_is_better]
            row = [scenario.key, spec.label, better]
            for name in servers:
                row.append(cell(row_data.get(name), metric))
                if name in pairs:
                    row.append(ratio(row_data, pairs[name], metric))
            rows.append(row)
    return header, rows


def render_text(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) if i < 3 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    previous = None
    for row in rows:
        shown = list(row)
        if row[0] == previous:
            shown[0] = ""
        previous = row[0]
        lines.append(
            "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(shown, widths)))
        )
    return "\n".join(lines)


def render_markdown(header: list[str], rows: list[list[str]]) -> str:
    align = ["---" if i < 3 else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def verdict_notes(plan: list[Scenario], table: Table) -> list[str]:
    notes = []
    for scenario in plan:
        for name, summary in table.get(scenario.key, {}).items():
            if summary.status != "ok":
                notes.append(f"{scenario.key} {name}: {summary.status.upper()} ({summary.note})")
    return notes


def saturation_notes(plan: list[Scenario], runs: list[Run]) -> list[str]:
    """Where the load generator, not the server, was the limit: those rates are floors, not speeds."""
    notes = []
    for scenario in plan:
        names = list(dict.fromkeys(r.server for r in runs if r.scenario == scenario.key and r.saturated))
        if not names:
            continue
        head = f"{scenario.key}: the load generator used over 90% of its core with {', '.join(names)}"
        if scenario.mode in ("fanout", "capacity"):
            notes.append(head + "; reach times there include its own reading, so they are upper bounds")
        else:
            notes.append(
                head + "; their rates there are what one generator core could drive (a floor), "
                "so compare server CPU us/delivery and server CPU instead"
            )
    return notes


def ratio_notes(
    plan: list[Scenario], table: Table, runs: list[Run], servers: list[str], comparison: Comparison
) -> list[str]:
    """Why a throughput ratio is missing: which servers were not the limit, and how busy they were."""
    pairs = list(comparison.pairs(servers).values())
    notes = []
    derived = []
    for scenario in plan:
        row = table.get(scenario.key, {})
        shown = [metric for metric in MODE_METRICS.get(scenario.mode, ()) if metric in THROUGHPUT_METRICS]
        missing = [pair for pair in pairs for metric in shown if ratio(row, pair, metric) == UNSATURATED]
        if not missing:
            continue
        if scenario.mode not in LOADGEN_MODES:
            derived.append(scenario.key)
            continue
        head = f"{scenario.key}: no deliveries/s ratio ({UNSATURATED})"
        if any(run.instrument != LOADGEN for run in runs if run.scenario == scenario.key):
            notes.append(
                head + f": python -m gchat.bench drove it (no {LOADGEN}), and it is slower than"
                " the fastest servers, so its rates cannot rank them; compare server CPU us/delivery"
            )
            continue
        idle = []
        for name in dict.fromkeys(name for pair in missing for name in pair):
            mine = [run for run in runs if run.scenario == scenario.key and run.server == name]
            if any(run.server_saturated() for run in mine):
                continue
            busy = [run.metrics["server_cpu"] for run in mine if "server_cpu" in run.metrics]
            idle.append(f"{name} (at most {max(busy):.0%})" if busy else f"{name} (not measured)")
        notes.append(
            head + f": a rate ranks servers only from runs in which each used at least {SATURATED_CORE:.0%}"
            f" of its core, and no run did for {', '.join(idle)}. Below that the load generator or other"
            " processes set the rate; compare server CPU us/delivery"
        )
    if derived:
        notes.append(
            f"{', '.join(derived)}: no deliveries/s ratio ({UNSATURATED}): the rate is derived from lines"
            " sent one at a time, so no server is the limit; compare the reach-all times"
        )
    return notes


CARD_FIGURES = (
    ("rss_per_conn_kib", "fanout", "RSS per idle connection", " KiB"),
    ("server_cpu", "latency-100@1000", "server CPU at 1,000 lines/s into 100 clients", ""),
)


def card_notes(plan: list[Scenario], table: Table, servers: list[str]) -> list[str]:
    """The design card's figures next to gchat's: why gchat departs from the card (README, How it works)."""
    if not {"card", "gchat"} <= set(servers):
        return []
    parts = []
    for metric, where, label, unit in CARD_FIGURES:
        # The largest room or the named scenario in which both have the figure.
        for scenario in sorted(plan, key=lambda item: item.clients, reverse=True):
            if where not in (scenario.mode, scenario.key):
                continue
            row = table.get(scenario.key, {})
            values = [cell(row.get(name), metric) for name in ("card", "gchat")]
            if all(value not in ("-", "FAILED", "INVALID") for value in values):
                parts.append(f"{label} ({scenario.key}): card {values[0]}{unit}, gchat {values[1]}{unit}")
                break
    return [f"the design card against gchat: {'; '.join(parts)}"] if parts else []


def disturbance_notes(plan: list[Scenario], runs: list[Run]) -> list[str]:
    """Where other processes took a share of a pinned core: those runs' figures are low."""

    def taken(run: Run) -> float:
        return max(run.metrics.get(name, 0.0) for name in SHARED_METRICS)

    notes = []
    for scenario in plan:
        mine = [run for run in runs if run.scenario == scenario.key]
        disturbed = [run for run in mine if taken(run) > DISTURBED]
        if disturbed:
            worst = max(disturbed, key=taken)
            notes.append(
                f"{scenario.key}: other processes took over {DISTURBED:.0%} of a pinned core in"
                f" {len(disturbed)} of {len(mine)} runs (at most {taken(worst):.0%}, {worst.server}"
                f" #{worst.repetition}): the machine was busy, those runs' figures are low"
            )
    return notes


def plot(plan: list[Scenario], table: Table, servers: list[str], path: Path) -> str | None:
    """deliveries/s and p99 latency against room size (the fanout scenarios), one line per server."""
    fanout = sorted((s for s in plan if s.mode == "fanout"), key=lambda s: s.clients)
    if not fanout:
        return "no fanout scenario ran: no plot"
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no plot (tox -e perf installs it)"
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    panels = (
        ("deliveries_per_s", "deliveries/s while fanning out (higher is better)"),
        ("reach_all_p99_ms", "p99 time for a line to reach all, ms (lower is better)"),
    )
    for axis, (metric, title) in zip(axes, panels):
        for name in servers:
            xs, ys, broken = [], [], []
            for scenario in fanout:
                summary = table.get(scenario.key, {}).get(name)
                if summary is None:
                    continue
                value = summary.metrics.get(metric) if summary.status == "ok" else None
                if value is None or value <= 0:
                    if summary.status != "ok":
                        broken.append(f"{summary.status.upper()} at {scenario.clients:,}")
                    continue
                xs.append(scenario.clients)
                ys.append(value)
            label = name + (f" ({'; '.join(broken)})" if broken else "")
            if xs:
                axis.plot(xs, ys, marker="o", label=label)
            elif broken:
                axis.plot([], [], marker="x", linestyle="none", label=label)
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xticks([s.clients for s in fanout], [f"{s.clients:,}" for s in fanout])
        axis.minorticks_off()
        axis.set_xlabel("clients in the room")
        axis.set_title(title)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle("gchat and peers, one sender fanning out to the whole room")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return None


def git_revision() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "gchat"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() + (" (gchat/ modified)" if dirty.stdout.strip() else "")


def tool_version(command: list[str]) -> str:
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unavailable"
    return (
        (out.stdout or out.stderr).strip().splitlines()[0]
        if (out.stdout or out.stderr).strip()
        else "unknown"
    )


# ---------------------------------------------------------------------------
# Main.
# ---------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Compare gchat with the design card's gevent server, a thread-per-client server,"
        " an asyncio server and Redis;"
        " with --cluster, gchat clusters of 1, 2 and 3 nodes on one Redis.",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: short, 1 repetition, small rooms")
    parser.add_argument(
        "--cluster",
        action="store_true",
        help=f"the cluster comparison: {', '.join(CLUSTER.servers)} in the throughput and latency"
        f" scenarios, ratios against {CLUSTER.reference}, results in tests/perf/results/cluster",
    )
    parser.add_argument(
        "--store",
        action="store_true",
        help=f"the --store comparison: {', '.join(STORE.servers)} in the throughput and latency"
        " scenarios, results in tests/perf/results/store",
    )
    parser.add_argument(
        "--irc",
        action="store_true",
        help=f"the IRC comparison: {', '.join(IRC.servers)} in the throughput and fan-out scenarios"
        f" (fan-out to 10,000; --quick 1,000), ratios against {IRC.reference}, results in"
        " tests/perf/results/irc",
    )
    parser.add_argument(
        "--web",
        action="store_true",
        help=f"the web comparison: {', '.join(WEB.servers)} in the throughput and fan-out scenarios,"
        f" ratios against {WEB.reference}, results in tests/perf/results/web",
    )
    parser.add_argument(
        "--repeat", type=int, default=None, help="repetitions per server and scenario (default 3)"
    )
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated servers to run, from {','.join(SERVERS)}"
        f" (default: {','.join(PEERS.servers)}; with --cluster {','.join(CLUSTER.servers)};"
        f" with --irc {','.join(IRC.servers)}; with --web {','.join(WEB.servers)})",
    )
    parser.add_argument(
        "--modes",
        default="",
        help="comma-separated bench modes (throughput,latency,fanout,slow,capacity) or scenario keys;"
        " default all (with --cluster: throughput,latency)",
    )
    parser.add_argument(
        "--fanout-sizes",
        default="",
        help="room sizes for the fanout scenarios (default 10,100,1000,10000; --quick: 10,100,1000;"
        " with --irc 10000, --quick 1000)",
    )
    parser.add_argument(
        "--size",
        type=int,
        default=None,
        help="bytes per line, LF included, in every scenario (default 64, and 1024 in slow; a size"
        " that does not divide 1024 shows the thread peer's spliced lines)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="the bench's --timeout for every scenario (default: 10 s, more for big rooms)",
    )
    parser.add_argument("--procs", type=int, default=None, help="passed to the bench as --procs")
    parser.add_argument(
        "--window",
        type=int,
        default=None,
        help="lines a sender may have in flight in the throughput scenarios, for both load generators"
        " (default 64): more if a quiet run's server stays under 95%% with the generator idle",
    )
    parser.add_argument(
        "--no-loadgen",
        action="store_true",
        help=f"drive every scenario with python -m gchat.bench, as when {LOADGEN_SOURCE.name} cannot be"
        " built: no throughput ratios",
    )
    parser.add_argument(
        "--check-instruments",
        action="store_true",
        help=f"instead of the comparison: run {LOADGEN} and python -m gchat.bench on the same"
        " scenarios against each --only server (default gchat,card,redis) and check that they agree",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        default=None,
        metavar="TREE",
        help="add the server 'baseline': gchat as it is in TREE (e.g. a `git worktree add` of an older"
        " commit), with the flags of the 'gchat' entry: a change measured against what it changed",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where latest.json, latest.md and latest.png go"
        " (default tests/perf/results; with --cluster tests/perf/results/cluster)",
    )
    options = parser.parse_args(argv)
    if options.baseline is not None:
        if not (options.baseline / "gchat" / "__main__.py").is_file():
            parser.error(f"--baseline: no gchat package in {options.baseline}")
        SERVERS["baseline"] = Server(
            "baseline", "line", _tree_command(options.baseline.resolve()), f"gchat as in {options.baseline}"
        )
    if options.cluster + options.store + options.irc + options.web > 1:
        parser.error(
            "--cluster, --store, --irc and --web are comparisons of their own: run them one at a time"
        )
    options.comparison = (
        CLUSTER
        if options.cluster
        else STORE
        if options.store
        else IRC
        if options.irc
        else WEB
        if options.web
        else PEERS
    )
    if options.out is None:
        options.out = options.comparison.out
    if options.repeat is None:
        options.repeat = 1 if options.quick else 3
    if options.repeat < 1:
        parser.error("--repeat must be at least 1")
    only = [name.strip() for name in options.only.split(",") if name.strip()]
    default = list(CHECK_SERVERS) if options.check_instruments else list(options.comparison.servers)
    options.servers = only or default
    unknown = [name for name in options.servers if name not in SERVERS]
    if unknown:
        parser.error(f"--only: unknown server(s) {', '.join(unknown)}; choose from {', '.join(SERVERS)}")
    try:
        sizes = [int(x) for x in options.fanout_sizes.split(",") if x.strip()]
    except ValueError:
        parser.error("--fanout-sizes: whole numbers, comma-separated")
    if options.irc:
        options.sizes = sizes or ([1000] if options.quick else [10000])
    else:
        options.sizes = sizes or ([10, 100, 1000] if options.quick else [10, 100, 1000, 10000])
    plan = scenarios(options.quick, options.sizes, options.size, options.comparison.latency_rates)
    wanted = {item.strip() for item in options.modes.split(",") if item.strip()} or set(
        options.comparison.modes
    )
    if wanted:
        known = {s.mode for s in plan} | {s.key for s in plan}
        if wanted - known:
            parser.error(
                f"--modes: unknown {', '.join(sorted(wanted - known))};"
                f" choose from {', '.join(sorted(known))}"
            )
        plan = [s for s in plan if s.mode in wanted or s.key in wanted]
    options.plan = plan
    return options


def preflight(options: argparse.Namespace) -> list[str]:
    """What is missing, as messages that say how to fix it; empty when all is there."""
    problems = []
    needs_redis = [name for name in options.servers if name == "redis" or SERVERS[name].nodes]
    if needs_redis and shutil.which("redis-server") is None:
        problems.append(
            f"redis-server is not installed, and {', '.join(needs_redis)} need it: "
            "`apt-get install redis-server` (Debian), or leave them out with --only"
        )
    for daemon in ("ngircd", "inspircd"):
        if daemon in options.servers and system_binary(daemon) is None:
            problems.append(
                f"{daemon} is not installed: `apt-get install {daemon}` (Debian), or leave it out with --only"
            )
    probe = subprocess.run(
        [sys.executable, "-m", "gchat.bench", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        problems.append(f"the load generator does not run (`python -m gchat.bench --help`): {last}")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    # A SIGTERM (tox or CI stopping us) unwinds like Ctrl+C, so every finally kills its processes.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    problems = preflight(options)
    if problems:
        for problem in problems:
            print(f"perf: error: {problem}", file=sys.stderr)
        return 2
    open_files = raise_open_files(1 << 20)  # children inherit it: a 10,000-client room
    biggest = max((s.clients for s in options.plan), default=0)
    if open_files < biggest + 100:
        print(
            f"perf: warning: open-files limit {open_files} is below the {biggest:,}-client room;"
            " those runs will fail (raise the hard limit: ulimit -Hn)",
            file=sys.stderr,
        )
    pin, pin_note = pinning()
    print(f"perf: {pin_note}", file=sys.stderr)

    plan: list[Scenario] = options.plan
    servers: list[str] = options.servers
    total = len(plan) * options.repeat * len(servers)
    runs: list[Run] = []
    started = datetime.datetime.now(datetime.timezone.utc)
    # Recorded with the results; each run's own measure of others is OthersMeter.
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="gchat-perf-") as tmp:
        logdir = Path(tmp)
        if options.no_loadgen:
            options.loadgen, instrument_note = (
                None,
                "--no-loadgen: python -m gchat.bench drives every scenario",
            )
        else:
            options.loadgen, instrument_note = build_loadgen(logdir)
        print(f"perf: {instrument_note}", file=sys.stderr)
        if options.check_instruments:
            return check_instruments(options, pin, logdir)
        done = 0
        for scenario in plan:
            for repetition in range(1, options.repeat + 1):
                for name in servers:
                    done += 1
                    run = run_once(SERVERS[name], scenario, repetition, options, pin, logdir)
                    runs.append(run)
                    print(f"perf: [{done}/{total}] {progress(run)}", file=sys.stderr, flush=True)

    table: Table = {}
    for scenario in plan:
        for name in servers:
            mine = [run for run in runs if run.scenario == scenario.key and run.server == name]
            if mine:
                table.setdefault(scenario.key, {})[name] = summarise(mine)

    header, rows = table_rows(plan, table, servers, options.comparison)
    notes = verdict_notes(plan, table)
    saturated = (
        ratio_notes(plan, table, runs, servers, options.comparison)
        + saturation_notes(plan, runs)
        + disturbance_notes(plan, runs)
    )
    notes += card_notes(plan, table, servers)
    print()
    print(render_text(header, rows))
    for note in notes + saturated:
        print(f"  * {note}")

    out: Path = options.out
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git": git_revision(),
        "python": platform.python_version(),
        "redis": tool_version(["redis-server", "--version"])
        if any(name == "redis" or SERVERS[name].nodes for name in servers)
        else None,
        **{
            daemon: tool_version([system_binary(daemon) or daemon, "--version"])
            for daemon in ("ngircd", "inspircd")
            if daemon in servers
        },
        "cpus": os.cpu_count(),
        "load_average_before": [round(load, 2) for load in load_before],
        "pinning": pin_note,
        "instrument": instrument_note,
        "open_files": open_files,
        "quick": options.quick,
        "repeat": options.repeat,
        "argv": list(sys.argv[1:] if argv is None else argv),
    }
    document = {
        "meta": meta,
        "servers": {name: SERVERS[name].about for name in servers},
        "scenarios": [dataclasses.asdict(s) for s in plan],
        "summary": {
            key: {name: dataclasses.asdict(summary) for name, summary in row.items()}
            for key, row in table.items()
        },
        "runs": [dataclasses.asdict(run) for run in runs],
    }
    (out / "latest.json").write_text(json.dumps(document, indent=2) + "\n")
    plot_problem = plot(plan, table, servers, out / "latest.png")
    (out / "latest.md").write_text(
        markdown_report(options.comparison, meta, header, rows, notes, saturated, servers, plot_problem)
    )
    print(
        f"\nperf: wrote {out / 'latest.json'}, {out / 'latest.md'}"
        + ("" if plot_problem else f", {out / 'latest.png'}")
    )
    if plot_problem:
        print(f"perf: {plot_problem}", file=sys.stderr)
    return 0


# Where both instruments can drive the server: a paced load far below what the Python bench
# can send and read, so both must measure the same deliveries/s; and the same small room flat
# out, where the two agree only if both saturated the server (else the table says who was the limit).
# Fan-out in rooms of 10, 100 and 1,000, where the Python bench's core is not saturated: the
# compiled generator's reach-all may not be the longer of the two (see _reach_verdict).
CHECK_SCENARIOS = (
    Scenario("latency-20@200", "latency", 20, senders=5, rate=200.0, duration=3.0, warmup=1.0, timeout=10.0),
    Scenario("throughput-20x5", "throughput", 20, senders=5, duration=3.0, warmup=1.0, timeout=10.0),
    Scenario("fanout-10", "fanout", 10, messages=100, timeout=10.0),
    Scenario("fanout-100", "fanout", 100, messages=100, timeout=10.0),
    Scenario("fanout-1000", "fanout", 1000, messages=100, timeout=20.0),
)
# The two instruments' deliveries/s may differ by this share of the larger, at most.
AGREE = 0.05
# loadgen's reach-all median may exceed gchat.bench's by this share at most (see _reach_verdict).
AGREE_REACH = 0.10
# gchat and Redis, which only loadgen saturates; the card, which both saturate flat out.
CHECK_SERVERS = ("gchat", "card", "redis")


def instruments_verdict(scenario: Scenario, summaries: dict[str, Summary]) -> tuple[bool, str]:
    """Whether loadgen and gchat.bench do not disagree on one server in one scenario, and the verdict."""
    if any(summary.status != "ok" for summary in summaries.values()):
        return False, "FAILED: a run broke: " + "; ".join(s.note for s in summaries.values() if s.note)
    compiled, python = summaries[LOADGEN].metrics, summaries[PYTHON_BENCH].metrics
    if scenario.mode == "fanout":
        return _reach_verdict(compiled, python)
    a, b = compiled.get("deliveries_per_s", 0.0), python.get("deliveries_per_s", 0.0)
    gap = abs(a - b) / max(a, b, 1.0)
    if scenario.mode == "throughput" and not (
        compiled.get("server_cpu", 0.0) >= SATURATED_CORE and python.get("server_cpu", 0.0) >= SATURATED_CORE
    ):
        limit = python.get("generator_cpu", 0.0)
        return True, (
            f"not judged: the server was not the limit under both (gchat.bench's core {limit:.0%});"
            f" {LOADGEN} drove {a / max(b, 1.0):.2f}x the deliveries/s"
        )
    agree = gap <= AGREE
    verdict = "agree" if agree else "DISAGREE"
    return (
        agree,
        f"{verdict}: deliveries/s differ by {gap:.1%} ({'within' if agree else 'more than'} {AGREE:.0%})",
    )


def _reach_verdict(compiled: dict[str, float], python: dict[str, float]) -> tuple[bool, str]:
    """The fan-out verdict: loadgen's reach-all median may not exceed gchat.bench's.

    A reach-all time ends at the read that brings a line to the last receiver, so the reader's
    own time to get round every socket is on its critical path at any CPU share: the Python
    bench's medians are longer by its wake-ups (about 0.3 to 0.6 ms in rooms of 10 and 100, 6 ms
    in a room of 1,000 on the shared machine), which is why it is not the instrument. Both measure
    the same server, so the compiled one, which only takes less of its own time, must not be
    slower; that it is not also checks its counting and timing.
    """
    a, b = compiled.get("reach_all_median_ms", 0.0), python.get("reach_all_median_ms", 0.0)
    agree = a <= b * (1 + AGREE_REACH)
    verdict = "agree" if agree else "DISAGREE"
    return (
        agree,
        f"{verdict}: {LOADGEN}'s reach-all median is {a / max(b, 1e-9):.2f}x gchat.bench's"
        f" ({'at most' if agree else 'more than'} {1 + AGREE_REACH:.2f}x; their cores"
        f" {compiled.get('generator_cpu', 0.0):.0%} and {python.get('generator_cpu', 0.0):.0%})",
    )


def check_instruments(options: argparse.Namespace, pin: bool, logdir: Path) -> int:
    """Run both load generators on CHECK_SCENARIOS against each server; 0 when they agree."""
    if options.loadgen is None:
        print(f"perf: error: --check-instruments needs {LOADGEN} (see above)", file=sys.stderr)
        return 2
    python = argparse.Namespace(**{**vars(options), "loadgen": None})
    header = ["scenario", "server", "instrument", "deliveries/s", "server CPU", "us/delivery"]
    header += ["generator CPU", "p50 ms", "p99 ms", "reach-all median ms"]
    rows: list[list[str]] = []
    verdicts: list[tuple[bool, str]] = []
    for scenario in CHECK_SCENARIOS:
        for name in options.servers:
            summaries = {}
            for instrument, chosen in ((LOADGEN, options), (PYTHON_BENCH, python)):
                runs = [
                    run_once(SERVERS[name], scenario, repetition, chosen, pin, logdir)
                    for repetition in range(1, options.repeat + 1)
                ]
                for run in runs:
                    print(f"perf: {instrument}: {progress(run)}", file=sys.stderr, flush=True)
                summaries[instrument] = summary = summarise(runs)
                rows.append(
                    [scenario.key, name, instrument]
                    + [
                        cell(summary, metric)
                        for metric in (
                            "deliveries_per_s",
                            "server_cpu",
                            "cpu_us_per_delivery",
                            "generator_cpu",
                            "p50_ms",
                            "p99_ms",
                            "reach_all_median_ms",
                        )
                    ]
                )
            agree, why = instruments_verdict(scenario, summaries)
            verdicts.append((agree, f"{scenario.key} {name}: {why}"))
    print()
    print(render_text(header, rows))
    for _, line in verdicts:
        print(f"  * {line}")
    return 0 if all(agree for agree, _ in verdicts) else 1


def progress(run: Run) -> str:
    head = f"{run.scenario} {run.server} #{run.repetition}: "
    if run.status != "ok":
        return head + f"{run.status.upper()} {run.note} ({run.wall_s:.1f} s)"
    shown = [
        f"{METRICS[name].label} {METRICS[name].fmt(run.metrics[name])}"
        for name in ("deliveries_per_s", "p99_ms", "reach_all_median_ms", "slow_p99_ms")
        if name in run.metrics
    ]
    return head + (", ".join(shown) or "ok") + f" ({run.wall_s:.1f} s)"


def markdown_report(
    comparison: Comparison,
    meta: dict[str, Any],
    header: list[str],
    rows: list[list[str]],
    notes: list[str],
    saturated: list[str],
    servers: list[str],
    plot_problem: str | None,
) -> str:
    parts = [
        f"# {comparison.title}",
        "",
        f"{meta['finished']}, git {meta['git']}, Python {meta['python']}, {meta['cpus']} CPUs, "
        f"{meta['pinning']}; {meta['instrument']}; median of {meta['repeat']} run(s) per cell"
        + (" (--quick)" if meta["quick"] else "")
        + f"; load average {meta['load_average_before'][0]:.2f} before the first run"
        + ".",
        "",
        "Servers: " + "; ".join(f"**{name}**: {SERVERS[name].about}" for name in servers) + ".",
        "",
        comparison.how_to_read + " INVALID: the server delivered wrong answers (loss, duplicates,"
        " reordering, malformed lines), so it has no speed; FAILED: it crashed or timed out.",
        "",
        render_markdown(header, rows),
        "",
    ]
    if notes or saturated:
        parts += [*(f"- {note}" for note in notes + saturated), ""]
    parts.append(plot_problem or "![deliveries/s and p99 latency against room size](latest.png)")
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    sys.exit(main())
