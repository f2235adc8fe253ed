"""PROTOCOL.md "Command line" and the server's terminal output."""

import json
import logging
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import ROOT, TIMEOUT, PortTaken, RedisServer, listening_ports, on_free_port, run_gchat

from gchat.cli import hide_password
from gchat.logs import JsonFormatter

BUS_SECRET = "s3cret-bus-pass"


@pytest.mark.parametrize("flag", ["--port", "--web-port"])
def test_port_in_use_gives_one_line_and_status_1(flag):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status, _, errors = run_gchat("--port", "0", flag, str(port))
    assert status == 1
    assert errors == [f"gchat: cannot listen on 127.0.0.1:{port}: Address already in use"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "abc"], "argument --port: invalid value 'abc'"),
        (["--port", "65536"], "argument --port: invalid value '65536'"),
        (["--max-line", "0"], "argument --max-line: invalid value '0'"),
        (["--rate", "-1"], "argument --rate: invalid value '-1'"),
        (["--idle-timeout", "nan"], "argument --idle-timeout: invalid value 'nan'"),
        (["--handshake-timeout", "0"], "argument --handshake-timeout: invalid value '0'"),
        (["--ipv6-prefix", "129"], "argument --ipv6-prefix: invalid value '129'"),
        (["--ipv4-prefix", "0"], "argument --ipv4-prefix: invalid value '0'"),
        (["--log-level", "loud"], "argument --log-level: invalid value 'loud'"),
        (["--log-format", "xml"], "argument --log-format: invalid value 'xml'"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--port"], "argument --port: expected one argument"),
    ],
)
def test_bad_flag_gives_one_line_and_nonzero_status(args, message):
    status, _, errors = run_gchat(*args)
    assert status == 2
    assert len(errors) == 1
    assert errors[0].startswith(f"gchat: error: {message}")


def test_bad_environment_value_gives_one_line_naming_the_variable():
    status, _, errors = run_gchat(env={"GCHAT_MAX_CLIENTS": "lots"})
    assert status == 2
    assert len(errors) == 1
    assert errors[0].startswith("gchat: error: GCHAT_MAX_CLIENTS: invalid value 'lots'")


def test_environment_variable_sets_a_flag(start_server):
    server = start_server("--rate", "0", env={"GCHAT_MAX_LINE": "10"})
    client = server.join()
    client.say("x" * 11)
    client.expect("!!! line too long (max 10 bytes)")


def test_flag_wins_over_environment(start_server):
    server = start_server("--rate", "0", "--max-line", "20", env={"GCHAT_MAX_LINE": "10"})
    client = server.join()
    client.say("x" * 21)
    client.expect("!!! line too long (max 20 bytes)")


def test_version_is_printed():
    status, out, _ = run_gchat("--version")
    assert status == 0
    assert out.startswith("gchat ")


# python -m gchat --version, with a finder that counts how often the installed packages'
# metadata is searched (it finds nothing itself).
COUNT_METADATA_SEARCHES = """
import importlib.metadata, runpy, sys

class Counting(importlib.metadata.DistributionFinder):
    searches = 0

    def find_spec(self, *args):
        return None

    def find_distributions(self, context=importlib.metadata.DistributionFinder.Context()):
        Counting.searches += 1
        return iter(())

sys.meta_path.append(Counting())
sys.argv = ["gchat", "--version"]
try:
    runpy.run_module("gchat", run_name="__main__", alter_sys=True)
except SystemExit:
    pass
print("searches", Counting.searches)
"""


def test_start_up_reads_the_installed_packages_metadata_once():
    """Every test starts servers: reading it for each of gevent's patch steps was a fifth of a start."""
    done = subprocess.run(
        [sys.executable, "-c", COUNT_METADATA_SEARCHES],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    )
    assert done.stdout.splitlines()[-1] == "searches 1"


def test_help_names_every_flag_and_its_environment_variable():
    status, out, _ = run_gchat("--help")
    assert status == 0
    text = " ".join(out.split())
    for flag in (
        "--host",
        "--port",
        "--history",
        "--max-line",
        "--rate",
        "--burst",
        "--max-backlog",
        "--max-clients",
        "--max-per-ip",
        "--idle-timeout",
        "--shutdown-timeout",
        "--certfile",
        "--keyfile",
        "--handshake-timeout",
        "--log-level",
        "--log-format",
        "-q",
        "--version",
    ):
        assert flag in text
    assert "GCHAT_MAX_BACKLOG" in text


def test_port_zero_listens_on_a_free_port_named_in_the_start_up_line(server):
    assert f"gchat listening on 127.0.0.1:{server.port}" in server.log
    assert server.port != 0
    server.join()


def _ipv6_loopback_available():
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback_available(), reason="no IPv6 loopback on this machine")
def test_ipv6_host_serves_ipv6(start_server):
    server = start_server("--host", "::1")
    assert f"gchat listening on [::1]:{server.port}" in server.log
    client = server.join()
    assert client.sock.family == socket.AF_INET6


def test_log_has_connects_messages_and_disconnects_with_reasons(server):
    a = server.join()
    a.say("hello log")
    a.ping()
    a.say("/quit gone fishing")
    a.read_to_eof()
    server.wait_for_log(rf"^127\.0\.0\.1:\d+ connected as {a.nick}$")
    server.wait_for_log(rf"^#lobby <{a.nick}> hello log$")
    server.wait_for_log(rf"^127\.0\.0\.1:\d+ {a.nick} disconnected \(gone fishing\)$")


def _start_on(port: int, flags: "list[str]", preexec_fn=None) -> "subprocess.Popen[bytes]":
    """``python -m gchat FLAGS --port PORT``, once it listens there itself (with ``-q`` it
    says nothing); PortTaken if another process took the port first."""
    environ = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "gchat", *flags, "--port", str(port)],
        cwd=ROOT,
        env=environ,
        stderr=subprocess.PIPE,
        preexec_fn=preexec_fn,
    )
    deadline = time.monotonic() + TIMEOUT
    while port not in listening_ports(proc.pid):
        if proc.poll() is not None:
            assert proc.stderr is not None
            errors = proc.stderr.read().decode()
            if "Address already in use" in errors:
                raise PortTaken(errors)
            raise AssertionError(f"gchat exited with status {proc.returncode}: {errors}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"gchat did not listen on {port} in {TIMEOUT} s")
        time.sleep(0.02)  # polling /proc: a quiet server says nothing when it listens
    return proc


def _chat_once_and_stop(flags: "list[str]", lines: bytes) -> "tuple[int, int, bytes]":
    """Run a server, send ``lines`` from one client to the end, SIGTERM it: (status, port, stderr)."""
    proc, port = on_free_port(lambda port: _start_on(port, flags))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as client:
            client.sendall(lines)
            while client.recv(4096):
                pass
        proc.send_signal(signal.SIGTERM)
        _, errors = proc.communicate(timeout=TIMEOUT)
    finally:
        proc.kill()
    return proc.returncode, port, errors


def test_quiet_logs_nothing_below_warning():
    status, _, errors = _chat_once_and_stop(["-q"], b"a chat line\n/quit\n")
    assert status == 0
    assert errors == b""


def test_json_log_format_writes_one_json_object_per_line():
    _, port, errors = _chat_once_and_stop(["--log-format", "json"], b"caf\xc3\xa9 \xe2\x80\xa8 line\n/quit\n")
    entries = [json.loads(line) for line in errors.decode("ascii").splitlines()]
    assert entries[0]["msg"] == f"gchat listening on 127.0.0.1:{port}"
    assert entries[-1]["msg"] == "gchat stopped"
    assert any(entry["msg"].endswith("> caf\u00e9 \u2028 line") for entry in entries)
    for entry in entries:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["ts"])
        assert entry["level"] == "info"


def test_json_log_line_carries_the_exception_text():
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("gchat", logging.ERROR, __file__, 1, "failed: %s", ("x",), sys.exc_info())
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "error"
    assert entry["msg"] == "failed: x"
    assert entry["exc"].startswith("Traceback (most recent call last):")
    assert entry["exc"].endswith("ValueError: boom")


def test_open_files_limit_is_raised_and_max_clients_lowered_to_fit(tmp_path):
    def low_limits():
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 1024))

    proc, _ = on_free_port(lambda port: _start_on(port, ["--max-clients", "5000"], preexec_fn=low_limits))
    try:
        with open(f"/proc/{proc.pid}/limits") as limits:
            files = next(line for line in limits if line.startswith("Max open files")).split()
        proc.send_signal(signal.SIGTERM)
        _, errors = proc.communicate(timeout=TIMEOUT)
    finally:
        proc.kill()
    assert files[3:5] == ["1024", "1024"]  # soft raised to the hard limit
    assert (
        "gchat: warning: the open-files limit allows 960 clients: --max-clients lowered from 5000"
        in errors.decode().splitlines()
    )


def test_a_bus_that_refuses_the_database_gives_one_line_and_nonzero_status(redis_server):
    """A Redis error reply at start (not only a refused connection) is one line, no traceback."""
    url = f"redis://127.0.0.1:{redis_server.port}/99999"
    status, _, errors = run_gchat("--port", "0", "--bus", url)
    assert status == 1
    assert errors == [f"gchat: cannot reach the bus at {url}: DB index is out of range"]


def test_a_password_in_the_bus_url_is_masked_for_the_log():
    assert hide_password("redis://:s3cret@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
    assert hide_password("rediss://user:s3cret@host/1") == "rediss://user:***@host/1"
    assert hide_password("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_the_bus_password_is_masked_in_the_start_up_log_line(start_server, tmp_path):
    redis = RedisServer(tmp_path, "--requirepass", BUS_SECRET)
    try:
        node = start_server("--bus", f"redis://:{BUS_SECRET}@127.0.0.1:{redis.port}/0")
        shown = node.wait_for_log(r"^gchat node \S+ on the bus at (\S+)$").group(1)
        assert shown == f"redis://:***@127.0.0.1:{redis.port}/0"
        node.join().ping()  # the node really reached Redis with the password
        assert not [line for line in node.log if BUS_SECRET in line]
    finally:
        redis.stop()


def test_help_ends_with_the_hash_password_command():
    status, output, _ = run_gchat("--help")
    assert status == 0
    assert output.rstrip().split("\n\n")[-1].startswith("python -m gchat hash-password reads")


def test_hash_password_help_explains_it_without_reading_a_password():
    status, output, errors = run_gchat("hash-password", "--help")
    assert (status, errors) == (0, [])
    assert output.startswith("usage: python -m gchat hash-password\n")


def test_hash_password_with_an_argument_is_one_line_and_status_2():
    status, output, errors = run_gchat("hash-password", "hunter2")
    assert (status, output) == (2, "")
    assert errors == ["gchat: error: hash-password takes no arguments (the password is read from stdin)"]
