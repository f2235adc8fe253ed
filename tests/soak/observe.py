"""The server side of the soak: a real ``python -m gchat``, watched from outside.

The server's stderr goes to a file, not a pipe: a pipe that the soak read too
slowly would block the server's logging and so the server itself, and the
soak would be measuring its own reader. The log is JSON (``--log-format
json``), one object per line, so its level field says what is an error; chat
text, which the server logs at info and which the garbage senders fill with
anything, can never pass for one.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from gchat.bench.procs import read_rss_kb


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for 127.0.0.1 and its key (as tests/test_tls.py makes them)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "2", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert, key


@dataclass
class Sample:
    """One look at the server from /proc."""

    at: float  # seconds since the soak started
    rss_kb: int
    fds: int


class SoakServer:
    """``python -m gchat --port 0`` in its own session, logging JSON to a file."""

    def __init__(self, name: str, root: Path, directory: Path, flags: list[str]) -> None:
        self.name = name
        self.log_path = directory / f"{name}.log"
        environ = {k: v for k, v in os.environ.items() if not k.startswith("GCHAT_")}
        environ["PYTHONPATH"] = str(root)
        self.args = [sys.executable, "-m", "gchat", "--port", "0", "--log-format", "json", *flags]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.args,
                cwd=root,
                env=environ,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )
        self.pid = self.proc.pid
        self.host, self.port = self._wait_listening()
        self.samples: list[Sample] = []

    def _wait_listening(self, timeout: float = 30.0) -> tuple[str, int]:
        """The address of the server's listening socket, read from /proc.

        At ``--log-level warning`` the server does not log its port, and picking a
        free port for it beforehand would race with every other process here.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            inodes = {target[8:-1] for target in self.fds() if target.startswith("socket:[")}
            with open(f"/proc/{self.pid}/net/tcp") as table:
                for row in table.readlines()[1:]:
                    fields = row.split()
                    if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                        return "127.0.0.1", int(fields[1].split(":")[1], 16)
            time.sleep(0.05)  # polling /proc: there is no event to wait on
        self.kill()
        raise RuntimeError(f"{self.name} server did not start: {self.log_path.read_text()[-2000:]}")

    def records(self) -> list[tuple[dict[str, object] | None, str]]:
        """Every log line so far: (the JSON object, or None if the line is not one; the raw line)."""
        out: list[tuple[dict[str, object] | None, str]] = []
        with open(self.log_path, "rb") as log:
            for raw in log:
                text = raw.decode("utf-8", "replace").rstrip("\n")
                try:
                    record = json.loads(text)
                except ValueError:
                    record = None
                out.append((record if isinstance(record, dict) else None, text))
        return out

    def fds(self) -> list[str]:
        """What each open descriptor of the server is (readlink of /proc/PID/fd/N)."""
        targets = []
        for entry in os.listdir(f"/proc/{self.pid}/fd"):
            with contextlib.suppress(OSError):  # closed between the listing and the readlink
                targets.append(os.readlink(f"/proc/{self.pid}/fd/{entry}"))
        return sorted(targets)

    def fd_count(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def sample(self, started: float) -> None:
        rss = read_rss_kb(self.pid)
        if rss is not None:
            self.samples.append(Sample(time.monotonic() - started, rss, self.fd_count()))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def terminate(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, as an operator stops it; its exit status, or None if it did not exit in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


class Sampler(threading.Thread):
    """Reads every server's RSS and descriptor count every ``interval`` seconds until stopped."""

    def __init__(self, servers: list[SoakServer], started: float, interval: float) -> None:
        super().__init__(name="sampler", daemon=True)
        self.servers = servers
        self.started = started
        self.interval = interval
        self.stopped = threading.Event()

    def run(self) -> None:
        while True:
            for server in self.servers:
                if server.alive():
                    server.sample(self.started)
            if self.stopped.wait(self.interval):
                return


def slope_kib_per_min(samples: list[Sample]) -> float:
    """Least-squares slope of RSS over time, in KiB per minute."""
    xs = [sample.at / 60.0 for sample in samples]
    ys = [float(sample.rss_kb) for sample in samples]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / spread


@dataclass
class LogSummary:
    """What the server's log holds: anything that must not be there, and its warnings."""

    lines: int = 0
    bad: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def scan_log(server: SoakServer) -> LogSummary:
    """Errors, tracebacks, or anything not a JSON record (gevent prints a greenlet's traceback
    straight to stderr) are bad; warnings are kept to be shown."""
    summary = LogSummary()
    for record, raw in server.records():
        summary.lines += 1
        if record is None:
            summary.bad.append(raw)
            continue
        level = str(record.get("level", ""))
        if level in ("error", "critical") or "exc" in record:
            summary.bad.append(raw)
        elif level == "warning":
            summary.warnings.append(str(record.get("msg", "")))
    return summary
