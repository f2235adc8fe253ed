"""Percentiles, a latency histogram and the per-sender sequence checker (pure, no I/O)."""

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Optional


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile: always a value that was observed, never an interpolation.

    ``sorted_values`` must be sorted and not empty; ``q`` is in [0, 100].
    """
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} outside [0, 100]")
    rank = max(math.ceil(q / 100 * len(sorted_values)), 1)
    return sorted_values[rank - 1]


# Sub-bucket bits: each power of two is split in 2**7 buckets, so a recorded
# value is known to better than 1% (HdrHistogram's idea, in a few lines).
_SUB_BITS = 7
_SUB = 1 << _SUB_BITS


def bucket_of(value: int) -> int:
    shift = value.bit_length() - _SUB_BITS - 1
    if shift <= 0:
        return value
    return (shift << _SUB_BITS) + (value >> shift)


def bucket_bounds(index: int) -> "tuple[int, int]":
    """Lowest and highest value that fall into bucket ``index``."""
    if index < 2 * _SUB:
        return index, index
    shift = (index >> _SUB_BITS) - 1
    mantissa = index - (shift << _SUB_BITS)
    return mantissa << shift, ((mantissa + 1) << shift) - 1


class Histogram:
    """Non-negative integers (latencies in ns) in log-linear buckets.

    Keeps memory bounded however many lines are sampled, and merges across
    processes by adding counts; percentiles are exact to within 1%.
    """

    __slots__ = ("buckets", "count", "max", "min", "total")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.total = 0
        self.min: Optional[int] = None
        self.max: Optional[int] = None

    def record(self, value: int) -> None:
        # bucket_of, inlined: this runs once per sampled line.
        if value < 0:
            value = 0
        shift = value.bit_length() - _SUB_BITS - 1
        index = value if shift <= 0 else (shift << _SUB_BITS) + (value >> shift)
        buckets = self.buckets
        buckets[index] = buckets.get(index, 0) + 1
        self.count += 1
        self.total += value
        if self.max is None or value > self.max:
            self.max = value
        if self.min is None or value < self.min:
            self.min = value

    def merge(self, other: "Histogram") -> None:
        for index, count in other.buckets.items():
            self.buckets[index] = self.buckets.get(index, 0) + count
        self.count += other.count
        self.total += other.total
        if other.max is not None and (self.max is None or other.max > self.max):
            self.max = other.max
        if other.min is not None and (self.min is None or other.min < self.min):
            self.min = other.min

    def percentile(self, q: float) -> int:
        """Nearest rank, reported as the middle of its bucket (clamped to the observed range)."""
        if not self.count or self.max is None or self.min is None:
            raise ValueError("percentile of an empty histogram")
        rank = max(math.ceil(q / 100 * self.count), 1)
        if rank >= self.count:
            return self.max
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                low, high = bucket_bounds(index)
                return min(max((low + high) // 2, self.min), self.max)
        return self.max

    def __getstate__(self) -> "tuple[dict[int, int], int, int, Optional[int], Optional[int]]":
        return self.buckets, self.count, self.total, self.min, self.max

    def __setstate__(self, state: "tuple[dict[int, int], int, int, Optional[int], Optional[int]]") -> None:
        self.buckets, self.count, self.total, self.min, self.max = state


class SequenceChecker:
    """Checks, for one receiver, that each sender's numbers arrive as 0, 1, 2, ...

    A number beyond the next expected one opens a gap (those numbers count as
    lost until they turn up); one that fills a gap was reordered; one seen
    before is a duplicate. ``finish`` adds what never came at the end of each
    sender's stream.
    """

    __slots__ = ("_missing", "_next", "duplicates", "reorders")

    def __init__(self) -> None:
        self._next: dict[int, int] = {}
        self._missing: dict[int, set[int]] = {}
        self.duplicates = 0
        self.reorders = 0

    def see(self, sender: int, seq: int) -> None:
        expected = self._next.get(sender, 0)
        if seq == expected:
            self._next[sender] = seq + 1
        elif seq > expected:
            self._missing.setdefault(sender, set()).update(range(expected, seq))
            self._next[sender] = seq + 1
        else:
            missing = self._missing.get(sender)
            if missing is not None and seq in missing:
                missing.discard(seq)
                self.reorders += 1
            else:
                self.duplicates += 1

    def next_seq(self, sender: int) -> int:
        """One past the highest number seen from ``sender``: what a window may count as arrived."""
        return self._next.get(sender, 0)

    def gaps(self) -> int:
        return sum(len(missing) for missing in self._missing.values())

    def losses(self, sent: Mapping[int, int], exclude: Iterable[int] = ()) -> int:
        """Numbers never received, given how many lines each sender sent in all.

        ``exclude`` names senders this receiver is not meant to hear (itself,
        on a server that does not echo).
        """
        skip = set(exclude)
        tail = sum(
            max(count - self._next.get(sender, 0), 0) for sender, count in sent.items() if sender not in skip
        )
        return self.gaps() + tail
