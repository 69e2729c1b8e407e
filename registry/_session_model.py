"""Consul sessions and KV locks as records and rules (pure: no etcd, no clock).

A session lives in etcd as `sessions/<id>` on an etcd lease of its own: the lease's TTL is the
session's TTL (sessions without one get a lease that never runs out), renewing the session
refreshes the lease, and destroying it revokes the lease. Every lock the session holds is a
`kvheld/<key>` record on the same lease, so when etcd ends the lease it removes the session
and releases all of its locks in one revision, on every server at once, with no reaper. With
behavior `delete`, the locked KV entries themselves are put on the lease too.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._decode import F, decode, parse_duration
from ._errors import InvalidInput

SERF_HEALTH = "serfHealth"  # Consul's default node check; Weft's nodes have no gossip
MAX_LOCK_DELAY = 60.0  # Consul's limit
DEFAULT_LOCK_DELAY = 15.0
MAX_TTL = 86400.0
NO_TTL_LEASE = 10 * 365 * 86400  # a lease that outlives the session's owner

SESSION_SHAPE: dict[str, F] = {
    "ID": F("any", ignored=True),  # Consul assigns IDs; a client-sent one is ignored
    "Name": F("str"),
    "Node": F("str"),
    "LockDelay": F("any"),
    "Behavior": F("str"),
    "TTL": F("str"),
    "Checks": F("strlist"),
    "NodeChecks": F("strlist"),
    "ServiceChecks": F("objlist", {"ID": F("str"), "Namespace": F("str", ignored=True)}),
    "Namespace": F("any", ignored=True),
    "Partition": F("any", ignored=True),
}


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    node: str
    name: str = ""
    lock_delay: float = DEFAULT_LOCK_DELAY
    behavior: str = "release"
    ttl: float = 0.0
    node_checks: tuple[str, ...] = (SERF_HEALTH,)
    service_checks: tuple[str, ...] = ()
    # From the etcd key, not stored in the record.
    lease: int = 0
    create_index: int = 0
    modify_index: int = 0

    @property
    def lease_ttl(self) -> int:
        return math.ceil(self.ttl) if self.ttl else NO_TTL_LEASE

    def encode(self) -> bytes:
        return json.dumps(
            {
                "id": self.id,
                "node": self.node,
                "name": self.name,
                "lock_delay": self.lock_delay,
                "behavior": self.behavior,
                "ttl": self.ttl,
                "node_checks": list(self.node_checks),
                "service_checks": list(self.service_checks),
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def decode(cls, raw: bytes, *, lease: int, create: int, modify: int) -> Session:
        data = json.loads(raw)
        return cls(
            id=data["id"],
            node=data["node"],
            name=data.get("name", ""),
            lock_delay=float(data.get("lock_delay", DEFAULT_LOCK_DELAY)),
            behavior=data.get("behavior", "release"),
            ttl=float(data.get("ttl", 0)),
            node_checks=tuple(data.get("node_checks", ())),
            service_checks=tuple(data.get("service_checks", ())),
            lease=lease,
            create_index=create,
            modify_index=modify,
        )

    def consul_json(self) -> dict[str, Any]:
        return {
            "ID": self.id,
            "Name": self.name,
            "Node": self.node,
            "LockDelay": int(self.lock_delay * 1e9),  # Go's time.Duration: nanoseconds
            "Behavior": self.behavior,
            "TTL": _go_duration(self.ttl) if self.ttl else "",
            "NodeChecks": list(self.node_checks),
            "ServiceChecks": [{"ID": c, "Namespace": ""} for c in self.service_checks] or None,
            "Checks": list(self.node_checks) + list(self.service_checks),
            "Namespace": "default",
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        }

    @property
    def checks(self) -> tuple[str, ...]:
        return tuple(c for c in self.node_checks if c != SERF_HEALTH) + self.service_checks


def _go_duration(seconds: float) -> str:
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{seconds}s"


def _lock_delay(value: Any) -> float:
    # Consul takes "15s" or a number of nanoseconds, and reads a number under 1000 as seconds
    # (clients that sent seconds by mistake were common enough that Consul made it a rule).
    if isinstance(value, bool):
        raise InvalidInput("LockDelay: expected a duration like '15s'", field="LockDelay")
    if isinstance(value, int | float):
        seconds = float(value) if value < 1000 else value / 1e9
    elif isinstance(value, str):
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise InvalidInput(f"LockDelay: {exc}", field="LockDelay") from None
    else:
        raise InvalidInput("LockDelay: expected a duration like '15s'", field="LockDelay")
    if not 0 <= seconds <= MAX_LOCK_DELAY:
        raise InvalidInput(
            f"LockDelay: must be between 0s and {MAX_LOCK_DELAY:.0f}s, got {value!r}",
            field="LockDelay",
        )
    return seconds


def session_from_consul(body: Any, *, node: str, min_ttl: float) -> Session:
    """A new session from the body of `PUT /v1/session/create` (keys in any case)."""
    data: Mapping[str, Any] = (
        decode(body, SESSION_SHAPE, fold_case=True) if body not in (None, b"") else {}
    )
    behavior = data.get("Behavior", "release") or "release"
    if behavior not in ("release", "delete"):
        raise InvalidInput(f"Behavior: {behavior!r} is not release or delete", field="Behavior")
    ttl = 0.0
    if data.get("TTL"):
        try:
            ttl = parse_duration(data["TTL"])
        except ValueError as exc:
            raise InvalidInput(f"TTL: {exc}", field="TTL") from None
        if not min_ttl <= ttl <= MAX_TTL:
            raise InvalidInput(
                f"TTL: {data['TTL']!r} must be between {_go_duration(min_ttl)} and 24h",
                field="TTL",
            )
    if "NodeChecks" in data and "Checks" in data:
        raise InvalidInput("Checks: give NodeChecks or Checks, not both", field="Checks")
    node_checks = tuple(data.get("NodeChecks", data.get("Checks", [SERF_HEALTH])))
    service_checks = tuple(c["ID"] for c in data.get("ServiceChecks", []) if c.get("ID"))
    lock_delay = _lock_delay(data["LockDelay"]) if "LockDelay" in data else DEFAULT_LOCK_DELAY
    return Session(
        id=str(uuid.uuid4()),
        node=data.get("Node") or node,
        name=data.get("Name", ""),
        lock_delay=lock_delay,
        behavior=behavior,
        ttl=ttl,
        node_checks=node_checks,
        service_checks=service_checks,
    )


@dataclass(frozen=True, slots=True)
class LockState:
    """What a KV key's lock looks like now: its holder ("" if none) and its LockIndex."""

    holder: str = ""
    lock_index: int = 0


def acquire_outcome(state: LockState, session: str) -> tuple[bool, int]:
    """(may acquire, the LockIndex after) under Consul's rules: a free lock is taken and its
    LockIndex counts up; the holder may acquire again (updating the value) without a new
    index; anyone else is refused."""
    if state.holder == session:
        return True, state.lock_index
    if state.holder:
        return False, state.lock_index
    return True, state.lock_index + 1


def release_outcome(state: LockState, session: str) -> bool:
    """Only the holder may release; the LockIndex stays (it counts acquisitions)."""
    return bool(state.holder) and state.holder == session


def valid_session_id(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text.lower()
    except ValueError:
        return False
