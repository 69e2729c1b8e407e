"""Balancer arithmetic: shares by weight, a slow endpoint avoided, ejection and probing.

A fake clock (plain floats) and a seeded random source: no sockets, no sleeping.
"""

from __future__ import annotations

import random

import pytest

from proxy._accrual import AccrualPolicy, State
from proxy._balance import Balancer
from proxy._peak_ewma import PeakEwma


def run(b: Balancer, n: int, latency: dict[str, float], *, start: float = 0.0) -> dict[str, int]:
    """Sequential requests, one per millisecond, each answered in latency[key] seconds."""
    counts = {ep.key: 0 for ep in b.endpoints}
    noise = random.Random(11)
    now = start
    for _ in range(n):
        now += 0.001
        ep = b.pick(now)
        assert ep is not None
        b.start(ep)
        counts[ep.key] += 1
        b.finish(ep, now, latency.get(ep.key, 0.001) * (1 + noise.random() * 0.05), ok=True)
    return counts


@pytest.mark.parametrize("strategy", ["p2c_ewma", "round_robin", "least_request"])
def test_equally_fast_endpoints_share_by_weight(strategy: str) -> None:
    b = Balancer(strategy, rng=random.Random(7))
    b.set_endpoints([("a", 1), ("b", 2), ("c", 3)], 0.0)
    counts = run(b, 6000, {})
    assert counts["a"] < counts["b"] < counts["c"]
    for key, weight in (("a", 1), ("b", 2), ("c", 3)):
        assert abs(counts[key] / 6000 - weight / 6) < 0.05, counts


def test_round_robin_is_exact() -> None:
    b = Balancer("round_robin", rng=random.Random(1))
    b.set_endpoints([("a", 1), ("b", 3)], 0.0)
    picks = [b.pick(0.0).key for _ in range(8)]  # type: ignore[union-attr]
    assert picks.count("a") == 2 and picks.count("b") == 6
    assert picks[:4].count("b") == 3  # smooth: not a,a then b,b,b,...


def test_p2c_ewma_starves_a_slow_endpoint_that_round_robin_feeds() -> None:
    slow = {"slow": 0.050}
    p2c = Balancer("p2c_ewma", rng=random.Random(3))
    p2c.set_endpoints([("a", 1), ("b", 1), ("slow", 1)], 0.0)
    rr = Balancer("round_robin", rng=random.Random(3))
    rr.set_endpoints([("a", 1), ("b", 1), ("slow", 1)], 0.0)
    p2c_counts = run(p2c, 3000, slow)
    rr_counts = run(rr, 3000, slow)
    assert rr_counts["slow"] == 1000
    assert p2c_counts["slow"] < 100


def test_pending_requests_count_against_an_endpoint() -> None:
    b = Balancer("least_request", rng=random.Random(5))
    b.set_endpoints([("a", 1), ("b", 1)], 0.0)
    busy = b.get("a")
    assert busy is not None
    for _ in range(5):
        b.start(busy)
    assert all(b.pick(1.0).key == "b" for _ in range(50))  # type: ignore[union-attr]


def test_consecutive_failures_eject_then_a_probe_brings_the_endpoint_back() -> None:
    policy = AccrualPolicy(max_failures=3, backoff_min=1.0, backoff_max=8.0, jitter=0.0)
    b = Balancer("round_robin", rng=random.Random(1), accrual=policy)
    b.set_endpoints([("a", 1), ("bad", 1)], 0.0)
    bad = b.get("bad")
    assert bad is not None
    for i in range(3):
        b.start(bad)
        ejected = b.finish(bad, 0.1, 0.001, ok=False)
        assert ejected is (i == 2)
    assert bad.accrual.state is State.EJECTED
    assert all(b.pick(0.5).key == "a" for _ in range(10))  # type: ignore[union-attr]
    # penalty over: exactly one probe goes to it while it is in flight
    assert bad.available(1.2)
    picks = [b.pick(1.2) for _ in range(4)]
    assert bad in picks
    b.start(bad)
    assert bad.accrual.state is State.PROBING and not bad.available(1.3)
    # the probe fails: ejected again for twice as long
    b.finish(bad, 1.3, 0.001, ok=False)
    assert bad.accrual.state is State.EJECTED and bad.accrual.until == pytest.approx(3.3)
    assert bad.available(3.4)
    b.start(bad)
    b.finish(bad, 3.4, 0.001, ok=True)
    assert bad.accrual.state is State.HEALTHY and bad.accrual.ejections == 0


def test_backoff_doubles_up_to_the_maximum_with_jitter() -> None:
    b = Balancer(accrual=AccrualPolicy(1, 1.0, 4.0, 0.5), rng=random.Random(2))
    b.set_endpoints([("a", 1)], 0.0)
    ep = b.get("a")
    assert ep is not None
    now, penalties = 0.0, []
    for _ in range(5):
        b.start(ep)
        b.finish(ep, now, 0.0, ok=False)
        penalties.append(ep.accrual.until - now)
        now = ep.accrual.until
        assert ep.available(now)
    assert 1.0 <= penalties[0] <= 1.5
    assert 2.0 <= penalties[1] <= 3.0
    assert all(p <= 4.0 + 1e-9 for p in penalties) and penalties[-1] == pytest.approx(4.0)


def test_no_available_endpoint_picks_none() -> None:
    b = Balancer(accrual=AccrualPolicy(1, 10.0, 10.0, 0.0))
    assert b.pick(0.0) is None
    b.set_endpoints([("a", 1)], 0.0)
    ep = b.get("a")
    assert ep is not None
    b.start(ep)
    b.finish(ep, 0.0, 0.0, ok=False)
    assert b.pick(1.0) is None
    assert b.counts(1.0) == {"available": 0, "ejected": 1}
    assert b.pick(1.0, exclude=[]) is None


def test_exclude_skips_endpoints_already_tried() -> None:
    b = Balancer(rng=random.Random(1))
    b.set_endpoints([("a", 1), ("b", 1)], 0.0)
    a = b.get("a")
    assert all(b.pick(0.0, exclude=[a]).key == "b" for _ in range(20))  # type: ignore[list-item, union-attr]


def test_endpoints_that_stay_keep_their_state_across_updates() -> None:
    b = Balancer(rng=random.Random(1))
    b.set_endpoints([("a", 1), ("b", 1)], 0.0)
    a = b.get("a")
    assert a is not None
    b.start(a)
    b.set_endpoints([("a", 5), ("c", 1)], 1.0)
    assert b.get("a") is a and a.pending == 1 and a.weight == 5
    assert b.get("b") is None and b.get("c") is not None


def test_transport_failures_raise_the_latency_estimate() -> None:
    b = Balancer(rng=random.Random(1))
    b.set_endpoints([("a", 1)], 0.0)
    ep = b.get("a")
    assert ep is not None
    b.start(ep)
    b.finish(ep, 0.0, 0.0001, ok=False, transport=True)
    assert ep.ewma.current(0.0) >= 1.0


def test_peak_ewma_jumps_up_and_decays_down() -> None:
    e = PeakEwma(0.0, rtt=0.010, decay=10.0)
    e.observe(0.050, 1.0)
    assert e.current(1.0) == pytest.approx(0.050)
    assert e.current(11.0) == pytest.approx(0.050 * 0.3679, rel=1e-3)  # e^-1 after one decay
    e.observe(0.001, 11.0)  # no time since the last reading: a faster sample moves nothing yet
    assert e.current(11.0) == pytest.approx(0.050 * 0.3679, rel=1e-3)
    e.observe(0.001, 21.0)
    assert 0.001 < e.current(21.0) < 0.050 * 0.3679


def test_unknown_strategy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown balancer"):
        Balancer("random")
