"""pipeline.retry: exponential backoff with bounded jitter, then the dead-letter queue."""

from __future__ import annotations

import random

import pytest

from pipeline.retry import RetryPolicy


class FixedRng:
    """A `random.Random` stand-in whose `uniform` always returns one end of the range."""

    def __init__(self, end: str) -> None:
        self.end = end
        self.ranges: list[tuple[float, float]] = []

    def uniform(self, low: float, high: float) -> float:
        self.ranges.append((low, high))
        return low if self.end == "low" else high


def test_runbook_delays_without_jitter() -> None:
    policy = RetryPolicy(jitter_fraction=0)
    assert [policy.delay_s(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]


def test_delay_is_capped() -> None:
    policy = RetryPolicy(jitter_fraction=0, base_delay_s=1.0, max_delay_s=60.0)
    assert policy.delay_s(6) == 32.0
    assert policy.delay_s(7) == 60.0
    assert policy.delay_s(30) == 60.0


def test_jitter_spreads_by_the_fraction_at_most() -> None:
    policy = RetryPolicy()  # 10 % jitter
    low, high = FixedRng("low"), FixedRng("high")
    assert policy.delay_s(3, rng=low) == pytest.approx(3.6)  # type: ignore[arg-type]
    assert policy.delay_s(3, rng=high) == pytest.approx(4.4)  # type: ignore[arg-type]
    assert low.ranges == [pytest.approx((-0.4, 0.4))]


def test_jitter_stays_within_bounds_for_many_draws() -> None:
    policy = RetryPolicy(jitter_fraction=0.25)
    rng = random.Random(1234)
    delays = [policy.delay_s(2, rng=rng) for _ in range(500)]
    assert all(1.5 <= delay <= 2.5 for delay in delays)
    assert max(delays) - min(delays) > 0.5  # it really spreads


def test_delay_is_never_negative() -> None:
    policy = RetryPolicy(jitter_fraction=2.0)
    assert policy.delay_s(1, rng=FixedRng("low")) == 0.0  # type: ignore[arg-type]


def test_retry_numbers_start_at_one() -> None:
    with pytest.raises(ValueError, match="starts at 1"):
        RetryPolicy().delay_s(0)


def test_exhausted_after_max_retries() -> None:
    policy = RetryPolicy(max_retries=4)
    assert [policy.exhausted(done) for done in range(6)] == [False, False, False, False, True, True]
    assert RetryPolicy(max_retries=0).exhausted(0) is True
