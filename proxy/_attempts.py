"""The retry layer's bookkeeping for one request: which backend each attempt goes to, whether
an outcome may be tried again, and what that costs the retry budget. No I/O.

The exchange (`_http_exchange`) asks this object between attempts; the decisions themselves
are `_retry`'s (conditions, eligibility), `_retry_budget`'s (room left), `_timeout`'s
(deadlines) and `_split`'s (weights). Every retry and every retry the budget refused is
counted by route and reason.
"""

from __future__ import annotations

import os
import random
from typing import TYPE_CHECKING

import trio

from . import _retry
from ._retry_budget import RetryBudget
from ._route_table import RouteRule
from ._timeout import AttemptDeadline, attempt_deadline, request_deadline

if TYPE_CHECKING:
    from ._cluster import Cluster
    from ._metrics import Metrics

# The draws of splits, faults and mirrors. WEFT_PROXY_SEED makes them repeatable (tests, a
# reproduction); unset, they are seeded from the OS.
rng = random.Random(os.environ.get("WEFT_PROXY_SEED") or os.urandom(16))


class Attempts:
    __slots__ = (
        "budget",
        "clusters",
        "deadline",
        "eligible",
        "made",
        "metrics",
        "rule",
        "upstream",
    )

    def __init__(
        self,
        rule: RouteRule,
        upstream: str,
        clusters: dict[str, Cluster],
        budget: RetryBudget | None,
        metrics: Metrics,
        *,
        started: float,
        idempotent: bool,
        body_bytes: int | None,
    ) -> None:
        self.rule = rule
        self.upstream = upstream
        self.clusters = clusters
        self.budget = budget
        self.metrics = metrics
        self.made = 0
        self.deadline = request_deadline(rule.timeout, started)
        self.eligible = _retry.eligible(rule.retry, idempotent=idempotent, body_bytes=body_bytes)
        if budget is not None:
            budget.deposit(trio.current_time())

    def cluster(self) -> Cluster | None:
        """The backend for the next attempt (a weighted draw per attempt: a retry may land on
        another subset, as in Linkerd and Envoy)."""
        self.made += 1
        backends = self.rule.backends
        ref = backends.only if backends.only is not None else backends.pick(rng)
        return self.clusters.get(ref.cluster_key)

    def attempt_deadline(self, response: float) -> AttemptDeadline:
        return attempt_deadline(self.rule.timeout, self.deadline, trio.current_time(), response)

    def retry(self, *, status: int = 0, timed_out: bool = False, grpc_status: int = 0) -> bool:
        """May the request be tried again after this outcome? Takes from the budget if so."""
        policy = self.rule.retry
        if policy is None or not self.eligible or self.made > policy.attempts:
            return False
        reason = _retry.retry_reason(
            policy, status=status, timed_out=timed_out, grpc_status=grpc_status
        )
        if not reason or trio.current_time() >= self.deadline:
            return False
        key = (self.upstream, self.rule.name)
        if self.budget is not None and not self.budget.withdraw(trio.current_time()):
            self.metrics.add(self.metrics.budget_exhausted, key)
            return False
        self.metrics.add(self.metrics.retries, (*key, reason))
        return True
