"""Worker processes and the one way they talk: an all-gather at agreed points of a run.

A single Python process can saturate its core before the server does, so a run
may be spread over several. They never share a window or a socket; they only
need to agree on a few things: everyone is connected (and when to start), how
many lines were sent in all (so each knows what to wait for), and in fan-out
when a line has reached every process. Each is an all-gather through the
parent; ``time.monotonic_ns`` is one clock for all processes on the machine.
"""

import multiprocessing
import multiprocessing.connection
import os
import resource
import time
import traceback
from collections.abc import Iterable, Sequence
from multiprocessing.connection import Connection
from typing import Any, Callable, Optional, TypeVar, cast

from gchat.bench.options import Plan
from gchat.bench.results import PhaseResult

T = TypeVar("T")
N = TypeVar("N", int, float)


class Aborted(Exception):
    """Another worker failed: stop, report what was seen."""


class Solo:
    """The coordinator of a run in one process: gathering is trivial."""

    def allgather(self, value: T) -> list[T]:
        return [value]


class PipeCoordinator:
    """A worker's side: send its value to the parent, wait (without blocking its greenlets) for all."""

    def __init__(self, conn: Connection, timeout: float) -> None:
        self._conn = conn
        self._timeout = timeout

    def allgather(self, value: T) -> list[T]:
        from gevent.socket import wait_read

        self._conn.send(("gather", value))
        deadline = time.monotonic() + self._timeout
        while not self._conn.poll():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Aborted("the other worker processes did not answer in time")
            try:
                wait_read(self._conn.fileno(), timeout=remaining)
            except Exception:  # gevent raises its own timeout type here
                continue
        kind, payload = self._conn.recv()
        if kind == "abort":
            raise Aborted(str(payload))
        return cast("list[T]", payload)


Worker = Callable[[Plan, Any], list[PhaseResult]]


def _child(conn: Connection, plan: Plan, worker: Worker, timeout: float) -> None:
    try:
        results = worker(plan, PipeCoordinator(conn, timeout))
        conn.send(("done", results))
    except Aborted as error:
        conn.send(("aborted", str(error)))
    except BaseException:
        conn.send(("error", f"worker {plan.worker} crashed:\n{traceback.format_exc()}"))
    finally:
        conn.close()


def run_workers(
    plans: list[Plan], worker: Worker, round_timeout: float
) -> "tuple[list[list[PhaseResult]], list[str]]":
    """Run one worker per plan in spawned processes and serve their all-gathers.

    Returns the results of the workers that finished and the errors of the
    others. Every wait is bounded by ``round_timeout``: a worker that goes
    silent for that long is killed and the others are aborted.
    """
    context = multiprocessing.get_context("spawn")
    conns: list[Connection] = []
    processes = []
    for plan in plans:
        parent, child = context.Pipe()
        process = context.Process(target=_child, args=(child, plan, worker, round_timeout), daemon=True)
        process.start()
        child.close()
        conns.append(parent)
        processes.append(process)
    results: dict[int, list[PhaseResult]] = {}
    errors: list[str] = []
    live = set(range(len(plans)))
    try:
        while live:
            messages = _collect(conns, live, round_timeout, errors)
            gathers = {index: payload for index, (kind, payload) in messages.items() if kind == "gather"}
            for index, (kind, payload) in messages.items():
                if kind == "done":
                    results[index] = payload
                    live.discard(index)
                elif kind in ("error", "aborted"):
                    if kind == "error":
                        errors.append(str(payload))
                    live.discard(index)
            if gathers and len(gathers) == len(messages) == len(live) and not errors:
                gathered = [gathers[index] for index in sorted(gathers)]
                for index in gathers:
                    conns[index].send(("gathered", gathered))
            elif gathers:
                reason = errors[-1].splitlines()[0] if errors else "a worker process stopped early"
                for index in gathers:
                    conns[index].send(("abort", reason))
    finally:
        for process in processes:
            process.join(timeout=2)
            if process.is_alive():
                process.kill()
                process.join(timeout=2)
        for conn in conns:
            conn.close()
    return [results[index] for index in sorted(results)], errors


def _collect(
    conns: list[Connection], live: set[int], timeout: float, errors: list[str]
) -> "dict[int, tuple[str, Any]]":
    """One message from every live worker (a worker that dies or stalls yields an error)."""
    messages: dict[int, tuple[str, Any]] = {}
    deadline = time.monotonic() + timeout
    waiting = {conns[index]: index for index in live}
    while waiting:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            for index in waiting.values():
                messages[index] = ("error", f"worker {index} did not answer within {timeout:g} s")
            break
        for ready in multiprocessing.connection.wait(list(waiting), remaining):
            conn = cast(Connection, ready)
            index = waiting.pop(conn)
            try:
                messages[index] = conn.recv()
            except (EOFError, OSError):
                messages[index] = ("error", f"worker {index} exited without a result")
    return messages


def cpu_times() -> "tuple[float, float, float]":
    """(user, system, wall) seconds so far, for this process only."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime, time.monotonic()


def read_cpu_s(pid: Optional[int]) -> Optional[float]:
    """CPU seconds (user + system) ``pid`` has used so far, or None: is the server the bottleneck?"""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_status_kb(pid: Optional[int], field: str) -> Optional[int]:
    """A ``/proc/PID/status`` size field in KiB (VmRSS now, VmHWM its peak), or None if absent."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def read_rss_kb(pid: Optional[int]) -> Optional[int]:
    """VmRSS of ``pid`` in KiB, or None if there is no such process (or no pid)."""
    return read_status_kb(pid, "VmRSS")


def _summed(values: "Iterable[Optional[N]]") -> Optional[N]:
    """The sum, or None when there is nothing to add or any process could not be read.

    A cluster is measured as one server: its nodes and Redis share the work,
    and a part left out would flatter the figure.
    """
    total: Optional[N] = None
    for value in values:
        if value is None:
            return None
        total = value if total is None else total + value
    return total


def server_cpu_s(pids: Sequence[int]) -> Optional[float]:
    """CPU seconds all of the server's processes have used so far (see read_cpu_s)."""
    return _summed(read_cpu_s(pid) for pid in pids)


def server_status_kb(pids: Sequence[int], field: str) -> Optional[int]:
    """A ``/proc/PID/status`` size field (see read_status_kb) of all of the server's processes together."""
    return _summed(read_status_kb(pid, field) for pid in pids)
