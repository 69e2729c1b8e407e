"""A certificate's life as the agent sees it: when to renew, and what happens when it fails."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ca import CertificateLifecycle, CertPhase, renewal_time
from ca._lifecycle import TRANSITIONS, CertEvent

T0 = datetime(2030, 1, 1, tzinfo=UTC)
DAY = timedelta(hours=24)


@given(st.floats(min_value=0.0, max_value=1.0, exclude_max=True), st.integers(60, 30 * 86400))
def test_renewal_falls_between_sixty_and_ninety_percent_of_the_life(u: float, seconds: int) -> None:
    life = timedelta(seconds=seconds)
    at = renewal_time(T0, T0 + life, lambda: u)
    assert T0 + life * 0.6 <= at <= T0 + life * 0.9


def test_renewal_times_spread_out_across_a_fleet() -> None:
    rng = random.Random(7)
    times = {renewal_time(T0, T0 + DAY, rng.random) for _ in range(100)}
    assert len(times) == 100
    assert min(times) < T0 + DAY * 0.65 and max(times) > T0 + DAY * 0.85


def test_fresh_then_renewing_then_expired() -> None:
    life = CertificateLifecycle(lambda: 0.5)
    assert life.phase is CertPhase.ABSENT and life.should_renew(T0)
    renew_at = life.installed(T0, T0 + DAY)
    assert renew_at == T0 + DAY * 0.75
    assert life.advance(renew_at - timedelta(seconds=1)) is CertPhase.FRESH
    assert not life.should_renew(renew_at - timedelta(seconds=1))
    assert life.next_wakeup(T0) == renew_at
    assert life.should_renew(renew_at) and life.phase is CertPhase.RENEWING
    assert life.advance(T0 + DAY) is CertPhase.EXPIRED
    life.installed(T0 + DAY, T0 + 2 * DAY)
    assert life.phase is CertPhase.FRESH and life.failures == 0


def test_a_host_that_slept_through_the_window_goes_straight_to_expired() -> None:
    life = CertificateLifecycle(lambda: 0.0)
    life.installed(T0, T0 + DAY)
    assert life.advance(T0 + 2 * DAY) is CertPhase.EXPIRED


def test_failed_renewals_back_off_but_never_past_the_expiry() -> None:
    life = CertificateLifecycle(
        lambda: 0.999, retry_first=timedelta(seconds=1), retry_max=timedelta(minutes=5)
    )
    life.installed(T0, T0 + DAY)
    now = T0 + DAY * 0.9
    waits = []
    for _ in range(12):
        assert life.should_renew(now)
        retry = life.renewal_failed(now)
        waits.append(retry - now)
        assert not life.should_renew(now)
        now = retry
    assert waits[0] < waits[1] < waits[2]
    assert max(waits) <= timedelta(minutes=5)
    near_end = CertificateLifecycle(lambda: 0.999, retry_max=timedelta(hours=1))
    near_end.installed(T0, T0 + DAY)
    for _ in range(20):
        retry = near_end.renewal_failed(T0 + DAY - timedelta(minutes=1))
    assert retry <= T0 + DAY


def test_an_expired_certificate_keeps_being_retried() -> None:
    life = CertificateLifecycle(lambda: 0.5)
    life.installed(T0, T0 + DAY)
    later = T0 + 2 * DAY
    retry = life.renewal_failed(later)
    assert life.phase is CertPhase.EXPIRED and retry > later
    assert life.should_renew(retry)


@pytest.mark.parametrize("phase", list(CertPhase))
def test_installing_a_certificate_is_possible_from_every_phase(phase: CertPhase) -> None:
    assert TRANSITIONS[(phase, CertEvent.INSTALLED)] is CertPhase.FRESH
