"""Token-bucket rate limiting for the signing endpoint, with the clock passed in.

The server keeps one RateLimiter (Consul's default is 50 CSRs/s) and calls `acquire(key)` per
request with a key naming the caller ("node:web-1", "global", ...); RateLimited carries the
seconds to wait, for a 429 with Retry-After.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from ._errors import RateLimited


class TokenBucket:
    """`rate` tokens a second, holding at most `burst`; starts full."""

    __slots__ = ("_stamp", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"a token bucket needs rate > 0 and burst >= 1, got {rate}, {burst}")
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._stamp = now

    def take(self, now: float, cost: float = 1.0) -> float:
        """Take `cost` tokens and return 0.0, or take nothing and return the seconds to wait."""
        if now > self._stamp:
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
        if self._tokens >= cost:
            self._tokens -= cost
            return 0.0
        return (cost - self._tokens) / self.rate


class RateLimiter:
    """Per-key token buckets; at most `max_keys` are remembered (least recently used go)."""

    def __init__(
        self,
        rate: float,
        burst: float,
        *,
        clock: Callable[[], float],
        what: str = "certificate signing",
        max_keys: int = 10_000,
    ) -> None:
        TokenBucket(rate, burst, 0.0)  # validates the parameters now, not on first use
        self.rate = rate
        self.burst = burst
        self.what = what
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def acquire(self, key: str = "") -> None:
        """Take one token for `key`, or raise RateLimited saying when to retry."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, now)
            if len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        wait = bucket.take(now)
        if wait:
            scope = f" for {key}" if key else ""
            raise RateLimited(
                f"{self.what} is limited to {self.rate:g} per second (bursts of "
                f"{self.burst:g}){scope}; retry in {wait:.2f} s",
                retry_after=wait,
            )
