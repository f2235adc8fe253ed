"""The log's throttle: a pure function of the times it is asked at."""

from hypothesis import given
from hypothesis import strategies as st

from gchat.logs import Throttle


def test_throttle_lets_one_record_out_per_interval_and_counts_the_rest():
    throttle = Throttle(1.0)
    assert [throttle.admit(now) for now in (10.0, 10.1, 10.5, 10.99, 11.0, 11.2, 15.0)] == [
        0,
        None,
        None,
        None,
        3,
        None,
        1,
    ]


@given(st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), max_size=50), st.floats(0.01, 10))
def test_throttle_lets_records_out_an_interval_apart_and_counts_every_one_held_back(times, interval):
    throttle = Throttle(interval)
    last = None
    held_back = 0
    for now in sorted(times):
        held = throttle.admit(now)
        if last is None or now - last >= interval:
            assert held == held_back
            last, held_back = now, 0
        else:
            assert held is None
            held_back += 1
