"""The workloads, as run by one worker process over its share of the clients.

Each phase opens its own connections and closes them all at the end whatever
happened, so a refused connection or a server dying mid-run ends in a report,
not a traceback or a hang: every wait has a deadline.
"""

import gc
import socket
import time
from collections.abc import Sequence
from typing import Callable, Optional, Protocol, TypeVar

import gevent
from gevent.event import Event
from gevent.lock import Semaphore
from gevent.pool import Group, Pool

from gchat.bench.clients import Protocol as ChatProtocol
from gchat.bench.clients import ProtocolError, connect, make_protocol
from gchat.bench.irc import PingWatch
from gchat.bench.message import needle, new_token, sender_needle
from gchat.bench.options import Plan, port_for
from gchat.bench.options import Receiver as ReceiverSpec
from gchat.bench.procs import Aborted, cpu_times, server_cpu_s, server_status_kb
from gchat.bench.receivers import (
    Inspector,
    Measure,
    ReachTally,
    Receiver,
    Tally,
    Window,
    discard,
)
from gchat.bench.results import (
    CapacityResult,
    CapacityStep,
    Checks,
    Cpu,
    FanoutResult,
    PhaseResult,
    StreamResult,
)
from gchat.bench.senders import Sender
from gchat.bench.stats import Histogram, percentile
from gchat.rlimit import raise_open_files

T = TypeVar("T")

# Senders start this long after the last worker is ready: time for every
# worker to learn the start time.
START_MARGIN_NS = 200_000_000
# A drain that makes no progress for this long will not finish.
DRAIN_STALL_S = 3.0
SLOW_RCVBUF = 4096
# How often receivers read while others connect (see Tally.lingering).
CONNECT_LINGER_S = 0.05
CAPACITY_LIMIT_MS = 500.0


class Coordinator(Protocol):
    def allgather(self, value: T) -> list[T]: ...


def describe(error: BaseException, host: str, port: int) -> str:
    if isinstance(error, ProtocolError):
        return str(error)
    if isinstance(error, socket.timeout):
        return f"connecting to {host}:{port} timed out"
    reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
    return f"cannot connect to {host}:{port}: {reason}"


class Connections:
    """Every socket and greenlet of a phase, so that all are closed together however it ends."""

    def __init__(self, plan: Plan, proto: ChatProtocol) -> None:
        self.plan = plan
        self.proto = proto
        self.sockets: list[socket.socket] = []
        self.greenlets = Group()
        self.errors: list[str] = []
        # When a handshake last completed: see open().
        self.progress = 0.0

    def fail(self, message: str) -> None:
        if message not in self.errors:
            self.errors.append(message)

    def open(
        self, join: bool, index: int, rcvbuf: Optional[int] = None
    ) -> "Optional[tuple[socket.socket, bytes]]":
        """Connection ``index``, ready, and what was read past its handshake; or None (the error is noted)."""
        options = self.plan.options
        port = port_for(options, index)
        sock: Optional[socket.socket] = None
        started = time.monotonic()

        def deadline() -> float:
            # Hundreds of handshakes wait at once, each behind the others'
            # (on gchat every join is announced to the whole room): give up
            # only when none has finished for --timeout, not when this one has
            # waited that long behind a server that is still making progress.
            return max(started, self.progress) + options.timeout

        try:
            sock = connect(options.host, port, started + options.timeout, rcvbuf)
            self.sockets.append(sock)
            ready = self.proto.join if join else self.proto.ready_sender
            leftover = ready(sock, deadline, index)
        except (OSError, ProtocolError) as error:
            if sock is not None:
                sock.close()
            self.fail(describe(error, options.host, port))
            return None
        self.progress = time.monotonic()
        # Bounds every send; receivers treat a read timeout as nothing to read.
        sock.settimeout(options.timeout)
        return sock, leftover

    def receivers(
        self,
        specs: Sequence[ReceiverSpec],
        tally: Tally,
        inspector: Callable[[ReceiverSpec], Optional[Inspector]],
    ) -> list[Receiver]:
        """Connect receivers ``--batch`` at a time, each reading as soon as it is ready."""
        ready: list[Optional[Receiver]] = [None] * len(specs)

        def one(position: int, spec: ReceiverSpec) -> None:
            opened = self.open(join=True, index=spec.index)
            if opened is None:
                return
            sock, leftover = opened
            receiver = Receiver(sock, spec.own, inspector(spec), PingWatch() if self.proto.pings else None)
            ready[position] = receiver
            self.greenlets.spawn(receiver.run, tally, leftover)

        tally.lingering(CONNECT_LINGER_S)
        pool = Pool(self.plan.options.batch)
        try:
            for position, spec in enumerate(specs):
                if self.errors:
                    break
                pool.spawn(one, position, spec)
            pool.join()
        finally:
            tally.lingering(0.0)
        return [receiver for receiver in ready if receiver is not None]

    def sender_socket(self, ident: int) -> "Optional[tuple[socket.socket, Semaphore]]":
        """A connection of its own for sender ``ident``, and the lock on writing to it.

        What it receives is read and dropped (IRC PINGs answered, under the lock).
        """
        opened = self.open(join=False, index=ident)
        if opened is None:
            return None
        sock = opened[0]
        what = "a PUBLISH connection" if self.proto.name == "redis" else "a sending connection"
        writing = Semaphore()
        pings = PingWatch() if self.proto.pings else None
        self.greenlets.spawn(discard, sock, self.errors, what, self.proto.name == "redis", pings, writing)
        return sock, writing

    def close(self) -> None:
        self.greenlets.kill(block=True, timeout=2)
        for sock in self.sockets:
            sock.close()


def run_worker(plan: Plan, coordinator: Coordinator) -> list[PhaseResult]:
    """This worker's part of the whole run, one result per phase."""
    raise_open_files()
    mode = plan.options.mode
    if mode == "fanout":
        return [fanout_phase(plan, coordinator)]
    if mode == "capacity":
        return [capacity_phase(plan)]
    phases: list[PhaseResult] = [stream_phase(plan, coordinator, plan.tokens[0], slow=False)]
    if mode == "slow":
        phases.append(stream_phase(plan, coordinator, plan.tokens[1], slow=True))
    return phases


def stream_phase(plan: Plan, coordinator: Coordinator, token: bytes, slow: bool) -> StreamResult:
    """Senders into one room for warm-up plus duration, then a bounded drain and the checks."""
    options = plan.options
    proto = make_protocol(options)
    result = StreamResult()
    conns = Connections(plan, proto)
    tally = Tally([needle(token)])
    measure = Measure()
    windows: dict[int, Window] = {}
    inspectors: list[tuple[Inspector, Optional[int]]] = []

    def inspector(spec: ReceiverSpec) -> Optional[Inspector]:
        if not spec.sampled:
            return None
        made = Inspector(
            token, options.size, measure, result.latency, windows if spec.probe else None, proto.decoder()
        )
        inspectors.append((made, spec.own))
        return made

    started = cpu_times()
    try:
        receivers = conns.receivers(plan.receivers, tally, inspector)
        senders: list[Sender] = []

        def sender(sock: socket.socket, ident: int, writing: Semaphore) -> None:
            made = Sender(sock, proto, ident, token, options.size, options.window, options.timeout, writing)
            windows[ident] = made.acks
            senders.append(made)

        for receiver in receivers:
            if receiver.own is not None:
                sender(receiver.sock, receiver.own, receiver.writing)
        for ident in plan.senders:
            if not conns.errors:
                opened = conns.sender_socket(ident)
                if opened is not None:
                    sender(opened[0], ident, opened[1])
        slow_sock: Optional[socket.socket] = None
        if slow and plan.slow_client and not conns.errors:
            # Joins, then never reads: the server must not let it hold anyone up.
            opened = conns.open(join=True, index=options.clients, rcvbuf=SLOW_RCVBUF)
            slow_sock = opened[0] if opened else None

        ready = coordinator.allgather((list(conns.errors), time.monotonic_ns()))
        if any(errors for errors, _ in ready):
            result.errors = list(conns.errors) or ["another worker could not connect"]
            return result
        start = max(when for _, when in ready) + START_MARGIN_NS
        measure.start_ns = start + int(options.warmup * 1e9)
        measure.end_ns = measure.start_ns + int(options.duration * 1e9)
        running = Group()
        for made in senders:
            if options.mode == "throughput":
                running.spawn(made.flat_out, start, measure.start_ns, measure.end_ns)
            else:
                interval = max(int(plan.total_senders * 1e9 / options.rate), 1)
                first = start + int(made.ident * 1e9 / options.rate)
                running.spawn(made.paced, first, interval, measure.start_ns, measure.end_ns)
        snapshots: list[Snapshot] = []
        pids = options.pids if plan.worker == 0 else ()
        timer = gevent.spawn(_snapshots, tally, measure, pids, snapshots)
        running.join(timeout=(measure.end_ns - time.monotonic_ns()) / 1e9 + options.timeout + 1)
        running.kill(block=True, timeout=1)
        timer.join(timeout=1)
        timer.kill()
        for made in senders:
            result.lines_sent += made.sent
            result.lines_sent_measured += made.sent_measured
            result.lag.merge(made.lag)
            if made.error:
                result.errors.append(made.error)
        if len(snapshots) == 2:
            (delivered_from, cpu_from, server_from), (delivered_to, cpu_to, server_to) = snapshots
            result.deliveries_measured = delivered_to - delivered_from
            result.interval_s = cpu_to[2] - cpu_from[2]
            result.cpu.append(_cpu(plan.worker, cpu_from, cpu_to))
            result.server_cpu = _share(server_from, server_to, result.interval_s)

        gathered = coordinator.allgather({made.ident: made.sent for made in senders})
        sent = {ident: count for part in gathered for ident, count in part.items()}
        total = sum(sent.values())
        echo = options.echo
        result.checks.expected = sum(
            total - (sent.get(r.own, 0) if r.own is not None and not echo else 0) for r in receivers
        )

        def sampled_complete() -> bool:
            return all(
                made.checker.next_seq(ident) >= count
                for made, own in inspectors
                for ident, count in sent.items()
                if ident != own or echo
            )

        drain_started = time.monotonic()
        result.checks.drained = _drain(
            tally, result.checks.expected, sampled_complete, len(receivers), options.timeout
        )
        result.drain_s = time.monotonic() - drain_started
        result.checks.delivered = tally.delivered
        for made_inspector, own in inspectors:
            _check(result.checks, made_inspector, sent, own if own is not None and not echo else None)
            result.lines_accepted += made_inspector.accepted
        if slow_sock is not None:
            result.slow_dropped = _was_dropped(slow_sock)
        if tally.closed:
            result.errors.append(
                f"the server closed {tally.closed} of {len(receivers)} receiving connections"
            )
        result.errors = list(dict.fromkeys(result.errors + conns.errors + tally.errors))
    except Aborted as error:
        result.errors.append(f"aborted: {error}")
    finally:
        conns.close()
        if not result.cpu:
            result.cpu.append(_cpu(plan.worker, started, cpu_times()))
    return result


# Deliveries, the generator's CPU times, the server's CPU seconds.
Snapshot = tuple[int, tuple[float, float, float], Optional[float]]


def _snapshots(tally: Tally, measure: Measure, pids: Sequence[int], into: list[Snapshot]) -> None:
    """Deliveries and CPU time at the start and the end of the measured interval."""
    for when in (measure.start_ns, measure.end_ns):
        delay = when - time.monotonic_ns()
        if delay > 0:
            gevent.sleep(delay / 1e9)
        into.append((tally.delivered, cpu_times(), server_cpu_s(pids)))


def _share(before: Optional[float], after: Optional[float], wall_s: float) -> Optional[float]:
    """The server's share of a core over ``wall_s`` seconds, from its CPU seconds at both ends (if known)."""
    if before is None or after is None or wall_s <= 0:
        return None
    return (after - before) / wall_s


def _cpu(worker: int, start: "tuple[float, float, float]", end: "tuple[float, float, float]") -> Cpu:
    return Cpu(worker, end[0] - start[0], end[1] - start[1], end[2] - start[2])


def _drain(tally: Tally, expected: int, complete: Callable[[], bool], receivers: int, timeout: float) -> bool:
    """Wait until every expected delivery is counted and every sampled receiver has each sender's last line.

    Both, because a server that delivers too much (duplicates, an echo) reaches
    the count early; the sampled receivers would then report lines still on
    their way as lost. False when the count is not exact at the end.
    """
    started = last_change = time.monotonic()
    last = tally.delivered
    while tally.delivered < expected or not complete():
        now = time.monotonic()
        if tally.delivered != last:
            last, last_change = tally.delivered, now
        if (
            tally.closed >= receivers
            or now - started >= timeout
            or now - last_change >= min(DRAIN_STALL_S, timeout)
        ):
            break
        gevent.sleep(0.005)
    return tally.delivered == expected


def _check(checks: Checks, inspector: Inspector, sent: "dict[int, int]", own: Optional[int]) -> None:
    checks.sampled_receivers += 1
    checks.sampled_lines += inspector.lines
    checks.losses += inspector.checker.losses(sent, () if own is None else (own,))
    checks.duplicates += inspector.checker.duplicates
    checks.reorders += inspector.checker.reorders
    checks.foreign += inspector.foreign
    for reason, count in inspector.malformed.items():
        checks.malformed[reason] = checks.malformed.get(reason, 0) + count


def _was_dropped(sock: socket.socket) -> bool:
    """Whether the server has closed the never-reading client (reading what is left, briefly)."""
    sock.settimeout(0.2)
    deadline = time.monotonic() + 2.0
    try:
        while time.monotonic() < deadline:
            if not sock.recv(1 << 20):
                return True
    except socket.timeout:
        return False
    except OSError:
        return True
    return False


def fanout_phase(plan: Plan, coordinator: Coordinator) -> FanoutResult:
    """N idle clients; then lines one at a time, each once the last reached every client."""
    options = plan.options
    proto = make_protocol(options)
    token = plan.tokens[0]
    result = FanoutResult(clients=len(plan.receivers))
    conns = Connections(plan, proto)
    tally = ReachTally([sender_needle(token, 0)], len(plan.receivers))
    inspectors: list[Inspector] = []
    nothing = Measure()
    latency = Histogram()

    def inspector(spec: ReceiverSpec) -> Optional[Inspector]:
        if not spec.sampled:
            return None
        inspectors.append(Inspector(token, options.size, nothing, latency, decode=proto.decoder()))
        return inspectors[-1]

    started = cpu_times()
    sent = 0
    try:
        if plan.worker == 0:
            result.rss_before_kb = server_status_kb(options.pids, "VmRSS")
        coordinator.allgather(None)
        result.connect_start_ns = time.monotonic_ns()
        receivers = conns.receivers(plan.receivers, tally, inspector)
        sender: Optional[Sender] = None
        if plan.senders and not conns.errors:
            opened = conns.sender_socket(0)
            if opened is not None:
                sender = Sender(opened[0], proto, 0, token, options.size, 1, options.timeout, opened[1])
        result.connect_end_ns = time.monotonic_ns()
        ready = coordinator.allgather(list(conns.errors))
        if any(ready):
            result.errors = list(conns.errors) or ["another worker could not connect"]
            return result
        if plan.worker == 0:
            result.rss_after_kb = server_status_kb(options.pids, "VmRSS")
        # The generator's CPU over the timed lines alone, where being busy could delay a reach time
        # (reading a chat server's join notices while the room connects is no part of one).
        started = cpu_times()
        server_before = server_cpu_s(options.pids) if plan.worker == 0 else None
        for seq in range(options.messages):
            sent_at: Optional[int] = None
            error: Optional[str] = None
            if sender is not None:
                sent_at = sender.one(seq)
                error = sender.error
            reached = tally.wait(0, seq, time.monotonic() + options.timeout) if error is None else None
            times = coordinator.allgather((sent_at, reached, error))
            failures = [failure for _, _, failure in times if failure]
            if failures:
                result.errors.append(failures[0])
                break
            sent = seq + 1
            if any(when is None for _, when, _ in times):
                result.errors.append(f"line {seq} did not reach every client within {options.timeout:g} s")
                break
            sent_ns = min(when for when, _, _ in times if when is not None)
            reached_ns = max(when for _, when, _ in times if when is not None)
            result.reach_ms.append((reached_ns - sent_ns) / 1e6)
        result.cpu.append(_cpu(plan.worker, started, cpu_times()))
        server_after = server_cpu_s(options.pids) if plan.worker == 0 else None
        result.server_cpu = _share(server_before, server_after, result.cpu[-1].wall_s)
        result.checks.expected = sent * len(receivers)
        result.checks.delivered = tally.delivered
        for made in inspectors:
            _check(result.checks, made, {0: sent}, None)
        if tally.closed:
            result.errors.append(f"the server closed {tally.closed} of {len(receivers)} connections")
        result.errors = list(dict.fromkeys(result.errors + conns.errors + tally.errors))
    except Aborted as error:
        result.errors.append(f"aborted: {error}")
    finally:
        conns.close()
        if not result.cpu:
            result.cpu.append(_cpu(plan.worker, started, cpu_times()))
    return result


def capacity_phase(plan: Plan) -> CapacityResult:
    """Grow the room by ``--step`` until a line takes over 500 ms (p95) to reach everyone.

    Each step uses a fresh token: lines of earlier steps that a server replays
    to newcomers as history are foreign to it.
    """
    options = plan.options
    proto = make_protocol(options)
    result = CapacityResult(limit_ms=CAPACITY_LIMIT_MS)
    conns = Connections(plan, proto)
    latency = Histogram()
    nothing = Measure()
    tally = ReachTally([sender_needle(b"-" * 8, s) for s in range(options.senders)], 0)
    started = cpu_times()
    receivers: list[Receiver] = []
    try:
        senders: list[Sender] = []
        for ident in range(options.senders):
            opened = conns.sender_socket(ident)
            if opened is None:
                break
            senders.append(Sender(opened[0], proto, ident, b"", options.size, 1, options.timeout, opened[1]))
        size = 0
        while not conns.errors and size < options.max_clients:
            size = min(size + options.step, options.max_clients)
            specs = [ReceiverSpec(index) for index in range(len(receivers), size)]
            receivers += conns.receivers(specs, tally, lambda spec: None)
            if conns.errors:
                result.steps.append(CapacityStep(len(receivers), [], conns.errors[0]))
                break
            token = new_token()
            tally.reset([sender_needle(token, s) for s in range(options.senders)], len(receivers), receivers)
            inspectors = [
                Inspector(token, options.size, nothing, latency, decode=proto.decoder())
                for _ in receivers[: options.sample]
            ]
            for receiver, made in zip(receivers, inspectors):
                receiver.inspector = made
            step = CapacityStep(len(receivers), [])
            delivered_before = tally.delivered
            cpu_before, server_before = cpu_times(), server_cpu_s(options.pids)
            # The bench's own full collections walk every receiver's objects (at 4,000 clients
            # 55-85 ms of CPU every 2 s, and nothing to collect): a pause that grows with the room
            # and lands on every line in flight. None runs while a round is timed; reference
            # counting frees what the round drops, and any cycle waits for the next connect.
            gc.disable()
            try:
                sent = _capacity_round(senders, tally, token, options.messages, options.timeout, step)
            finally:
                gc.enable()
            step.cpu = _cpu(plan.worker, cpu_before, cpu_times())
            step.lines_sent = sum(sent.values())
            step.server_cpu = _share(server_before, server_cpu_s(options.pids), step.cpu.wall_s)
            result.checks.expected += sum(sent.values()) * len(receivers)
            result.checks.delivered += tally.delivered - delivered_before
            for made in inspectors:
                _check(result.checks, made, sent, None)
            result.steps.append(step)
            if step.error or not step.reach_ms:
                break
            if percentile(sorted(step.reach_ms), 95) > CAPACITY_LIMIT_MS:
                break
        if tally.closed:
            result.errors.append(f"the server closed {tally.closed} connections")
        result.errors = list(dict.fromkeys(result.errors + conns.errors + tally.errors))
    finally:
        conns.close()
        result.cpu.append(_cpu(plan.worker, started, cpu_times()))
    return result


def _capacity_round(
    senders: list[Sender], tally: ReachTally, token: bytes, messages: int, timeout: float, step: CapacityStep
) -> "dict[int, int]":
    """Every sender sends ``messages`` lines, each once its previous line reached everyone.

    Each sender's first line is not timed, and no timed line is sent before
    every sender's first line has reached everyone: by then what the server
    still owed anyone from the connect phase (a chat server's join notices to
    the whole room) has gone out, so the timed lines measure broadcast at this
    room size, not the tail of the connection storm.
    """
    warm = Event()
    cold = [len(senders)]

    def warmed() -> None:
        cold[0] -= 1
        if not cold[0]:
            warm.set()

    def run(sender: Sender) -> None:
        sender.token = token
        try:
            for seq in range(messages + 1):
                if seq == 1:
                    warmed()
                    if not warm.wait(timeout) or step.error:
                        return
                sent_at = sender.one(seq)
                if sent_at is None:
                    step.error = step.error or sender.error
                    return
                reached = tally.wait(sender.ident, seq, time.monotonic() + timeout)
                if reached is None:
                    step.error = (
                        step.error or f"a line did not reach all {tally.receivers} clients in {timeout:g} s"
                    )
                    return
                if seq:
                    step.reach_ms.append((reached - sent_at) / 1e6)
        finally:
            if not warm.is_set() and step.error:
                warm.set()  # the others stop waiting: the round has failed

    group = Group()
    for sender in senders:
        sender.sent = 0
        group.spawn(run, sender)
    group.join(timeout=(messages + 1) * (timeout + 1) + 1)
    group.kill(block=True, timeout=1)
    return {sender.ident: sender.sent for sender in senders}
