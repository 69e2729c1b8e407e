"""A request's deadlines: the route's total timeout and each attempt's. Pure.

The total (`timeout`) covers every attempt, retries included, up to the response head: when
it passes the caller gets 504. A `per_try` timeout bounds one attempt; when it passes and
the retry policy allows (`timeout` is a retry condition then), the request is tried again
within what is left of the total. Absent values mean no limit (Istio's and Linkerd's
defaults: route timeouts are off unless set); the upstream's `response_ms` still bounds each
attempt, as it always has.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

TOTAL = "total"
PER_TRY = "per_try"
RESPONSE = "response"


@dataclass(frozen=True, slots=True)
class TimeoutPolicy:
    total: float | None = None  # seconds
    per_try: float | None = None

    @property
    def active(self) -> bool:
        return self.total is not None or self.per_try is not None


@dataclass(frozen=True, slots=True)
class AttemptDeadline:
    at: float  # when this attempt must have its response head
    kind: str  # which limit that is: TOTAL, PER_TRY or RESPONSE (the upstream's own)


def request_deadline(policy: TimeoutPolicy, started: float) -> float:
    return started + policy.total if policy.total is not None else math.inf


def attempt_deadline(
    policy: TimeoutPolicy, total_deadline: float, now: float, response: float
) -> AttemptDeadline:
    """The earliest of: the total deadline, now + per_try, now + the upstream's response limit.

    Ties go to TOTAL (its 504 ends the request), then PER_TRY (it may be retried).
    """
    best = AttemptDeadline(total_deadline, TOTAL)
    if policy.per_try is not None and now + policy.per_try < best.at:
        best = AttemptDeadline(now + policy.per_try, PER_TRY)
    if now + response < best.at:
        best = AttemptDeadline(now + response, RESPONSE)
    return best
