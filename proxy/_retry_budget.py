"""How many retries an upstream may take: Linkerd's retry budget. Pure; the clock is passed in.

This is tower's `TpsBudget`, which linkerd2-proxy uses: every original request deposits 1,
every retry withdraws `1 / ratio`, deposits expire after `ttl` (kept in 10 slots), and a fixed
reserve of `min_per_second * ttl` retries is always there for quiet services. A retry is
allowed while the balance stays at or above zero, so over any `ttl` window

    retries <= ratio * requests + min_per_second * ttl

Defaults are Linkerd's: ratio 0.2, 10 retries per second, ttl 10 s. Unlike Istio's attempt
counts alone, a budget stops a failing upstream from getting `attempts` times its load.
"""

from __future__ import annotations

from dataclasses import dataclass

SLOTS = 10


@dataclass(frozen=True, slots=True)
class BudgetPolicy:
    ratio: float = 0.2
    min_per_second: float = 10.0
    ttl: float = 10.0

    def bound(self, requests: int) -> float:
        """The most retries the budget allows for `requests` requests within one ttl."""
        return self.ratio * requests + self.min_per_second * self.ttl


class RetryBudget:
    """Deposits and withdrawals in `SLOTS` time slots of `ttl / SLOTS` each."""

    __slots__ = ("_deposit", "_reserve", "_slots", "_start", "_width", "_withdraw", "policy")

    def __init__(self, policy: BudgetPolicy, now: float) -> None:
        self.policy = policy
        self._width = policy.ttl / SLOTS
        # Counted in deposit units: a retry costs 1/ratio deposits, and the reserve holds
        # min_per_second * ttl retries. With ratio 0 only the reserve pays for retries.
        if policy.ratio > 0:
            self._deposit, self._withdraw = 1.0, 1.0 / policy.ratio
        else:
            self._deposit, self._withdraw = 0.0, 1.0
        self._reserve = policy.min_per_second * policy.ttl * self._withdraw
        self._slots = [0.0] * SLOTS
        self._start = now  # the time slot 0 of the current ring began

    def _advance(self, now: float) -> int:
        """Expire slots older than the ttl; the index of the slot `now` falls in."""
        elapsed = int((now - self._start) // self._width)
        if elapsed >= SLOTS * 2:
            self._slots = [0.0] * SLOTS
            self._start += (elapsed - elapsed % SLOTS) * self._width
            elapsed %= SLOTS
        while elapsed >= SLOTS:
            # Move the ring on by one slot: the oldest slot expires.
            self._slots.pop(0)
            self._slots.append(0.0)
            self._start += self._width
            elapsed -= 1
        return elapsed

    def deposit(self, now: float) -> None:
        """An original (not retried) request."""
        self._slots[self._advance(now)] += self._deposit

    def balance(self, now: float) -> float:
        self._advance(now)
        return self._reserve + sum(self._slots)

    @property
    def withdraw_cost(self) -> float:
        """What one retry takes from the balance (in deposit units)."""
        return self._withdraw

    def withdraw(self, now: float) -> bool:
        """Take one retry if the budget has it; False (and nothing taken) otherwise."""
        slot = self._advance(now)
        if self._reserve + sum(self._slots) - self._withdraw < 0:
            return False
        self._slots[slot] -= self._withdraw
        return True
