"""Peak-EWMA latency estimate of one endpoint (Finagle's and Linkerd's balancer load). Pure.

A response slower than the estimate raises it at once (the "peak"); faster ones pull it down
with a weight that decays with the time since the last observation, and between observations
the estimate decays toward zero, so an endpoint that has not been tried for a while becomes
worth trying again. Time is passed in (seconds, any monotonic origin).
"""

from __future__ import annotations

import math

DEFAULT_RTT = 0.030  # Linkerd's default before any observation
DEFAULT_DECAY = 10.0  # seconds


class PeakEwma:
    __slots__ = ("_decay", "_stamp", "estimate")

    def __init__(
        self, now: float, *, rtt: float = DEFAULT_RTT, decay: float = DEFAULT_DECAY
    ) -> None:
        self.estimate = rtt
        self._stamp = now
        self._decay = decay

    def _decayed(self, now: float) -> float:
        elapsed = now - self._stamp
        if elapsed <= 0.0:
            return self.estimate
        return self.estimate * math.exp(-elapsed / self._decay)

    def current(self, now: float) -> float:
        """The estimate at `now`, decayed toward zero since the last observation."""
        estimate = self._decayed(now)
        self.estimate = estimate
        if now > self._stamp:
            self._stamp = now
        return estimate

    def observe(self, rtt: float, now: float) -> None:
        """Record one round-trip time measured at `now`."""
        if rtt > self.estimate:
            self.estimate = rtt
        else:
            elapsed = now - self._stamp
            w = math.exp(-elapsed / self._decay) if elapsed > 0.0 else 1.0
            self.estimate = self.estimate * w + rtt * (1.0 - w)
        if now > self._stamp:
            self._stamp = now
