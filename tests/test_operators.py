"""``/oper`` checks (issue 10, item 6): one hash at a time, single file per address, logged.

In process, on gevent's real thread pool; where the hash itself is replaced, it is by one
that takes as long and records how many run at once.
"""

import logging
import threading
import time

import gevent
import pytest

from gchat import operators
from gchat.operators import HASHES_AT_ONCE, OperatorCheck
from gchat.passwords import hash_password
from gchat.throttle import FIRST

# A cheap scrypt cost: these tests check the gate around the hash, not its strength.
ENCODED = hash_password("secret", n=2**4)


def test_the_right_name_and_password_pass():
    assert OperatorCheck({"boss": ENCODED})("boss", "secret", "192.0.2.1")


@pytest.mark.parametrize(("name", "password"), [("boss", "hunter2"), ("nobody", "secret")])
def test_a_wrong_name_or_password_fails_and_is_logged_with_address_and_name(caplog, name, password):
    with caplog.at_level(logging.WARNING, logger="gchat"):
        assert not OperatorCheck({"boss": ENCODED})(name, password, "192.0.2.1")
    assert [record.getMessage() for record in caplog.records] == [
        f"192.0.2.1 wrong /oper for {name!r}; next try from it checked in {FIRST:.1f} s"
    ]
    assert password not in caplog.text


def test_no_more_than_the_fixed_number_of_hashes_run_at_once(monkeypatch):
    running = []
    peak = []
    lock = threading.Lock()

    def slow_verify(password: str, encoded: str) -> bool:
        with lock:
            running.append(1)
            peak.append(len(running))
        time.sleep(0.02)
        with lock:
            running.pop()
        return False

    monkeypatch.setattr(operators, "verify", slow_verify)
    check = OperatorCheck({"boss": ENCODED})
    tries = [gevent.spawn(check, "boss", "wrong", f"192.0.2.{n}") for n in range(1, 21)]
    gevent.joinall(tries, timeout=30, raise_error=True)
    assert [one.value for one in tries] == [False] * 20
    assert max(peak) == HASHES_AT_ONCE


def test_concurrent_tries_from_one_address_are_checked_in_single_file():
    check = OperatorCheck({"boss": ENCODED})
    started = time.monotonic()
    tries = [gevent.spawn(check, "boss", "wrong", "192.0.2.1") for _ in range(3)]
    gevent.joinall(tries, timeout=30, raise_error=True)
    # Pauses of FIRST and 2 * FIRST between the three hashes: a lower bound, safe under load.
    assert time.monotonic() - started >= 3 * FIRST


def test_tries_from_the_addresses_of_one_ipv6_64_are_checked_in_single_file():
    """An IPv6 host may take any address of its /64: they are one address to the pause."""
    check = OperatorCheck({"boss": ENCODED})
    started = time.monotonic()
    tries = [gevent.spawn(check, "boss", "wrong", f"2001:db8::{n}") for n in range(1, 4)]
    gevent.joinall(tries, timeout=30, raise_error=True)
    assert time.monotonic() - started >= 3 * FIRST
