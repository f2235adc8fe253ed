"""``python -m gchat.bench`` end to end against real servers (one dies, a cluster), and the perf runner."""

import importlib.util
import json
import os
import socket
import socketserver
import subprocess
import sys
import threading
import time

import pytest
from conftest import ROOT, WEB_LISTENING, require, start_web

# Seconds the perf runner gives its compiler to build the load generator (build_loadgen).
LOADGEN_BUILD = 120


def bench_process(*args):
    """``python -m gchat.bench`` started, its output piped."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GCHAT_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.Popen(
        [sys.executable, "-m", "gchat.bench", *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def bench(*args, timeout=60):
    """``python -m gchat.bench`` run to the end."""
    run = bench_process(*args)
    try:
        stdout, stderr = run.communicate(timeout=timeout)
    finally:
        run.kill()
    return subprocess.CompletedProcess(run.args, run.returncode, stdout, stderr)


def test_throughput_against_gchat_is_clean(start_server):
    server = start_server("--rate", "0")
    args = ("--clients", "10", "--senders", "2", "--duration", "1", "--warmup", "0.5")
    run = bench("throughput", *args, "--port", str(server.port), "--json", "--strict")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["ok"]
    checks = report["checks"]
    assert (checks["losses"], checks["duplicates"], checks["reorders"], checks["malformed_total"]) == (
        0,
        0,
        0,
        0,
    )
    assert checks["delivered"] == checks["expected"] > 0
    assert checks["sampled_lines"] > 0
    assert report["results"]["deliveries_measured"] > 0
    assert report["results"]["lines_accepted"] > 0


def test_a_refused_connection_is_reported_without_a_traceback():
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    run = bench("throughput", "--port", str(port), "--duration", "1", "--json")
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    report = json.loads(run.stdout)
    assert not report["ok"]
    assert any("cannot connect" in error for error in report["errors"])


def test_a_server_dying_mid_run_is_reported_without_a_traceback(start_server):
    server = start_server("--rate", "0")
    args = ("--clients", "10", "--senders", "2", "--duration", "30", "--warmup", "0.5", "--timeout", "3")
    run = bench_process("throughput", *args, "--port", str(server.port))
    try:
        server.wait_for_log(r"^#lobby <guest\d+> ")  # a sender's line: the run is on
        server.proc.kill()
        stdout, stderr = run.communicate(timeout=60)
    finally:
        run.kill()
    assert run.returncode == 1
    assert "Traceback" not in stdout + stderr
    assert "ERROR: the server closed" in stdout


class LossyChat(socketserver.ThreadingTCPServer):
    """A chat that relays lines to everyone else but silently drops every 50th."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, handler: "type[socketserver.StreamRequestHandler] | None" = None) -> None:
        super().__init__(("127.0.0.1", 0), handler or LossyHandler)
        self.members: list[socket.socket] = []
        self.lock = threading.Lock()
        self.lines = 0


class LossyHandler(socketserver.StreamRequestHandler):
    def handle(self):
        chat = self.server
        with chat.lock:
            self.request.sendall(b"Welcome!\n")
            chat.members.append(self.request)
        try:
            for line in self.rfile:
                self.line(line)
        except OSError:
            pass
        finally:
            with chat.lock:
                chat.members.remove(self.request)

    def line(self, line: bytes) -> None:
        chat = self.server
        with chat.lock:
            chat.lines += 1
            if chat.lines % 50:
                self.relay(line)

    def relay(self, line: bytes) -> None:
        """To every other member (the caller holds the chat's lock)."""
        for member in self.server.members:
            if member is not self.request:
                member.sendall(line)


def server_frame(opcode: int, payload: bytes) -> bytes:
    size = len(payload)
    if size < 126:
        head = bytes([0x80 | opcode, size])
    elif size < 65536:
        head = bytes([0x80 | opcode, 126]) + size.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 127]) + size.to_bytes(8, "big")
    return head + payload


class OddFramesHandler(socketserver.StreamRequestHandler):
    """A web chat whose frames test loadgen's de-framer: each cut in two writes, every third over
    64 KiB (a 64-bit length), escapes in the text, a ping first (LossyChat's members, losing none)."""

    def handle(self):
        chat = self.server
        while self.rfile.readline() not in (b"\r\n", b""):
            pass
        arrived = server_frame(1, b'{"type":"arrived","room":"#lobby","nick":"guest","at":1}')
        with chat.lock:
            self.request.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\n\r\n" + server_frame(9, b"hi") + arrived
            )
            chat.members.append(self.request)
        try:
            while head := self.rfile.read(2):
                size = head[1] & 0x7F
                if size == 126:
                    size = int.from_bytes(self.rfile.read(2), "big")
                mask = self.rfile.read(4)
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(size)))
                if head[0] & 0x0F != 1:
                    continue
                text = json.loads(data)["text"].replace(".", "\\u002e", 3)
                with chat.lock:
                    chat.lines += 1
                    pad = "x" * 70000 if chat.lines % 3 == 0 else ""
                    event = (
                        '{"type":"message","room":"#lobby","nick":"a\\"b","text":"'
                        + text
                        + '","pad":"'
                        + pad
                        + '"}'
                    )
                    frame = server_frame(1, event.encode())
                    for member in chat.members:
                        cut = chat.lines % len(frame)
                        member.sendall(frame[:cut])
                        member.sendall(frame[cut:])
        except OSError:
            pass
        finally:
            with chat.lock:
                chat.members.remove(self.request)


def test_loadgen_reads_web_frames_cut_long_and_escaped(loadgen):
    chat = LossyChat(OddFramesHandler)
    threading.Thread(target=chat.serve_forever, daemon=True).start()
    try:
        args = ("--clients", "6", "--senders", "2", "--duration", "1", "--warmup", "0.2", "--window", "4")
        where = ("--proto", "ws", "--echo", "--size", "100", "--port", str(chat.server_address[1]))
        code, report, stderr = run_loadgen(loadgen, "throughput", *args, *where)
    finally:
        chat.shutdown()
        chat.server_close()
    assert code == 0, (stderr, report)
    assert report["checks"]["delivered"] == report["checks"]["expected"] > 0
    assert report["checks"]["sampled_lines"] > 0


def test_a_server_that_loses_lines_fails_the_checks():
    chat = LossyChat()
    threading.Thread(target=chat.serve_forever, daemon=True).start()
    try:
        args = ("--clients", "6", "--senders", "2", "--duration", "1", "--warmup", "0.2", "--timeout", "1")
        run = bench("throughput", *args, "--port", str(chat.server_address[1]), "--json", "--strict")
    finally:
        chat.shutdown()
        chat.server_close()
    assert run.returncode == 1
    report = json.loads(run.stdout)
    assert not report["ok"]
    assert report["checks"]["losses"] > 0
    assert report["checks"]["delivered"] < report["checks"]["expected"]
    assert "CHECKS FAILED" in run.stderr


def test_throughput_against_redis_pubsub_is_clean(own_redis):
    args = ("--clients", "10", "--senders", "2", "--duration", "1", "--warmup", "0.3")
    run = bench("throughput", "--proto", "redis", *args, "--port", str(own_redis.port), "--json", "--strict")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["ok"]
    assert report["checks"]["delivered"] == report["checks"]["expected"] > 0


def test_throughput_over_a_cluster_spreads_clients_over_the_nodes(cluster):
    nodes = cluster.start(2)
    ports = ",".join(str(node.port) for node in nodes)
    pids = ",".join(str(node.pid) for node in nodes)
    args = ("--clients", "6", "--senders", "2", "--duration", "0.5", "--warmup", "0.2")
    run = bench("throughput", *args, "--port", ports, "--pid", pids, "--await-join", "--json", "--strict")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["ok"]
    assert report["params"]["ports"] == [node.port for node in nodes]
    assert report["checks"]["delivered"] == report["checks"]["expected"] > 0
    assert report["results"]["server_cpu"] is not None
    # Round-robin: each node admitted three of the six clients.
    for node in nodes:
        assert sum(" connected as " in line for line in node.log) == 3


# run_perf bounds the runner by the runner's own limits, which exceed the suite's 120 s per test.
RUNNER_BOUNDS = pytest.mark.timeout(0)


def run_perf(perf_run, out, *args):
    """``tests/perf/run.py ARGS --out OUT``: its stdout and its latest.json.

    The wait is bounded by the runner's own limits (each run's hard timeout, each
    process's start and stop, the load generator's build), not by a guess at how
    fast the machine is: on a loaded machine the runner reports, it is not killed.
    """
    argv = [*args, "--out", str(out)]
    options = perf_run.parse_args(argv)
    processes = 4  # at most: two nodes, their redis-server, the load generator
    per_run = max(scenario.hard_timeout() for scenario in options.plan) + processes * (
        perf_run.STARTUP_TIMEOUT + perf_run.STOP_TIMEOUT
    )
    runs = len(options.plan) * len(options.servers) * options.repeat
    done = subprocess.run(
        [sys.executable, "tests/perf/run.py", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=runs * per_run + LOADGEN_BUILD,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout, json.loads((out / "latest.json").read_text())


@RUNNER_BOUNDS
def test_the_perf_runner_measures_a_cluster(perf_run, tmp_path):
    """``tests/perf/run.py --cluster``: its own redis-server and nodes, the bench over all of them."""
    require("redis-server", "redis-server")
    scenario = "throughput-20x5"
    _, results = run_perf(
        perf_run, tmp_path, "--cluster", "--quick", "--only", "cluster-2", "--modes", scenario
    )
    summary = results["summary"][scenario]["cluster-2"]
    assert summary["status"] == "ok", summary
    assert summary["metrics"]["deliveries_per_s"] > 0
    (run,) = results["runs"]
    assert len(run["raw"]["params"]["ports"]) == 2
    # Both nodes and their redis-server were measured.
    assert len(run["raw"]["params"]["pids"]) == 3


# ---------------------------------------------------------------------------
# tests/perf's compiled load generator, and the runner's rule for ratios.
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def perf_run():
    """tests/perf/run.py as a module: its loadgen build and its ratio rule."""
    spec = importlib.util.spec_from_file_location("perf_run", ROOT / "tests" / "perf" / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["perf_run"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def loadgen(perf_run, tmp_path_factory):
    require("cc", "gcc")  # tests/perf/run.py builds the load generator with it
    binary, note = perf_run.build_loadgen(tmp_path_factory.mktemp("loadgen"))
    assert binary is not None, note
    return binary


def run_loadgen(binary, *args):
    done = subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=60)
    return done.returncode, json.loads(done.stdout), done.stderr


SHORT = ("--clients", "10", "--senders", "2", "--duration", "1", "--warmup", "0.3", "--timeout", "10")


def assert_counted_and_checked(report):
    assert report["ok"], report
    checks = report["checks"]
    assert (checks["losses"], checks["duplicates"], checks["reorders"], checks["malformed_total"]) == (
        0,
        0,
        0,
        0,
    )
    assert checks["delivered"] == checks["expected"] > 0
    assert checks["sampled_lines"] > 0
    assert report["results"]["deliveries_measured"] > 0
    assert report["results"]["server_cpu"] is not None


@pytest.mark.parametrize("mode", ["throughput", "latency"])
def test_loadgen_counts_and_checks_gchat_deliveries(loadgen, start_server, mode):
    server = start_server("--rate", "0")
    rate = ("--rate", "200") if mode == "latency" else ()
    code, report, stderr = run_loadgen(
        loadgen, mode, *SHORT, *rate, "--port", str(server.port), "--pid", str(server.pid)
    )
    assert code == 0, stderr
    assert_counted_and_checked(report)
    if mode == "latency":
        assert report["results"]["latency_ms"]["samples"] > 0


def test_loadgen_counts_and_checks_redis_pubsub_deliveries(loadgen, own_redis):
    pid = str(own_redis.proc.pid)
    code, report, stderr = run_loadgen(
        loadgen, "throughput", *SHORT, "--proto", "redis", "--port", str(own_redis.port), "--pid", pid
    )
    assert code == 0, stderr
    assert_counted_and_checked(report)


def test_loadgen_counts_and_checks_web_page_deliveries(loadgen, start_server):
    """--proto ws: the upgrade, masked say frames, message events de-framed into lines, pings answered.

    Pings every second over a run of three: a client that did not answer them would be dropped.
    """
    server = start_web(start_server, "--web-ping", "1")
    port = server.wait_for_log(WEB_LISTENING).group(3)
    where = ("--proto", "ws", "--echo", "--port", port, "--pid", str(server.pid))
    code, report, stderr = run_loadgen(loadgen, "throughput", *SHORT, "--duration", "2.5", *where)
    assert code == 0, stderr
    assert_counted_and_checked(report)
    assert report["params"]["proto"] == "ws"


def test_loadgen_reports_a_server_that_loses_lines(loadgen):
    chat = LossyChat()
    threading.Thread(target=chat.serve_forever, daemon=True).start()
    try:
        args = ("--clients", "6", "--senders", "2", "--duration", "1", "--warmup", "0.2", "--timeout", "2")
        code, report, _ = run_loadgen(loadgen, "throughput", *args, "--port", str(chat.server_address[1]))
    finally:
        chat.shutdown()
        chat.server_close()
    assert code == 1
    assert not report["ok"]
    assert report["checks"]["losses"] > 0
    assert report["checks"]["delivered"] < report["checks"]["expected"]


FANOUT = ("fanout", "--clients", "30", "--messages", "5", "--timeout", "10")
CAPACITY = ("capacity", "--step", "10", "--max-clients", "30", "--senders", "2", "--messages", "3")
CAPACITY += ("--timeout", "10")


def assert_reached_all(report, expected):
    """Every line reached every receiver once, in order and intact; ``expected`` deliveries in all."""
    assert report["ok"], report
    checks = report["checks"]
    assert (checks["losses"], checks["duplicates"], checks["reorders"], checks["malformed_total"]) == (
        0,
        0,
        0,
        0,
    )
    assert checks["delivered"] == checks["expected"] == expected
    assert checks["sampled_lines"] > 0


def assert_fanned_out(report):
    """FANOUT's five lines each timed to all 30 clients, with the server's memory and CPU."""
    assert_reached_all(report, 30 * 5)
    results = report["results"]
    assert (results["clients"], results["messages"]) == (30, 5)
    reach = results["reach_all_ms"]
    assert len(reach["samples"]) == 5
    assert 0 < reach["median"] <= reach["max"] == max(reach["samples"])
    assert results["server_rss_kb"]["after"] > 0
    assert results["server_cpu"] is not None
    assert 0 <= report["generator"]["cpu"][0]["cpu"] < 1


def assert_grown_to_capacity(report):
    """CAPACITY's steps of 10, 20 and 30 clients, each with 2 senders' 3 timed lines, under the limit."""
    # Each step sends every sender's untimed line too: 4 lines each, to every member.
    assert_reached_all(report, (10 + 20 + 30) * 2 * 4)
    results = report["results"]
    steps = results["steps"]
    assert [step["clients"] for step in steps] == [10, 20, 30]
    for step in steps:
        assert step["lines"] == 2 * 3
        assert step["under_limit"]
        assert step["error"] is None
        assert 0 < step["median_ms"] <= step["p95_ms"] <= step["max_ms"]
        assert step["server_cpu"] is not None
        assert step["server_waited"] is not None
        assert step["server_us_per_delivery"] is not None  # ticks of 10 ms: 0 in rounds this short
        assert 0 <= step["generator_cpu"] < 1
    assert results["max_clients_under_limit"] == 30
    assert results["limit_reached"] is False


REACH_MODES = pytest.mark.parametrize(
    ("mode", "check"), [(FANOUT, assert_fanned_out), (CAPACITY, assert_grown_to_capacity)]
)


@REACH_MODES
def test_loadgen_times_lines_to_every_gchat_client(loadgen, start_server, mode, check):
    server = start_server("--rate", "0", "--announce-rate", "0")
    code, report, stderr = run_loadgen(loadgen, *mode, "--port", str(server.port), "--pid", str(server.pid))
    assert code == 0, stderr
    check(report)


@REACH_MODES
def test_loadgen_times_lines_to_every_redis_subscriber(loadgen, own_redis, mode, check):
    where = ("--proto", "redis", "--port", str(own_redis.port), "--pid", str(own_redis.proc.pid))
    code, report, stderr = run_loadgen(loadgen, *mode, *where)
    assert code == 0, stderr
    check(report)


def test_loadgen_times_lines_to_every_web_client(loadgen, start_server):
    server = start_web(start_server, "--announce-rate", "0")
    port = server.wait_for_log(WEB_LISTENING).group(3)
    where = ("--proto", "ws", "--echo", "--port", port, "--pid", str(server.pid))
    code, report, stderr = run_loadgen(loadgen, *FANOUT, *where)
    assert code == 0, stderr
    assert_fanned_out(report)


def test_loadgen_reports_a_full_server_in_its_words(loadgen, start_server):
    server = start_server("--max-clients", "3")
    code, report, _ = run_loadgen(loadgen, "fanout", "--clients", "5", "--port", str(server.port))
    assert code == 1
    assert report["errors"][0].startswith("the server said '!!! server full")


def test_loadgen_fanout_reports_a_line_that_never_reaches_everyone(loadgen):
    """LossyChat drops its 50th line: that line never reaches the room, and the run says so."""
    chat = LossyChat()
    threading.Thread(target=chat.serve_forever, daemon=True).start()
    try:
        args = ("fanout", "--clients", "4", "--messages", "60", "--timeout", "1")
        code, report, _ = run_loadgen(loadgen, *args, "--port", str(chat.server_address[1]))
    finally:
        chat.shutdown()
        chat.server_close()
    assert code == 1
    assert not report["ok"]
    assert report["errors"] == ["a line did not reach all 4 clients in 1 s"]
    assert report["results"]["messages"] == 49


class SlowFirstHandler(LossyHandler):
    """Relays every line to everyone else, sender 1's first line 0.3 s late; notes what it got and relayed."""

    def line(self, line: bytes) -> None:
        chat = self.server
        sender, seq = line.split(b" ")[1:3]
        chat.events.append(("got", sender, seq))
        if (sender, seq) == (b"1", b"0"):
            time.sleep(0.3)
        with chat.lock:
            self.relay(line)
            chat.events.append(("relayed", sender, seq))


@pytest.mark.parametrize("instrument", ["loadgen", "gchat.bench"])
def test_a_capacity_round_is_timed_only_once_every_first_line_reached_the_room(loadgen, instrument):
    """No sender's timed line goes out while another's untimed first line is still on its way."""
    chat = LossyChat(SlowFirstHandler)
    chat.events = []
    threading.Thread(target=chat.serve_forever, daemon=True).start()
    args = ("capacity", "--step", "3", "--max-clients", "3", "--senders", "2", "--messages", "2")
    args += ("--port", str(chat.server_address[1]))
    try:
        if instrument == "loadgen":
            code, report, stderr = run_loadgen(loadgen, *args)
        else:
            run = bench(*args, "--json")
            code, report, stderr = run.returncode, json.loads(run.stdout), run.stderr
    finally:
        chat.shutdown()
        chat.server_close()
    assert code == 0, stderr
    assert report["results"]["steps"][0]["lines"] == 2 * 2
    first_timed = chat.events.index(next(event for event in chat.events if event[2] == b"1"))
    assert ("relayed", b"1", b"0") in chat.events[:first_timed]


def perf_runs(perf_run, server, busy, instrument="loadgen"):
    return [
        perf_run.Run(
            server,
            "throughput-100x10",
            repetition,
            "ok",
            "",
            1.0,
            metrics={"deliveries_per_s": rate, "server_cpu": cpu},
            instrument=instrument,
        )
        for repetition, (rate, cpu) in enumerate(busy, 1)
    ]


def ratio_of(perf_run, mine, theirs):
    row = {"gchat": perf_run.summarise(mine), "redis": perf_run.summarise(theirs)}
    return perf_run.ratio(row, ("gchat", "redis"), "deliveries_per_s")


def test_a_throughput_ratio_comes_only_from_runs_that_saturated_both_servers(perf_run):
    gchat = perf_runs(perf_run, "gchat", [(400.0, 0.99), (100.0, 0.50), (410.0, 0.97)])
    redis = perf_runs(perf_run, "redis", [(200.0, 0.98), (900.0, 0.40)])
    # Medians over the saturated runs only: 405 / 200.
    assert ratio_of(perf_run, gchat, redis) == "2.02"


def test_no_throughput_ratio_when_a_server_never_saturated(perf_run):
    gchat = perf_runs(perf_run, "gchat", [(400.0, 0.99)])
    redis = perf_runs(perf_run, "redis", [(200.0, 0.60), (210.0, 0.94)])
    assert ratio_of(perf_run, gchat, redis) == perf_run.UNSATURATED


def test_no_throughput_ratio_from_the_python_bench(perf_run):
    gchat = perf_runs(perf_run, "gchat", [(400.0, 0.99)], instrument=perf_run.PYTHON_BENCH)
    redis = perf_runs(perf_run, "redis", [(200.0, 0.99)], instrument=perf_run.PYTHON_BENCH)
    assert ratio_of(perf_run, gchat, redis) == perf_run.UNSATURATED


@RUNNER_BOUNDS
def test_the_perf_runner_puts_the_design_cards_figures_next_to_gchats(perf_run, tmp_path):
    """Issue 13: RSS per idle connection and CPU at 1,000 lines/s into 100 clients, from the runner."""
    modes = "latency-100@1000,fanout-10"
    stdout, results = run_perf(perf_run, tmp_path, "--quick", "--only", "gchat,card", "--modes", modes)
    for name in ("gchat", "card"):
        assert results["summary"]["latency-100@1000"][name]["metrics"]["server_cpu"] > 0
        assert results["summary"]["fanout-10"][name]["metrics"]["rss_per_conn_kib"] is not None
    (note,) = [line for line in stdout.splitlines() if "the design card against gchat" in line]
    assert "RSS per idle connection (fanout-10): card " in note
    assert "server CPU at 1,000 lines/s into 100 clients (latency-100@1000): card " in note
    assert note.strip().removeprefix("* ") in (tmp_path / "latest.md").read_text()


# ---------------------------------------------------------------------------
# IRC: both load generators against ngIRCd, configured as the perf runner does.
# ---------------------------------------------------------------------------


@pytest.fixture
def ngircd(perf_run, tmp_path):
    """A fresh ngIRCd from the perf runner's own configuration: (pid, port)."""
    if perf_run.system_binary("ngircd") is None:
        pytest.fail("ngircd is not installed (Debian: apt-get install ngircd; tests/run.sh installs it)")
    scenario = perf_run.Scenario("smoke", "throughput", 10)
    peer = perf_run.SERVERS["ngircd"]
    start = perf_run.one_process(
        "ngircd", lambda port: peer.command(port, scenario), "irc", False, tmp_path / "ngircd.log"
    )
    with start as (proc, port):
        yield proc.pid, port


def test_throughput_against_an_irc_server_is_clean(ngircd):
    pid, port = ngircd
    args = ("--clients", "10", "--senders", "2", "--duration", "1", "--warmup", "0.3", "--batch", "10")
    where = ("--proto", "irc", "--port", str(port), "--pid", str(pid))
    run = bench("throughput", *args, *where, "--json", "--strict")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["ok"]
    assert report["checks"]["delivered"] == report["checks"]["expected"] > 0
    assert report["checks"]["sampled_lines"] > 0


def test_loadgen_counts_and_checks_irc_deliveries(loadgen, ngircd):
    pid, port = ngircd
    where = ("--proto", "irc", "--batch", "10", "--port", str(port), "--pid", str(pid))
    code, report, stderr = run_loadgen(loadgen, "throughput", *SHORT, *where)
    assert code == 0, stderr
    assert_counted_and_checked(report)


def test_loadgen_times_lines_to_every_irc_client(loadgen, ngircd):
    """Receivers benchN and the sender bench0s registered and JOINed, PINGs answered on both."""
    pid, port = ngircd
    where = ("--proto", "irc", "--batch", "10", "--port", str(port), "--pid", str(pid))
    code, report, stderr = run_loadgen(loadgen, *FANOUT, *where)
    assert code == 0, stderr
    assert_fanned_out(report)


def assert_one_quick_run(perf_run, out, comparison, server, proto):
    """``tests/perf/run.py COMPARISON --quick --only SERVER``, throughput-20x5: measured over ``proto``."""
    scenario = "throughput-20x5"
    _, results = run_perf(perf_run, out, comparison, "--quick", "--only", server, "--modes", scenario)
    summary = results["summary"][scenario][server]
    assert summary["status"] == "ok", summary
    assert summary["metrics"]["deliveries_per_s"] > 0
    (run,) = results["runs"]
    assert run["raw"]["params"]["proto"] == proto


@RUNNER_BOUNDS
def test_the_perf_runner_measures_the_web_page_protocol(perf_run, tmp_path):
    """``tests/perf/run.py --web``: gchat-ws found ready on its web port and driven over --proto ws."""
    assert_one_quick_run(perf_run, tmp_path, "--web", "gchat-ws", "ws")


@RUNNER_BOUNDS
def test_the_perf_runner_compares_irc_servers(perf_run, tmp_path):
    """``tests/perf/run.py --irc``: the peer started from its written configuration, measured, stopped."""
    if perf_run.system_binary("ngircd") is None:
        pytest.fail("ngircd is not installed (Debian: apt-get install ngircd; tests/run.sh installs it)")
    assert_one_quick_run(perf_run, tmp_path, "--irc", "ngircd", "irc")
