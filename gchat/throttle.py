"""How long an address must wait before its next secret is checked; time passed in.

Every wrong password (or operator password) from an address, on any of its
connections, doubles the pause before the next try from that address is
checked, from ``first`` up to ``longest``; a right try is never penalised and
an address with no recent wrong try never waits. Tries from one address are
thereby serialised: twenty connections guess no faster than one. An address
is forgotten ``forget`` seconds after its last wrong try. Pure: the caller
sleeps (see ``gchat.session`` and ``gchat.operators``).
"""

from collections import OrderedDict

FIRST = 0.5
LONGEST = 16.0
FORGET = 600.0
# Addresses remembered at once; past it the longest-quiet one goes first.
MAX_TRACKED = 100_000


class Backoff:
    __slots__ = ("_first", "_forget", "_longest", "_max_tracked", "_records")

    def __init__(
        self,
        first: float = FIRST,
        longest: float = LONGEST,
        forget: float = FORGET,
        max_tracked: int = MAX_TRACKED,
    ) -> None:
        self._first = first
        self._longest = longest
        self._forget = forget
        self._max_tracked = max_tracked
        # address -> (wrong tries, when the last one was, earliest time of the next check);
        # ordered by the last wrong try, oldest first.
        self._records: OrderedDict[str, tuple[int, float, float]] = OrderedDict()

    def wait(self, address: str, now: float) -> float:
        """Seconds before a try from ``address`` may be checked (0: now)."""
        self._expire(now)
        record = self._records.get(address)
        return max(record[2] - now, 0.0) if record is not None else 0.0

    def failed(self, address: str, now: float) -> float:
        """Count a wrong try checked at ``now``; the pause it imposes on the address's next one."""
        self._expire(now)
        record = self._records.pop(address, None)
        failures = record[0] + 1 if record is not None else 1
        pause = min(self._first * 2.0 ** min(failures - 1, 64), self._longest)
        self._records[address] = (failures, now, now + pause)
        if len(self._records) > self._max_tracked:
            self._records.popitem(last=False)
        return pause

    def _expire(self, now: float) -> None:
        records = self._records
        while records:
            address, (_, last, _) = next(iter(records.items()))
            if now - last < self._forget:
                return
            del records[address]
