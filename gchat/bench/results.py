"""What one worker measured in one phase, and how workers' figures add up (pure data)."""

from dataclasses import dataclass, field
from typing import Optional, Union

from gchat.bench.stats import Histogram


@dataclass
class Cpu:
    """The generator's own CPU use over an interval: if it nears one core, it was the bottleneck."""

    worker: int
    user_s: float
    system_s: float
    wall_s: float

    @property
    def fraction(self) -> float:
        return (self.user_s + self.system_s) / self.wall_s if self.wall_s > 0 else 0.0


@dataclass
class Checks:
    """Correctness: the aggregate count over all receivers and the sampled receivers' sequence checks."""

    expected: int = 0
    delivered: int = 0
    losses: int = 0
    duplicates: int = 0
    reorders: int = 0
    malformed: dict[str, int] = field(default_factory=dict)
    foreign: int = 0
    sampled_receivers: int = 0
    sampled_lines: int = 0
    drained: bool = True

    def merge(self, other: "Checks") -> None:
        self.expected += other.expected
        self.delivered += other.delivered
        self.losses += other.losses
        self.duplicates += other.duplicates
        self.reorders += other.reorders
        for reason, count in other.malformed.items():
            self.malformed[reason] = self.malformed.get(reason, 0) + count
        self.foreign += other.foreign
        self.sampled_receivers += other.sampled_receivers
        self.sampled_lines += other.sampled_lines
        self.drained = self.drained and other.drained

    def failures(self) -> list[str]:
        """Each failed check in words; empty when the server delivered exactly what it should."""
        found = []
        if self.losses:
            found.append(f"{self.losses} lines lost on sampled receivers")
        if self.duplicates:
            found.append(f"{self.duplicates} duplicate lines on sampled receivers")
        if self.reorders:
            found.append(f"{self.reorders} lines out of order on sampled receivers")
        malformed = sum(self.malformed.values())
        if malformed:
            kinds = ", ".join(f"{count} {reason}" for reason, count in sorted(self.malformed.items()))
            found.append(f"{malformed} malformed lines ({kinds})")
        if self.delivered < self.expected:
            found.append(f"{self.delivered} deliveries counted, {self.expected} expected")
        elif self.delivered > self.expected:
            found.append(
                f"{self.delivered} deliveries counted, {self.expected} expected "
                "(duplicates, or a server that echoes senders' own lines: --echo)"
            )
        return found


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


@dataclass
class StreamResult:
    """A throughput or latency phase: senders sending into one room for a measured interval."""

    lines_sent: int = 0
    lines_sent_measured: int = 0
    lines_accepted: int = 0
    deliveries_measured: int = 0
    interval_s: float = 0.0
    drain_s: float = 0.0
    latency: Histogram = field(default_factory=Histogram)
    lag: Histogram = field(default_factory=Histogram)
    checks: Checks = field(default_factory=Checks)
    cpu: list[Cpu] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    slow_dropped: Optional[bool] = None
    # The server's CPU use over the interval, as a share of one core (with --pid).
    server_cpu: Optional[float] = None

    def merge(self, other: "StreamResult") -> None:
        self.lines_sent += other.lines_sent
        self.lines_sent_measured += other.lines_sent_measured
        self.lines_accepted += other.lines_accepted
        self.deliveries_measured += other.deliveries_measured
        self.interval_s = max(self.interval_s, other.interval_s)
        self.drain_s = max(self.drain_s, other.drain_s)
        self.latency.merge(other.latency)
        self.lag.merge(other.lag)
        self.checks.merge(other.checks)
        self.cpu += other.cpu
        self.errors = _unique(self.errors + other.errors)
        if other.slow_dropped is not None:
            self.slow_dropped = other.slow_dropped
        if other.server_cpu is not None:
            self.server_cpu = other.server_cpu


@dataclass
class FanoutResult:
    """Idle clients, then lines sent one at a time, each once the previous has reached everyone."""

    clients: int = 0
    connect_start_ns: int = 0
    connect_end_ns: int = 0
    reach_ms: list[float] = field(default_factory=list)
    rss_before_kb: Optional[int] = None
    rss_after_kb: Optional[int] = None
    checks: Checks = field(default_factory=Checks)
    # Over the timed lines: each worker's own CPU, and the server's share of a core (with --pid).
    cpu: list[Cpu] = field(default_factory=list)
    server_cpu: Optional[float] = None
    errors: list[str] = field(default_factory=list)

    @property
    def connect_s(self) -> float:
        return (self.connect_end_ns - self.connect_start_ns) / 1e9

    def merge(self, other: "FanoutResult") -> None:
        self.clients += other.clients
        if other.connect_start_ns and (
            not self.connect_start_ns or other.connect_start_ns < self.connect_start_ns
        ):
            self.connect_start_ns = other.connect_start_ns
        self.connect_end_ns = max(self.connect_end_ns, other.connect_end_ns)
        # Every worker computes the same reach times from the same gathered figures.
        self.reach_ms = self.reach_ms or other.reach_ms
        if other.rss_before_kb is not None:
            self.rss_before_kb = other.rss_before_kb
        if other.rss_after_kb is not None:
            self.rss_after_kb = other.rss_after_kb
        if other.server_cpu is not None:
            self.server_cpu = other.server_cpu
        self.checks.merge(other.checks)
        self.cpu += other.cpu
        self.errors = _unique(self.errors + other.errors)


@dataclass
class CapacityStep:
    clients: int
    reach_ms: list[float]
    error: Optional[str] = None
    # Over the step's round: the generator's own CPU (over 90%: its reach times are partly its own),
    # and the server's share of a core (with --pid).
    cpu: Optional[Cpu] = None
    server_cpu: Optional[float] = None
    # Lines the round sent, its untimed ones included.
    lines_sent: int = 0


@dataclass
class CapacityResult:
    """Time-to-reach-all as the room grows, until it passes the limit."""

    limit_ms: float = 500.0
    steps: list[CapacityStep] = field(default_factory=list)
    checks: Checks = field(default_factory=Checks)
    cpu: list[Cpu] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def merge(self, other: "CapacityResult") -> None:
        self.steps += other.steps
        self.checks.merge(other.checks)
        self.cpu += other.cpu
        self.errors = _unique(self.errors + other.errors)


PhaseResult = Union[StreamResult, FanoutResult, CapacityResult]


def merge_phases(workers: list[list[PhaseResult]]) -> list[PhaseResult]:
    """Phase by phase, all workers' results folded into the first's."""
    merged = workers[0]
    for other in workers[1:]:
        for mine, theirs in zip(merged, other):
            mine.merge(theirs)  # type: ignore[arg-type]
    return merged
