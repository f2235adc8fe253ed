"""Checking ``/oper`` passwords without letting guessers take the server's cores.

Each check is a deliberately slow hash (scrypt: some 50 ms and 16 MiB), run
in gevent's thread pool so the event loop keeps serving the chat. Only
``HASHES_AT_ONCE`` run at a time, so at most that many cores ever hash,
whatever the number of guessers: the others wait their turn, first come
first served. Before its turn, a try waits for its address's pause (see
``gchat.throttle``): each wrong try from an address doubles the pause for
the next one, on any of its connections (an address counts by its source: an
IPv6 client's /64, see ``gchat.addresses.sources``). Every failure is logged
with the address and the name tried, never the password.
"""

import logging
import time
from typing import Callable, Optional

import gevent
from gevent.lock import BoundedSemaphore

from gchat.addresses import sources
from gchat.passwords import verify
from gchat.throttle import Backoff

HASHES_AT_ONCE = 1

log = logging.getLogger("gchat")


class OperatorCheck:
    """The hub's ``operators`` callable: (name, password, address) -> whether they match."""

    __slots__ = ("_backoff", "_decoy", "_hashing", "_operators", "_source")

    def __init__(self, operators: "dict[str, str]", source: Optional[Callable[[str], str]] = None) -> None:
        self._operators = operators
        # An unknown name costs a hash too, so timing does not tell names apart.
        self._decoy = next(iter(operators.values()))
        self._backoff = Backoff()
        self._source = source if source is not None else sources()
        self._hashing = BoundedSemaphore(HASHES_AT_ONCE)

    def __call__(self, name: str, password: str, address: str) -> bool:
        encoded = self._operators.get(name)
        backoff = self._backoff
        source = self._source(address)
        while True:
            pause = backoff.wait(source, time.monotonic())
            if pause > 0:
                gevent.sleep(pause)
                continue
            with self._hashing:
                # Another try from this address may have failed while this one queued.
                if backoff.wait(source, time.monotonic()) > 0:
                    continue
                valid: bool = gevent.get_hub().threadpool.apply(verify, (password, encoded or self._decoy))
                if valid and encoded is not None:
                    return True
                # Counted before the next in line may start: tries from one address stay in single file.
                pause = backoff.failed(source, time.monotonic())
            log.warning("%s wrong /oper for %r; next try from it checked in %.1f s", address, name, pause)
            return False
