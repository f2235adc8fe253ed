"""``python -m gchat.bench`` end to end against a real server, including one that dies."""

import json
import os
import shutil
import socket
import socketserver
import subprocess
import sys
import threading
import time

import pytest
from conftest import ROOT, TIMEOUT


def bench(*args, timeout=60):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GCHAT_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "gchat.bench", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


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
    killer = threading.Timer(1.5, server.proc.kill)
    killer.start()
    try:
        args = ("--clients", "10", "--senders", "2", "--duration", "2", "--warmup", "0.5", "--timeout", "3")
        run = bench("throughput", *args, "--port", str(server.port))
    finally:
        killer.cancel()
    assert run.returncode == 1
    assert "Traceback" not in run.stdout + run.stderr
    assert "ERROR: the server closed" in run.stdout


class LossyChat(socketserver.ThreadingTCPServer):
    """A chat that relays lines to everyone else but silently drops every 50th."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), LossyHandler)
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
                with chat.lock:
                    chat.lines += 1
                    if chat.lines % 50 == 0:
                        continue
                    for member in chat.members:
                        if member is not self.request:
                            member.sendall(line)
        except OSError:
            pass
        finally:
            with chat.lock:
                chat.members.remove(self.request)


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


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_throughput_against_redis_pubsub_is_clean():
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    redis = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        args = ("--clients", "10", "--senders", "2", "--duration", "1", "--warmup", "0.3")
        run = bench("throughput", "--proto", "redis", *args, "--port", str(port), "--json", "--strict")
    finally:
        redis.kill()
        redis.wait(TIMEOUT)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["ok"]
    assert report["checks"]["delivered"] == report["checks"]["expected"] > 0
