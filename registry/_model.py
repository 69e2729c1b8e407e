"""The catalog's records: service instances, health checks, KV entries, and their etcd encoding.

Records are stored as compact JSON (fields at their default are left out, so 100,000
instances stay small in etcd and in every server's memory). `create_index`, `modify_index` and
`lease` are not stored: they come from the etcd key the record was read from.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any


class Status(StrEnum):
    PASSING = "passing"
    WARNING = "warning"
    CRITICAL = "critical"
    MAINTENANCE = "maintenance"


_SEVERITY = {Status.PASSING: 0, Status.WARNING: 1, Status.CRITICAL: 2, Status.MAINTENANCE: 3}


def worst(statuses: Iterable[Status]) -> Status:
    """The aggregate health: the most severe status, passing when there are no checks."""
    result = Status.PASSING
    for status in statuses:
        if _SEVERITY[status] > _SEVERITY[result]:
            result = status
    return result


@dataclass(frozen=True, slots=True)
class Weights:
    passing: int = 1
    warning: int = 1


CHECK_TYPES = ("ttl", "http", "tcp", "exec")


@dataclass(frozen=True, slots=True)
class Instance:
    """One running copy of a service: where it listens and who owns its registration."""

    service: str
    id: str
    node: str
    namespace: str = "default"
    address: str = ""
    node_address: str = ""
    port: int = 0
    protocol: str = "http"
    tags: tuple[str, ...] = ()
    meta: Mapping[str, str] = field(default_factory=dict)
    weights: Weights = Weights()
    sidecar_port: int = 0
    identity: str = ""
    source: str = "api"
    kind: str = ""
    tagged_addresses: Mapping[str, Any] = field(default_factory=dict)
    enable_tag_override: bool = False
    # From the etcd key, not stored in the record.
    lease: int = 0
    create_index: int = 0
    modify_index: int = 0

    @property
    def key(self) -> tuple[str, str]:
        """(node, id): what identifies an instance within its service."""
        return (self.node, self.id)

    @property
    def effective_address(self) -> str:
        return self.address or self.node_address


@dataclass(frozen=True, slots=True)
class Check:
    """A health check of one instance, with its current state.

    `runner` says who executes active (HTTP/TCP/exec) checks: the agent of the instance's node,
    or the registry server (for services registered straight through the API, as in Consul).
    An `adapter` check (registered with an adapter token) mirrors a state its source owns, such
    as Kubernetes readiness: the adapter sends the status, the server never expires or probes it.
    """

    id: str
    node: str
    service: str
    instance: str
    name: str = ""
    type: str = "ttl"
    status: Status = Status.CRITICAL
    output: str = ""
    notes: str = ""
    ttl: float = 0.0
    http: str = ""
    method: str = "GET"
    header: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    tls_skip_verify: bool = False
    tcp: str = ""
    args: tuple[str, ...] = ()
    interval: float = 0.0
    timeout: float = 10.0
    deregister_critical_after: float = 0.0
    success_before_passing: int = 0
    failures_before_warning: int = 0
    failures_before_critical: int = 0
    expires_at: float = 0.0
    status_since: float = 0.0
    runner: str = "server"
    lease: int = 0
    create_index: int = 0
    modify_index: int = 0

    def same_definition(self, other: Check) -> bool:
        """True if only state (status, output, timers) differs between the two."""
        state = {
            "status",
            "output",
            "expires_at",
            "status_since",
            "lease",
            "create_index",
            "modify_index",
        }
        return all(
            getattr(self, f.name) == getattr(other, f.name)
            for f in dataclasses.fields(self)
            if f.name not in state
        )


_NOT_STORED = {"lease", "create_index", "modify_index"}


def _defaults(cls: type) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


_INSTANCE_DEFAULTS = _defaults(Instance)
_CHECK_DEFAULTS = _defaults(Check)


def _compact(obj: Any, defaults: Mapping[str, Any]) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        if f.name in _NOT_STORED:
            continue
        value = getattr(obj, f.name)
        if f.name in defaults and value == defaults[f.name]:
            continue
        if isinstance(value, Weights):
            value = {"passing": value.passing, "warning": value.warning}
        elif isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, Mapping):
            value = {k: list(v) if isinstance(v, tuple) else v for k, v in value.items()}
        record[f.name] = value
    return record


def encode_instance(instance: Instance) -> bytes:
    return json.dumps(_compact(instance, _INSTANCE_DEFAULTS), separators=(",", ":")).encode()


def encode_check(check: Check) -> bytes:
    return json.dumps(_compact(check, _CHECK_DEFAULTS), separators=(",", ":")).encode()


_EMPTY: Mapping[str, Any] = MappingProxyType({})
_SHARED: dict[Any, Any] = {}
_INTERNED = ("service", "node", "namespace", "protocol", "source", "node_address", "kind")


def _share(value: Any) -> Any:
    """One copy of equal small values (tag lists, meta maps): a server holding 100,000
    instances would otherwise keep 100,000 copies of `["v1"]` and `{"zone": "a"}`."""
    if len(_SHARED) > 100_000:
        _SHARED.clear()
    return _SHARED.setdefault(value, value)


def decode_instance(raw: bytes, *, lease: int, create: int, modify: int) -> Instance:
    data = json.loads(raw)
    for name in _INTERNED:
        if name in data:
            data[name] = sys.intern(data[name])
    weights = data.pop("weights", None)
    if weights is not None:
        data["weights"] = _share(
            Weights(int(weights.get("passing", 1)), int(weights.get("warning", 1)))
        )
    if "tags" in data:
        data["tags"] = _share(tuple(sys.intern(t) for t in data["tags"]))
    for name in ("meta", "tagged_addresses"):
        value = data.get(name)
        if value is None or not value:
            data[name] = _EMPTY
        elif all(isinstance(v, str) for v in value.values()):
            key = (name, *sorted(value.items()))
            shared = _SHARED.get(key)
            if shared is None:
                shared = _SHARED.setdefault(key, MappingProxyType(value))
            data[name] = shared
    return Instance(**data, lease=lease, create_index=create, modify_index=modify)


def decode_check(raw: bytes, *, lease: int, create: int, modify: int) -> Check:
    data = json.loads(raw)
    data["status"] = Status(data.get("status", "critical"))
    if "args" in data:
        data["args"] = tuple(data["args"])
    if "header" in data:
        data["header"] = {k: tuple(v) for k, v in data["header"].items()}
    return Check(**data, lease=lease, create_index=create, modify_index=modify)


def replace(obj: Any, **changes: Any) -> Any:
    return dataclasses.replace(obj, **changes)
