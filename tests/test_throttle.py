"""The per-address backoff for wrong secrets: pure, the time passed in."""

from hypothesis import given
from hypothesis import strategies as st

from gchat.throttle import FIRST, FORGET, LONGEST, Backoff

A = "192.0.2.1"
B = "192.0.2.2"


def test_an_address_with_no_wrong_try_never_waits():
    assert Backoff().wait(A, 0.0) == 0.0


def test_each_wrong_try_doubles_the_pause_up_to_the_longest():
    backoff = Backoff()
    pauses = [backoff.failed(A, 0.0) for _ in range(8)]
    assert pauses == [FIRST, 2 * FIRST, 4 * FIRST, 8 * FIRST, 16 * FIRST, LONGEST, LONGEST, LONGEST]


def test_the_pause_counts_from_the_last_wrong_try():
    backoff = Backoff()
    backoff.failed(A, 100.0)
    backoff.failed(A, 100.0)
    assert backoff.wait(A, 100.0) == 2 * FIRST
    assert backoff.wait(A, 100.0 + FIRST) == FIRST
    assert backoff.wait(A, 100.0 + 2 * FIRST) == 0.0


def test_addresses_are_counted_apart():
    backoff = Backoff()
    backoff.failed(A, 0.0)
    assert backoff.wait(B, 0.0) == 0.0


def test_an_address_quiet_for_the_forget_time_starts_afresh():
    backoff = Backoff()
    for _ in range(5):
        backoff.failed(A, 0.0)
    assert backoff.failed(A, FORGET) == FIRST


def test_past_the_tracked_limit_the_longest_quiet_address_is_forgotten():
    backoff = Backoff(max_tracked=2)
    backoff.failed(A, 0.0)
    backoff.failed(B, 0.1)
    backoff.failed("192.0.2.3", 0.2)
    assert backoff.wait(A, 0.2) == 0.0
    assert backoff.wait(B, 0.2) > 0.0


@given(st.lists(st.tuples(st.sampled_from([A, B]), st.floats(0, 10_000)), max_size=50))
def test_checks_from_one_address_are_never_closer_than_its_pauses(tries):
    """Whoever waits as told gets checked in single file: at most one try per pause per address."""
    backoff = Backoff()
    last: dict[str, tuple[float, float]] = {}
    now = 0.0
    for address, step in tries:
        now += step
        now += backoff.wait(address, now)
        assert backoff.wait(address, now) <= 1e-9
        if address in last:
            checked, pause = last[address]
            # (less a rounding error: now + (stamp - now) need not be stamp in floating point)
            assert now - checked >= pause - 1e-9 or now - checked >= FORGET
        last[address] = (now, backoff.failed(address, now))
