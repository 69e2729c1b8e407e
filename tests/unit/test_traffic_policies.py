"""Retry budgets, retry rules, timeouts, splits, faults and mirroring: the arithmetic, no I/O."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from proxy._fault import FaultPolicy, decide
from proxy._mirror import MAX_IN_FLIGHT, MirrorPolicy, should_mirror
from proxy._retry import MAX_REPLAY_BYTES, RetryPolicy, eligible, retry_reason
from proxy._retry_budget import BudgetPolicy, RetryBudget
from proxy._split import Split, Weighted
from proxy._timeout import PER_TRY, RESPONSE, TOTAL, TimeoutPolicy, attempt_deadline


def spend(budget: RetryBudget, now: float, wanted: int) -> int:
    got = 0
    for _ in range(wanted):
        if budget.withdraw(now):
            got += 1
    return got


@pytest.mark.parametrize(
    ("ratio", "min_per_second", "ttl", "requests"),
    [
        (0.2, 10, 10.0, 0),  # Linkerd's defaults, a quiet service: the reserve only (100)
        (0.2, 10, 10.0, 1000),  # 0.2 * 1000 + 100 = 300
        (0.2, 10, 10.0, 50),
        (0.5, 1, 5.0, 200),  # 100 + 5 = 105
        (0.1, 0, 10.0, 1000),  # no reserve: ratio only
        (0.0, 3, 2.0, 500),  # ratio 0: the reserve only, whatever the traffic
    ],
)
def test_budget_allows_exactly_linkerds_bound_within_one_ttl(
    ratio: float, min_per_second: float, ttl: float, requests: int
) -> None:
    policy = BudgetPolicy(ratio, min_per_second, ttl)
    budget = RetryBudget(policy, now=0.0)
    for i in range(requests):
        budget.deposit(now=i * (ttl / 2) / max(requests, 1))  # all within half a ttl
    got = spend(budget, ttl / 2, 100_000)
    assert got == math.floor(policy.bound(requests) + 1e-9)


def test_budget_deposits_expire_after_the_ttl_and_the_reserve_returns() -> None:
    budget = RetryBudget(BudgetPolicy(0.2, 10, 10.0), now=0.0)
    for _ in range(1000):
        budget.deposit(0.0)
    assert spend(budget, 0.5, 10_000) == 300
    assert spend(budget, 5.0, 10) == 0  # still inside the ttl: spent
    # 11 s later the deposits and the withdrawals have both expired: only the reserve again.
    assert spend(budget, 11.5, 10_000) == 100


def test_budget_over_a_sliding_window_never_exceeds_the_bound() -> None:
    """A steady failing service: 100 requests/s, each wanting 2 retries, for 60 s."""
    policy = BudgetPolicy()
    budget = RetryBudget(policy, now=0.0)
    retries_at: list[float] = []
    requests_at: list[float] = []
    for tick in range(6000):
        now = tick / 100
        budget.deposit(now)
        requests_at.append(now)
        for _ in range(2):
            if budget.withdraw(now):
                retries_at.append(now)
    for start in range(0, 50):
        window = [t for t in retries_at if start <= t < start + policy.ttl]
        requests = sum(1 for t in requests_at if start <= t < start + policy.ttl)
        assert len(window) <= policy.bound(requests)
    # and it does allow retries steadily, not just the reserve once
    assert 0.2 * 6000 <= len(retries_at) <= 0.2 * 6000 + 100 * 7


@pytest.mark.parametrize(
    ("policy", "idempotent", "body", "expected"),
    [
        (RetryPolicy(), True, 0, True),
        (RetryPolicy(), False, 0, False),  # POST: never, unless the route says so
        (RetryPolicy(non_idempotent=True), False, 10, True),
        (RetryPolicy(), True, MAX_REPLAY_BYTES, True),
        (RetryPolicy(), True, MAX_REPLAY_BYTES + 1, False),  # too big to hold for a replay
        (RetryPolicy(), True, None, False),  # streamed, not held whole
        (RetryPolicy(attempts=0), True, 0, False),
        (None, True, 0, False),
    ],
)
def test_retry_eligibility(
    policy: RetryPolicy | None, idempotent: bool, body: int | None, expected: bool
) -> None:
    assert eligible(policy, idempotent=idempotent, body_bytes=body) is expected


@pytest.mark.parametrize(
    ("on", "codes", "status", "timed_out", "reason"),
    [
        ({"gateway-error"}, set(), 503, False, "503"),
        ({"gateway-error"}, set(), 500, False, ""),
        ({"5xx"}, set(), 500, False, "500"),
        ({"5xx"}, set(), 404, False, ""),
        (set(), {409}, 409, False, "409"),
        ({"timeout"}, set(), 0, True, "timeout"),
        ({"5xx"}, set(), 0, True, ""),
        ({"reset"}, set(), 0, False, "reset"),
    ],
)
def test_retry_conditions(
    on: set[str], codes: set[int], status: int, timed_out: bool, reason: str
) -> None:
    policy = RetryPolicy(on=frozenset(on), codes=frozenset(codes))
    assert retry_reason(policy, status=status, timed_out=timed_out) == reason


@pytest.mark.parametrize(
    ("on", "grpc_status", "reason"),
    [
        ({"unavailable"}, 14, "unavailable"),
        ({"resource-exhausted", "internal"}, 13, "internal"),
        ({"cancelled"}, 4, ""),  # DEADLINE_EXCEEDED is another condition
        ({"5xx", "gateway-error"}, 14, ""),  # HTTP conditions never take a gRPC status
        ({"deadline-exceeded"}, 4, "deadline-exceeded"),
        ({"unavailable"}, 99, ""),
    ],
)
def test_grpc_retry_conditions_match_the_calls_grpc_status(
    on: set[str], grpc_status: int, reason: str
) -> None:
    policy = RetryPolicy(on=frozenset(on))
    assert retry_reason(policy, grpc_status=grpc_status) == reason


@pytest.mark.parametrize(
    ("total", "per_try", "response", "now", "at", "kind"),
    [
        (None, None, 30.0, 0.0, 30.0, RESPONSE),  # no route timeout: the upstream's limit
        (0.3, None, 30.0, 0.0, 0.3, TOTAL),
        (1.0, 0.2, 30.0, 0.0, 0.2, PER_TRY),  # the first try ends at its own limit
        (1.0, 0.2, 30.0, 0.9, 1.0, TOTAL),  # a late try gets only what is left of the total
        (1.0, 0.5, 30.0, 0.5, 1.0, TOTAL),  # a tie ends the request: 504, no retry
        (None, 0.2, 30.0, 5.0, 5.2, PER_TRY),
        (10.0, 5.0, 1.0, 0.0, 1.0, RESPONSE),
    ],
)
def test_per_try_and_total_deadlines(
    total: float | None, per_try: float | None, response: float, now: float, at: float, kind: str
) -> None:
    policy = TimeoutPolicy(total, per_try)
    total_deadline = (0.0 + total) if total is not None else math.inf
    deadline = attempt_deadline(policy, total_deadline, now, response)
    assert deadline.kind == kind
    assert deadline.at == pytest.approx(at)


@pytest.mark.parametrize("weights", [(90, 10), (50, 50), (1, 1, 2), (999, 1), (1, 0, 3)])
def test_split_shares_within_two_percent_over_ten_thousand_draws(weights: tuple[int, ...]) -> None:
    split = Split([Weighted(f"b{i}", w) for i, w in enumerate(weights)])
    rng = random.Random(1234)
    counts = Counter(split.pick(rng) for _ in range(10_000))
    total = sum(weights)
    for i, w in enumerate(weights):
        assert abs(counts[f"b{i}"] / 10_000 - w / total) <= 0.02, counts


def test_split_refuses_weights_summing_to_zero() -> None:
    with pytest.raises(ValueError, match="weight above 0"):
        Split([Weighted("a", 0), Weighted("b", 0)])


def test_fault_abort_and_delay_shares() -> None:
    rng = random.Random(7)
    policy = FaultPolicy(delay=0.1, delay_percent=25, abort_status=503, abort_percent=10)
    decisions = [decide(policy, rng) for _ in range(10_000)]
    aborts = sum(1 for d in decisions if d.abort == 503)
    delays = sum(1 for d in decisions if d.delay == 0.1)
    assert abs(aborts / 10_000 - 0.10) <= 0.01
    assert abs(delays / 10_000 - 0.25) <= 0.015


def test_a_fault_without_a_percentage_injects_nothing() -> None:
    policy = FaultPolicy(delay=1.0, abort_status=503)
    assert not policy.active
    assert decide(policy, random.Random(1)).abort == 0


def test_mirror_samples_and_sheds_when_too_many_copies_run() -> None:
    rng = random.Random(3)
    policy = MirrorPolicy("shadow", percent=30)
    sent = sum(1 for _ in range(10_000) if should_mirror(policy, rng, 0) == "")
    assert abs(sent / 10_000 - 0.30) <= 0.02
    assert should_mirror(MirrorPolicy("shadow"), rng, MAX_IN_FLIGHT) == "overloaded"
    assert should_mirror(None, rng, 0) == "not_sampled"
