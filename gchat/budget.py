"""Budgets that refuse: a token bucket per key (an address, an address and a target).

Pure, with time passed in. The reader's ``TokenBucket`` never refuses, it makes
the sender wait, which is right for one connection's lines. A budget shared by
every connection from one address cannot make anyone wait (the next line may
come from another connection), so past it an action is refused instead.
"""

from collections import OrderedDict
from collections.abc import Hashable
from typing import Optional


class Budget:
    """``rate`` actions a second per key, ``burst`` of them at once; beyond that, refused.

    A bucket is forgotten once it would be full again: ``burst / rate`` seconds
    after its last use it is, whatever it held. So memory grows with the keys
    used in the last ``burst / rate`` seconds, not with every key ever seen,
    and forgetting changes no answer.
    """

    __slots__ = ("_buckets", "_burst", "_horizon", "_rate")

    def __init__(self, rate: float, burst: int) -> None:
        if not (rate > 0 and burst >= 1):
            raise ValueError(f"a budget needs a rate above 0 and a burst of at least 1, not {rate}, {burst}")
        self._rate = rate
        self._burst = float(burst)
        self._horizon = burst / rate
        # key -> (tokens, when last used), least recently used first.
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()

    def allow(self, key: Hashable, now: float, cost: float = 1) -> bool:
        """Spend ``cost`` tokens of ``key``'s bucket if it has them; ``now`` must never go back.

        A cost above the burst costs the whole burst: it waits for a full bucket.
        """
        self._forget(now)
        bucket = self._buckets.pop(key, None)
        tokens = self._burst
        if bucket is not None:
            saved, stamp = bucket
            tokens = min(tokens, saved + (now - stamp) * self._rate)
        cost = min(cost, self._burst)
        allowed = tokens >= cost
        self._buckets[key] = (tokens - cost if allowed else tokens, now)
        return allowed

    def __len__(self) -> int:
        """Buckets remembered: the memory the budget holds."""
        return len(self._buckets)

    def _forget(self, now: float) -> None:
        buckets = self._buckets
        while buckets:
            key, (_, stamp) = next(iter(buckets.items()))
            if now - stamp < self._horizon:
                return
            del buckets[key]


def budget(rate: float, burst: int) -> Optional[Budget]:
    """The budget a ``--X-rate``/``--X-burst`` pair of flags asks for; rate 0: none (no limit)."""
    return Budget(rate, burst) if rate else None
