"""Watch reconnect delays for the informers: exponential, half fixed and half jittered.

Not `registry.lifecycle.Backoff` (full jitter): a refused watch fails in microseconds, so
near-zero draws let the failure count climb to the 30 s cap within a short refusal, and the
informer then stayed away for up to 30 s after the API server came back (seen as a flaky
`test_k8s_resilience.py`). A floor of half the ceiling keeps the count growing with time.

Jitter keeps the replicas of many clusters from reconnecting to a recovering API server or
registry in lockstep. The random source is passed in so tests can pin it.
"""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    def __init__(
        self,
        *,
        initial: float = 0.2,
        maximum: float = 30.0,
        factor: float = 2.0,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.rand = rand
        self.failures = 0

    def next(self) -> float:
        """The delay before the next attempt (after one more failure)."""
        ceiling = min(self.maximum, self.initial * self.factor ** min(self.failures, 64))
        self.failures += 1
        # Half fixed, half random: never zero, never a thundering herd.
        return ceiling / 2 + self.rand() * ceiling / 2

    def reset(self) -> None:
        self.failures = 0
