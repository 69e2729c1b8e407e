"""Signing policy: who may have a certificate for which identity, and for how long.

The server turns a request's token into one of the callers below (looking up, for an agent, the
services with an instance registered on its node) and asks `authorize`. The decision is pure: the
same caller and identity always get the same answer, with a reason a person can act on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import ClassVar

from ._errors import InvalidLifetime
from ._identity import SpiffeId


@dataclass(frozen=True, slots=True, order=True)
class ServiceRef:
    """A service by namespace and name: what a SPIFFE ID names, without the trust domain."""

    namespace: str
    service: str

    @classmethod
    def of(cls, identity: SpiffeId) -> ServiceRef:
        return cls(identity.namespace, identity.service)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.service}"


@dataclass(frozen=True, slots=True)
class Operator:
    """An operator token: may have a certificate for any identity in the trust domain."""

    name: str = "operator"


@dataclass(frozen=True, slots=True)
class NodeAgent:
    """An agent token bound to `node`; `services` are those with an instance registered there."""

    node: str
    services: frozenset[ServiceRef] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class Adapter:
    """An adapter token bound to `source` (a Kubernetes cluster, say) and the services it syncs."""

    source: str
    services: frozenset[ServiceRef] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class ReadOnly:
    """A read-only token: may read the trust bundle, never have anything signed."""

    name: str = "read-only"


Caller = Operator | NodeAgent | Adapter | ReadOnly


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str


def _listing(services: Iterable[ServiceRef], limit: int = 5) -> str:
    names = sorted(services)
    if not names:
        return "none"
    shown = ", ".join(str(s) for s in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def authorize(caller: Caller, identity: SpiffeId) -> Decision:
    """May `caller` have a certificate for `identity`? (The trust domain is the signer's check.)"""
    wanted = ServiceRef.of(identity)
    match caller:
        case Operator(name=name):
            return Decision(True, f"{name} may have a certificate for any service")
        case NodeAgent(node=node, services=services):
            if wanted in services:
                return Decision(True, f"{wanted} has an instance registered on node {node!r}")
            return Decision(
                False,
                f"the agent of node {node!r} may only have certificates for services with an "
                f"instance registered on that node; {wanted} has none there "
                f"(registered there: {_listing(services)})",
            )
        case Adapter(source=source, services=services):
            if wanted in services:
                return Decision(True, f"{wanted} belongs to source {source!r}")
            return Decision(
                False,
                f"the adapter for source {source!r} may only have certificates for that "
                f"source's services; {wanted} is not one of them (its services: "
                f"{_listing(services)})",
            )
        case ReadOnly(name=name):
            return Decision(
                False, f"{name} tokens cannot have certificates signed; use an agent token"
            )
    raise TypeError(f"unknown caller {caller!r}")  # pragma: no cover - exhaustive above


@dataclass(frozen=True, slots=True)
class LeafLifetimes:
    """How long issued certificates live: `default` unless a request asks otherwise, always
    within [minimum, maximum].

    The production floor is one hour. Tests and development demos that want to watch renewal
    happen (a 2-minute leaf, say) set `allow_short_for_testing=True`, which lowers the floor to
    `TESTING_FLOOR`; never set it in production: a leaf that short turns every blip of the
    server into an outage.
    """

    default: timedelta = timedelta(hours=24)
    maximum: timedelta = timedelta(days=30)
    allow_short_for_testing: bool = False

    PRODUCTION_FLOOR: ClassVar[timedelta] = timedelta(hours=1)
    TESTING_FLOOR: ClassVar[timedelta] = timedelta(seconds=30)
    CEILING: ClassVar[timedelta] = timedelta(days=30)

    def __post_init__(self) -> None:
        if self.maximum > self.CEILING or self.maximum < self.minimum:
            raise InvalidLifetime(
                f"maximum leaf lifetime {_human(self.maximum)} is outside "
                f"{_human(self.minimum)} - {_human(self.CEILING)}"
            )
        self.check(self.default, "default leaf lifetime")

    @property
    def minimum(self) -> timedelta:
        return self.TESTING_FLOOR if self.allow_short_for_testing else self.PRODUCTION_FLOOR

    def check(self, lifetime: timedelta, what: str = "requested lifetime") -> timedelta:
        if not self.minimum <= lifetime <= self.maximum:
            hint = (
                ""
                if self.allow_short_for_testing or lifetime >= self.minimum
                else (
                    " (shorter lifetimes are for tests only: LeafLifetimes.allow_short_for_testing)"
                )
            )
            raise InvalidLifetime(
                f"{what} {_human(lifetime)} is outside the allowed "
                f"{_human(self.minimum)} - {_human(self.maximum)}{hint}"
            )
        return lifetime

    def resolve(self, requested: timedelta | None) -> timedelta:
        return self.default if requested is None else self.check(requested)


def _human(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
