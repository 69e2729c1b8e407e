"""Leader election on a `coordination.k8s.io/v1` Lease, as client-go does it (pure).

    Lease        this replica's view              action
    absent       -                                create it, holding it
    held by me   -                                renew (renewTime = now)
    held by X    X's record unchanged for         take over (holder = me,
                 leaseDurationSeconds, or empty   leaseTransitions + 1)
    held by X    changed within the duration      wait

Expiry is judged by when *this* replica last saw the record change, on its own monotonic
clock, never by comparing the renewTime written by another host with this host's clock, so
clock skew between nodes cannot hand leadership over early. A leader that could not renew
for `renew_deadline` stops leading even before anyone takes over (renew_deadline <
lease_duration leaves the margin in which nobody leads). Every write carries the
resourceVersion it read, so two candidates cannot both win: the second gets 409 Conflict.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any


def micro_time(wall: float) -> str:
    """A Kubernetes MicroTime: RFC 3339 with microseconds, UTC."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(wall)) + f".{int(wall % 1 * 1e6):06d}Z"


def _text(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return str(value or "")


@dataclass(frozen=True)
class LeaseRecord:
    holder: str
    duration: float
    acquire_time: str
    renew_time: str
    transitions: int
    resource_version: str

    @classmethod
    def from_lease(cls, lease: Any) -> LeaseRecord:
        spec = lease.spec
        return cls(
            holder=(spec.holderIdentity if spec else None) or "",
            duration=float((spec.leaseDurationSeconds if spec else None) or 0),
            acquire_time=_text(spec.acquireTime if spec else None),
            renew_time=_text(spec.renewTime if spec else None),
            transitions=int((spec.leaseTransitions if spec else None) or 0),
            resource_version=lease.metadata.resourceVersion or "",
        )


@dataclass(frozen=True)
class Action:
    verb: str  # "create", "update" or "wait"
    spec: dict[str, Any]
    resource_version: str = ""


WAIT = Action("wait", {})


class Election:
    def __init__(self, identity: str, *, lease_duration: float, renew_deadline: float) -> None:
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.observed: LeaseRecord | None = None
        self._observed_at = 0.0
        self._last_renew: float | None = None

    def observe(self, record: LeaseRecord | None, now: float) -> None:
        """What a read of the Lease returned (None: it does not exist)."""
        if record is None or self.observed is None:
            changed = record != self.observed
        else:
            changed = record.resource_version != self.observed.resource_version
        if changed:
            self._observed_at = now
        self.observed = record
        if record is not None and record.holder != self.identity:
            self._last_renew = None

    def plan(self, now: float, wall: float) -> Action:
        rec = self.observed
        stamp = micro_time(wall)
        mine = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.lease_duration)),
            "renewTime": stamp,
        }
        if rec is None:
            return Action("create", {**mine, "acquireTime": stamp, "leaseTransitions": 0})
        if rec.holder == self.identity:
            acquired = rec.acquire_time or stamp
            return Action(
                "update",
                {**mine, "acquireTime": acquired, "leaseTransitions": rec.transitions},
                rec.resource_version,
            )
        if rec.holder and now < self._observed_at + rec.duration:
            return WAIT
        return Action(
            "update",
            {**mine, "acquireTime": stamp, "leaseTransitions": rec.transitions + 1},
            rec.resource_version,
        )

    def written(self, record: LeaseRecord, now: float) -> None:
        """Our create/update succeeded and the server answered with `record`."""
        self.observe(record, now)
        if record.holder == self.identity:
            self._last_renew = now

    def leading(self, now: float) -> bool:
        return (
            self._last_renew is not None
            and self.observed is not None
            and self.observed.holder == self.identity
            and now - self._last_renew < self.renew_deadline
        )

    def renew_by(self) -> float:
        """When leadership ends without another successful renewal (monotonic clock)."""
        if self._last_renew is None:
            return float("-inf")
        return self._last_renew + self.renew_deadline

    def release(self, wall: float) -> Action:
        """Give the Lease up on shutdown, so a candidate takes over at its next try."""
        rec = self.observed
        if rec is None or rec.holder != self.identity:
            return WAIT
        stamp = micro_time(wall)
        spec = {
            "holderIdentity": "",
            "leaseDurationSeconds": 1,
            "renewTime": stamp,
            "acquireTime": rec.acquire_time or stamp,
            "leaseTransitions": rec.transitions,
        }
        return Action("update", spec, rec.resource_version)

    def expires_in(self, now: float) -> float:
        """Seconds until this replica would consider the current holder's Lease expired."""
        if self.observed is None:
            return 0.0
        return max(0.0, self._observed_at + self.observed.duration - now)
