"""A token bucket with time passed in, so it can be tested without a clock."""


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up.

    ``take`` never refuses: it goes into debt and says how long to wait. The
    reader waits that long before reading on, which turns a flood into TCP
    back-pressure on the sender instead of dropped lines.
    """

    __slots__ = ("_burst", "_rate", "_stamp", "_tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self._rate = rate
        self._burst = burst
        self._tokens = burst
        self._stamp = now

    def available(self, now: float) -> float:
        """Tokens that could be taken at ``now`` without waiting (negative: in debt)."""
        return min(self._burst, self._tokens + (now - self._stamp) * self._rate)

    def take(self, now: float) -> float:
        """Take one token; return the seconds to wait before using it (0 if none)."""
        tokens = self.available(now) - 1
        self._tokens = tokens
        self._stamp = now
        return 0.0 if tokens >= 0 else -tokens / self._rate
