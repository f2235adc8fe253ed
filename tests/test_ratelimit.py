"""TokenBucket: time is passed in, so nothing here sleeps."""

import pytest

from gchat.ratelimit import TokenBucket


def test_burst_is_taken_without_waiting():
    bucket = TokenBucket(rate=20, burst=40, now=0.0)
    assert [bucket.take(0.0) for _ in range(40)] == [0.0] * 40


def test_first_take_beyond_the_burst_waits_one_over_rate():
    bucket = TokenBucket(rate=20, burst=40, now=0.0)
    for _ in range(40):
        bucket.take(0.0)
    assert bucket.take(0.0) == pytest.approx(1 / 20)


def test_debt_accumulates_when_taking_faster_than_the_rate():
    bucket = TokenBucket(rate=10, burst=2, now=0.0)
    waits = [bucket.take(0.0) for _ in range(6)]
    assert waits == pytest.approx([0.0, 0.0, 0.1, 0.2, 0.3, 0.4])


def test_waits_grow_while_taking_faster_than_the_rate():
    bucket = TokenBucket(rate=10, burst=1, now=0.0)
    bucket.take(0.0)
    waits = [bucket.take(step * 0.05) for step in range(1, 6)]
    assert waits == sorted(waits)
    assert waits[-1] > waits[0]


def test_taking_at_exactly_the_rate_never_waits():
    bucket = TokenBucket(rate=10, burst=1, now=0.0)
    assert [bucket.take(step * 0.1) for step in range(20)] == pytest.approx([0.0] * 20)


def test_waiting_the_returned_time_then_taking_again_waits_one_token():
    bucket = TokenBucket(rate=10, burst=1, now=0.0)
    bucket.take(0.0)
    wait = bucket.take(0.0)
    assert wait == pytest.approx(0.1)
    assert bucket.take(wait) == pytest.approx(0.1)


def test_tokens_refill_over_time():
    bucket = TokenBucket(rate=10, burst=5, now=0.0)
    for _ in range(5):
        bucket.take(0.0)
    assert bucket.take(0.3) == 0.0
    assert bucket.take(0.3) == 0.0
    assert bucket.take(0.3) == 0.0
    assert bucket.take(0.3) == pytest.approx(0.1)


def test_refill_is_capped_at_the_burst():
    bucket = TokenBucket(rate=10, burst=5, now=0.0)
    for _ in range(5):
        bucket.take(0.0)
    waits = [bucket.take(1000.0) for _ in range(6)]
    assert waits[:5] == [0.0] * 5
    assert waits[5] == pytest.approx(0.1)


def test_a_full_bucket_does_not_grow_while_idle():
    bucket = TokenBucket(rate=10, burst=3, now=0.0)
    waits = [bucket.take(60.0) for _ in range(4)]
    assert waits == pytest.approx([0.0, 0.0, 0.0, 0.1])


def test_debt_is_paid_back_by_time():
    bucket = TokenBucket(rate=10, burst=1, now=0.0)
    for _ in range(4):
        bucket.take(0.0)
    # Three tokens of debt: after 0.3 s the bucket is empty again, not full.
    assert bucket.take(0.3 + 0.1) == pytest.approx(0.0, abs=1e-9)
    assert bucket.take(0.4) == pytest.approx(0.1)


def test_wait_scales_with_the_rate():
    slow = TokenBucket(rate=2, burst=1, now=0.0)
    slow.take(0.0)
    assert slow.take(0.0) == pytest.approx(0.5)


def test_available_tokens_refill_at_the_rate_up_to_the_burst():
    bucket = TokenBucket(rate=10, burst=4, now=0.0)
    for _ in range(6):
        bucket.take(0.0)
    assert bucket.available(0.0) == pytest.approx(-2)  # in debt
    assert bucket.available(0.5) == pytest.approx(3)
    assert bucket.available(60.0) == 4
