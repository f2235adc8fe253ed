"""Budget: refusing token buckets per key, time passed in, so nothing here sleeps."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gchat.budget import Budget, budget


def spend(budget: Budget, key: object, now: float, times: int) -> "list[bool]":
    return [budget.allow(key, now) for _ in range(times)]


def test_the_burst_is_allowed_at_once_and_the_next_is_refused():
    assert spend(Budget(rate=1, burst=3), "a", 0.0, 4) == [True, True, True, False]


def test_a_refusal_costs_nothing():
    budget = Budget(rate=2, burst=1)
    budget.allow("a", 0.0)
    assert spend(budget, "a", 0.0, 5) == [False] * 5
    assert budget.allow("a", 0.5)


def test_tokens_come_back_at_the_rate():
    budget = Budget(rate=4, burst=2)
    spend(budget, "a", 0.0, 2)
    assert not budget.allow("a", 0.125)
    assert budget.allow("a", 0.25)
    assert not budget.allow("a", 0.25)


def test_refill_is_capped_at_the_burst():
    budget = Budget(rate=10, burst=3)
    spend(budget, "a", 0.0, 3)
    assert spend(budget, "a", 1000.0, 4) == [True, True, True, False]


def test_an_action_may_cost_many_tokens():
    budget = Budget(rate=10, burst=100)
    assert budget.allow("a", 0.0, cost=60)
    assert not budget.allow("a", 0.0, cost=60)
    assert budget.allow("a", 0.0, cost=40)
    assert budget.allow("a", 6.0, cost=60)


def test_a_cost_above_the_burst_takes_a_full_bucket():
    budget = Budget(rate=10, burst=100)
    assert budget.allow("a", 0.0, cost=500)
    assert not budget.allow("a", 9.0, cost=500)
    assert budget.allow("a", 10.0, cost=500)


def test_keys_have_budgets_of_their_own():
    budget = Budget(rate=1, burst=1)
    assert budget.allow(("10.0.0.1", "bob"), 0.0)
    assert not budget.allow(("10.0.0.1", "bob"), 0.0)
    assert budget.allow(("10.0.0.1", "eve"), 0.0)
    assert budget.allow(("10.0.0.2", "bob"), 0.0)


def test_a_bucket_is_forgotten_once_it_would_be_full_again():
    budget = Budget(rate=1, burst=2)
    budget.allow("a", 0.0)
    budget.allow("b", 1.0)
    assert len(budget) == 2
    budget.allow("c", 2.0)  # a is full again (2 s after its use): forgotten
    assert len(budget) == 2
    budget.allow("c", 10.0)
    assert len(budget) == 1


def test_a_rate_of_zero_means_no_budget_at_all():
    assert budget(0.0, 5) is None
    assert isinstance(budget(0.5, 5), Budget)


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (-1.0, 1), (1.0, 0)])
def test_a_budget_that_could_never_allow_anything_is_an_error(rate, burst):
    with pytest.raises(ValueError, match="a budget needs a rate above 0"):
        Budget(rate, burst)


# Rates, bursts and times with exact binary fractions, so the model below computes
# the very same floats and a difference can only be a difference in behaviour.
rates = st.sampled_from([0.25, 0.5, 1.0, 2.0, 8.0])
bursts = st.integers(1, 6)
steps = st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 16).map(lambda n: n / 8)), max_size=80)
costly_steps = st.lists(
    st.tuples(st.sampled_from("abc"), st.integers(0, 16).map(lambda n: n / 8), st.integers(0, 8)), max_size=80
)


class NeverForgets:
    """The plain definition: one bucket per key, kept for ever."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, float(burst)
        self.buckets: dict[object, tuple[float, float]] = {}

    def allow(self, key: object, now: float, cost: int) -> bool:
        tokens, stamp = self.buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - stamp) * self.rate)
        cost = min(cost, self.burst)
        allowed = tokens >= cost
        self.buckets[key] = (tokens - cost * allowed, now)
        return allowed


@given(rates, bursts, costly_steps)
def test_forgetting_changes_no_answer(rate, burst, steps):
    budget, model = Budget(rate, burst), NeverForgets(rate, burst)
    now = 0.0
    for key, step, cost in steps:
        now += step
        assert budget.allow(key, now, cost) == model.allow(key, now, cost)


@given(rates, st.integers(1, 6), costly_steps)
def test_no_key_ever_spends_more_than_the_burst_plus_the_rate_over_any_time(rate, burst, steps):
    budget = Budget(rate, burst * 8)  # every cost fits in the burst: none is capped
    now, spent = 0.0, []
    for key, step, cost in steps:
        now += step
        if budget.allow(key, now, cost):
            spent.append((key, now, cost))
    for key, start, _ in spent:
        for _, end, _ in spent:
            if end >= start:
                total = sum(c for k, t, c in spent if k == key and start <= t <= end)
                assert total <= burst * 8 + (end - start) * rate


@given(rates, bursts, steps)
def test_no_key_ever_gets_more_than_the_burst_plus_the_rate_over_any_time(rate, burst, steps):
    budget = Budget(rate, burst)
    now, allowed = 0.0, []
    for key, step in steps:
        now += step
        if budget.allow(key, now):
            allowed.append((key, now))
    for key, start in allowed:
        for _, end in allowed:
            if end < start:
                continue
            within = [t for k, t in allowed if k == key and start <= t <= end]
            assert len(within) <= burst + (end - start) * rate


@given(rates, bursts, st.integers(1, 50))
def test_actions_one_token_apart_are_always_allowed(rate, burst, count):
    budget = Budget(rate, burst)
    assert all(budget.allow("a", n / rate) for n in range(count))


@given(rates, bursts, steps)
def test_memory_holds_only_the_keys_used_in_the_last_burst_over_rate_seconds(rate, burst, steps):
    budget = Budget(rate, burst)
    now, last_used = 0.0, {}
    for key, step in steps:
        now += step
        budget.allow(key, now)
        last_used[key] = now
        assert len(budget) == sum(1 for stamp in last_used.values() if now - stamp < burst / rate)
