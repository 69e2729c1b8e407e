"""The life of a check's status, as a table: results in, status out (no I/O, no clock).

    result     counters                   new status
    passing    successes+1, failures=0    passing once successes >= SuccessBeforePassing
    warning    failures+1,  successes=0   warning once failures >= FailuresBeforeWarning
    critical   failures+1,  successes=0   critical once failures >= FailuresBeforeCritical,
                                          else warning once failures >= FailuresBeforeWarning
    TTL runs out                          critical at once, output "TTL expired"

Thresholds of 0 or 1 mean "at the first result", as in Consul; an unset
FailuresBeforeWarning takes FailuresBeforeCritical's value. Until a threshold is reached
the status stays what it was.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._model import Check, Status


@dataclass(frozen=True, slots=True)
class Streak:
    successes: int = 0
    failures: int = 0


def next_status(check: Check, result: Status, streak: Streak) -> tuple[Status, Streak]:
    """The check's status after one probe `result`, and the new streak counters."""
    if result is Status.PASSING:
        streak = Streak(successes=streak.successes + 1, failures=0)
        if check.status is Status.PASSING or streak.successes >= check.success_before_passing:
            return Status.PASSING, streak
        return check.status, streak
    streak = Streak(successes=0, failures=streak.failures + 1)
    if result is Status.CRITICAL and streak.failures >= check.failures_before_critical:
        return Status.CRITICAL, streak
    # Unset, FailuresBeforeWarning takes FailuresBeforeCritical's value (as in Consul).
    before_warning = check.failures_before_warning or check.failures_before_critical
    if streak.failures >= before_warning:
        return Status.WARNING, streak
    return check.status, streak


def ttl_expired(check: Check, now: float) -> bool:
    """A TTL check not refreshed before its deadline."""
    return (
        check.type == "ttl"
        and check.status is not Status.CRITICAL
        and check.expires_at > 0
        and now > check.expires_at
    )


def critical_too_long(check: Check, now: float) -> bool:
    """DeregisterCriticalServiceAfter has run out for this check's instance."""
    return (
        check.deregister_critical_after > 0
        and check.status is Status.CRITICAL
        and check.status_since > 0
        and now - check.status_since >= check.deregister_critical_after
    )
