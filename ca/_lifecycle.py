"""A certificate's life as its holder sees it: absent -> fresh -> renewing -> expired.

The agent keeps one CertificateLifecycle per workload identity. It renews at a random point
between 60% and 90% of the certificate's life (as Consul does), so a fleet that got its
certificates together does not come back to the server together; if renewal fails it retries
with capped exponential backoff, and never waits past the expiry to try again.

    phase      on event            goes to     and
    ABSENT     INSTALLED           FRESH       draws renew_at
    FRESH      RENEW_DUE (time)    RENEWING    next attempt now
    FRESH      EXPIRY (time)       EXPIRED     (the host slept through the renewal window)
    RENEWING   EXPIRY (time)       EXPIRED
    RENEWING   FAILED              RENEWING    next attempt after backoff
    EXPIRED    FAILED              EXPIRED     next attempt after backoff
    ABSENT     FAILED              ABSENT      next attempt after backoff
    any        INSTALLED           FRESH       a new certificate: new renew_at, backoff reset
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from datetime import datetime, timedelta

RENEW_FROM = 0.6
RENEW_TO = 0.9


class CertPhase(enum.Enum):
    ABSENT = "absent"  # no certificate yet: get one now
    FRESH = "fresh"  # valid, before its renewal time
    RENEWING = "renewing"  # valid, past its renewal time: get a new one
    EXPIRED = "expired"  # past NotAfter: peers reject it


class CertEvent(enum.Enum):
    INSTALLED = "installed"
    RENEW_DUE = "renew-due"
    EXPIRY = "expiry"
    FAILED = "failed"


TRANSITIONS: dict[tuple[CertPhase, CertEvent], CertPhase] = {
    (CertPhase.ABSENT, CertEvent.INSTALLED): CertPhase.FRESH,
    (CertPhase.ABSENT, CertEvent.FAILED): CertPhase.ABSENT,
    (CertPhase.FRESH, CertEvent.INSTALLED): CertPhase.FRESH,
    (CertPhase.FRESH, CertEvent.RENEW_DUE): CertPhase.RENEWING,
    (CertPhase.FRESH, CertEvent.EXPIRY): CertPhase.EXPIRED,
    (CertPhase.RENEWING, CertEvent.INSTALLED): CertPhase.FRESH,
    (CertPhase.RENEWING, CertEvent.EXPIRY): CertPhase.EXPIRED,
    (CertPhase.RENEWING, CertEvent.FAILED): CertPhase.RENEWING,
    (CertPhase.EXPIRED, CertEvent.INSTALLED): CertPhase.FRESH,
    (CertPhase.EXPIRED, CertEvent.FAILED): CertPhase.EXPIRED,
}


def renewal_time(
    not_before: datetime, not_after: datetime, random: Callable[[], float]
) -> datetime:
    """A point between 60% and 90% of [not_before, not_after]; `random()` is in [0, 1)."""
    fraction = RENEW_FROM + (RENEW_TO - RENEW_FROM) * random()
    return not_before + (not_after - not_before) * fraction


class CertificateLifecycle:
    """Tells its holder when to renew. Pure: time comes in as `now`, randomness as `random`."""

    def __init__(
        self,
        random: Callable[[], float],
        *,
        retry_first: timedelta = timedelta(seconds=1),
        retry_max: timedelta = timedelta(minutes=5),
    ) -> None:
        self._random = random
        self._retry_first = retry_first
        self._retry_max = retry_max
        self.phase = CertPhase.ABSENT
        self.not_before: datetime | None = None
        self.not_after: datetime | None = None
        self.renew_at: datetime | None = None
        self.failures = 0
        self._next_attempt: datetime | None = None  # None: as soon as renewal is due

    def _fire(self, event: CertEvent) -> None:
        try:
            self.phase = TRANSITIONS[(self.phase, event)]
        except KeyError:
            raise RuntimeError(
                f"certificate lifecycle: no {event.value} in {self.phase.value}"
            ) from None

    def installed(self, not_before: datetime, not_after: datetime) -> datetime:
        """A new certificate is in use; returns when it should be renewed."""
        self._fire(CertEvent.INSTALLED)
        self.not_before, self.not_after = not_before, not_after
        self.renew_at = renewal_time(not_before, not_after, self._random)
        self.failures = 0
        self._next_attempt = None
        return self.renew_at

    def advance(self, now: datetime) -> CertPhase:
        """Apply the transitions time has brought about by `now`; return the phase."""
        if self.phase is CertPhase.FRESH and self.renew_at and now >= self.renew_at:
            self._fire(CertEvent.RENEW_DUE)
        live = self.phase in (CertPhase.FRESH, CertPhase.RENEWING)
        if live and self.not_after is not None and now >= self.not_after:
            self._fire(CertEvent.EXPIRY)
        return self.phase

    def should_renew(self, now: datetime) -> bool:
        """Is it time to ask for a new certificate?"""
        phase = self.advance(now)
        if phase is CertPhase.FRESH:
            return False
        return self._next_attempt is None or now >= self._next_attempt

    def renewal_failed(self, now: datetime) -> datetime:
        """Renewal did not work; returns when to try again (backoff with jitter, capped, and
        never later than the expiry while the certificate is still valid)."""
        phase = self.advance(now)
        if phase is CertPhase.FRESH:
            return self.renew_at or now
        self._fire(CertEvent.FAILED)
        self.failures += 1
        backoff = min(self._retry_max, self._retry_first * (1 << min(self.failures - 1, 30)))
        wait = backoff * (0.5 + 0.5 * self._random())
        attempt = now + wait
        if phase is CertPhase.RENEWING and self.not_after is not None:
            attempt = min(attempt, self.not_after)
        self._next_attempt = attempt
        return attempt

    def retry_now(self) -> None:
        """The CA is reachable again: forget the backoff and try at the next look."""
        if self.phase is not CertPhase.FRESH:
            self._next_attempt = None

    def next_wakeup(self, now: datetime) -> datetime:
        """When the holder should next call `should_renew`."""
        phase = self.advance(now)
        if phase is CertPhase.FRESH:
            assert self.renew_at is not None
            return self.renew_at
        return self._next_attempt or now
