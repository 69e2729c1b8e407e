"""Passive failure accrual of one endpoint: the ejection state machine. Pure.

Linkerd's "consecutive failures" policy: after `max_failures` failures in a row the endpoint
is ejected for a penalty (starting at `backoff_min`, doubling per ejection up to `backoff_max`,
plus up to `jitter` of itself at random); when the penalty is over it gets one probe request at
a time, and a probe that succeeds makes it healthy again while one that fails ejects it anew.

    state      event        next       effect
    HEALTHY    success      HEALTHY    failures = 0
    HEALTHY    failure      HEALTHY    failures += 1 (EJECTED once it reaches max_failures)
    EJECTED    (time)       PROBE      once `until` has passed, via `available()`
    PROBE      dispatch     PROBING    the one probe is on its way
    PROBING    success      HEALTHY    failures = 0, ejections = 0
    PROBING    failure      EJECTED    penalty doubles
    PROBE      success      HEALTHY    (an answer to a request sent before the ejection)
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass


class State(enum.Enum):
    HEALTHY = "healthy"
    EJECTED = "ejected"
    PROBE = "probe"  # penalty over: the next request is a probe
    PROBING = "probing"  # the probe is in flight; nothing else is sent


@dataclass(frozen=True, slots=True)
class AccrualPolicy:
    max_failures: int = 7
    backoff_min: float = 1.0
    backoff_max: float = 60.0
    jitter: float = 0.5


class FailureAccrual:
    __slots__ = ("_policy", "_random", "ejections", "failures", "state", "until")

    def __init__(self, policy: AccrualPolicy, random: Callable[[], float]) -> None:
        self._policy = policy
        self._random = random
        self.state = State.HEALTHY
        self.failures = 0  # consecutive
        self.ejections = 0  # consecutive ejections, for the backoff
        self.until = 0.0

    def available(self, now: float) -> bool:
        """Whether a request may be sent to the endpoint now."""
        state = self.state
        if state is State.HEALTHY or state is State.PROBE:
            return True
        if state is State.EJECTED and now >= self.until:
            self.state = State.PROBE
            return True
        return False

    def on_dispatch(self) -> None:
        if self.state is State.PROBE:
            self.state = State.PROBING

    def on_success(self) -> None:
        self.failures = 0
        if self.state is not State.EJECTED:
            self.state = State.HEALTHY
            self.ejections = 0

    def on_failure(self, now: float) -> bool:
        """Record a failure; True if it ejected the endpoint."""
        if self.state is State.PROBING or self.state is State.PROBE:
            self._eject(now)
            return True
        if self.state is State.EJECTED:
            return False  # a late answer to a request sent before the ejection
        self.failures += 1
        if self.failures >= self._policy.max_failures:
            self._eject(now)
            return True
        return False

    def penalty(self) -> float:
        policy = self._policy
        base = min(policy.backoff_min * (1 << min(self.ejections, 32)), policy.backoff_max)
        jitter: float = base * policy.jitter * self._random()
        return min(base + jitter, policy.backoff_max)

    def _eject(self, now: float) -> None:
        self.until = now + self.penalty()
        self.ejections += 1
        self.failures = 0
        self.state = State.EJECTED
