"""Retry delays: exponential with full jitter, capped, reset after success (pure, clock-free).

Full jitter (a delay drawn uniformly from zero up to the exponential ceiling) spreads the
retries of many agents, adapters and servers over the whole window, so a registry or etcd
coming back is not met by a thundering herd in lockstep. The class only does arithmetic: the
caller sleeps, and passes a random source in so tests can pin it.
"""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """`next()` after each failure gives the delay before the next attempt; `reset()` after
    a success starts again from `initial`.

    The n-th consecutive failure (counting from 0) waits `rand() * min(maximum, initial *
    factor**n)`, with `rand()` in [0, 1).
    """

    def __init__(
        self,
        *,
        initial: float = 0.2,
        maximum: float = 30.0,
        factor: float = 2.0,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if not 0 < initial <= maximum:
            raise ValueError(f"backoff needs 0 < initial <= maximum, not {initial} and {maximum}")
        if factor < 1:
            raise ValueError(f"backoff factor must be at least 1, not {factor}")
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.rand = rand
        self.failures = 0

    @property
    def ceiling(self) -> float:
        """The longest delay the next failure may draw."""
        # Capping the exponent keeps a long outage from overflowing the float.
        return min(self.maximum, self.initial * self.factor ** min(self.failures, 64))

    def next(self) -> float:
        """The delay before the next attempt, counting one more failure."""
        ceiling = self.ceiling
        self.failures += 1
        return min(ceiling, max(0.0, self.rand() * ceiling))

    def reset(self) -> None:
        """An attempt succeeded: the next failure waits at most `initial` again."""
        self.failures = 0
