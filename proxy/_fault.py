"""Fault injection: delay or abort a share of a route's requests. Pure; randomness passed in.

As in Istio, a fault with no percentage injects nothing, the delay comes first, and an
aborted request never reaches an upstream (so it is never retried). Percentages may have
fractions (0.1 means one request in a thousand).
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FaultPolicy:
    delay: float = 0.0  # seconds
    delay_percent: float = 0.0
    abort_status: int = 0
    abort_percent: float = 0.0
    abort_grpc: int = 0  # the gRPC code a gRPC caller gets (0: the HTTP status's own)

    @property
    def active(self) -> bool:
        return (self.delay > 0 and self.delay_percent > 0) or (
            self.abort_status > 0 and self.abort_percent > 0
        )


@dataclass(frozen=True, slots=True)
class FaultDecision:
    delay: float  # seconds to wait first (0: none)
    abort: int  # status to answer instead of forwarding (0: forward)
    grpc: int = 0  # the gRPC code for a gRPC caller (0: the one the status maps to)


NONE = FaultDecision(0.0, 0)


def _hit(percent: float, rng: random.Random) -> bool:
    return percent >= 100 or (percent > 0 and rng.random() * 100 < percent)


def decide(policy: FaultPolicy, rng: random.Random) -> FaultDecision:
    delay = policy.delay if policy.delay > 0 and _hit(policy.delay_percent, rng) else 0.0
    abort = policy.abort_status if policy.abort_status and _hit(policy.abort_percent, rng) else 0
    if not delay and not abort:
        return NONE
    return FaultDecision(delay, abort, policy.abort_grpc if abort else 0)
