"""Request mirroring: which requests get a fire-and-forget copy, and what limits the copies. Pure.

A mirrored copy goes to another backend; its answer is read and dropped, and the caller
never waits for it: the copy starts only after the original was sent, runs in the
background, and is skipped (counted) when `MAX_IN_FLIGHT` copies are already running or the
request's body is not wholly in hand (bodies up to 64 KiB are). Each copy has its own short
timeout. Istio's default share is 100 %.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

MAX_IN_FLIGHT = 64
COPY_TIMEOUT = 5.0  # seconds a copy may take in all


@dataclass(frozen=True, slots=True)
class MirrorPolicy:
    upstream: str
    subset: str = ""
    percent: float = 100.0

    @property
    def cluster_key(self) -> str:
        return f"{self.upstream}/{self.subset}" if self.subset else self.upstream


def should_mirror(policy: MirrorPolicy | None, rng: random.Random, in_flight: int) -> str:
    """'' to send a copy, else why not: 'not_sampled' or 'overloaded'."""
    if policy is None or policy.percent <= 0:
        return "not_sampled"
    if policy.percent < 100 and rng.random() * 100 >= policy.percent:
        return "not_sampled"
    if in_flight >= MAX_IN_FLIGHT:
        return "overloaded"
    return ""
