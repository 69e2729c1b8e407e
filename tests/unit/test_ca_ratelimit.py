"""Token-bucket rate limiting with a fake clock."""

from __future__ import annotations

import pytest

from ca import RateLimited, RateLimiter, TokenBucket
from tests.harness import FakeClock


def test_a_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=10, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.1)
    assert bucket.take(0.1) == 0.0
    assert bucket.take(0.1) == pytest.approx(0.1)


def test_a_bucket_never_holds_more_than_its_burst() -> None:
    bucket = TokenBucket(rate=100, burst=2, now=0.0)
    assert bucket.take(1000.0) == 0.0
    assert bucket.take(1000.0) == 0.0
    assert bucket.take(1000.0) > 0


def test_the_limiter_answers_with_a_clear_message_and_retry_after() -> None:
    clock = FakeClock()
    limiter = RateLimiter(50, 2, clock=clock.monotonic)
    limiter.acquire("node:a")
    limiter.acquire("node:a")
    with pytest.raises(RateLimited) as caught:
        limiter.acquire("node:a")
    assert caught.value.retry_after == pytest.approx(0.02)
    assert str(caught.value) == (
        "certificate signing is limited to 50 per second (bursts of 2) for node:a; retry in 0.02 s"
    )
    limiter.acquire("node:b")  # other keys have their own bucket
    clock.advance(seconds=0.02)
    limiter.acquire("node:a")


def test_the_limiter_forgets_the_least_recently_used_keys() -> None:
    clock = FakeClock()
    limiter = RateLimiter(1, 1, clock=clock.monotonic, max_keys=2)
    limiter.acquire("a")
    limiter.acquire("b")
    limiter.acquire("c")  # "a" is forgotten: it comes back with a full bucket
    limiter.acquire("a")
    with pytest.raises(RateLimited):
        limiter.acquire("c")


def test_nonsense_parameters_are_refused_up_front() -> None:
    with pytest.raises(ValueError, match="rate > 0"):
        RateLimiter(0, 1, clock=FakeClock().monotonic)
