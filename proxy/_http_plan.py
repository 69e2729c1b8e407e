"""What the layers of one HTTP request hand each other, and the phases a connection is in.

The listener's router (`_authorize` inbound, `_outbound`) answers a request head with a
`Route` (where it goes) or a `Reject` (the proxy answers it); the connection (`_http_forward`)
passes it to the exchange (`_http_exchange`), which runs the route layer and forwards. Both
sides import these from here, so neither imports the other's module at run time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._h1 import Head

if TYPE_CHECKING:
    from ._cluster import Cluster
    from ._metrics import HttpStats, Metrics
    from ._retry_budget import RetryBudget
    from ._route_table import RouteTable

# Phases a connection can time out in.
HEAD = "head"  # reading a request head (header_timeout)
IDLE = "idle"  # waiting for the next request (idle_timeout)
RESPONSE = "response"  # waiting for the upstream's answer (the upstream's response timeout)
BODY = "body"  # a body is streaming (body_timeout since the last bytes)
TUNNEL = "tunnel"  # upgraded or CONNECT: the splice's own idle timeout (tunnel_idle_timeout)
DRAIN = "drain"  # not a timeout: shutdown closing an idle connection
FAULT = "fault"  # an injected delay: no timeout of its own


@dataclass(slots=True)
class Route:
    """Where one request goes: produced by the listener's router (which upstream, or the
    application), refined per request by the route layer (`_http_exchange._place` with
    `_route_table`: which route)."""

    cluster: Cluster
    stats: HttpStats
    peer: str
    target: bytes | None = None
    add: list[tuple[bytes, bytes]] = field(default_factory=list)
    drop: frozenset[bytes] = frozenset()
    connect: bool = False  # a CONNECT tunnel (forward proxy)
    # Outbound HTTP to an upstream with routes (schema v2); None: straight to `cluster`.
    table: RouteTable | None = None
    clusters: dict[str, Cluster] = field(default_factory=dict)  # backends by cluster key
    budget: RetryBudget | None = None
    metrics: Metrics | None = None
    direction: str = "outbound"
    background: Callable[..., None] | None = None  # starts mirrored copies
    by_route: dict[str, HttpStats] = field(default_factory=dict)
    placed: dict[str, Route] = field(default_factory=dict)  # by route name, made once

    def stats_for(self, route: str) -> HttpStats:
        """This upstream's numbers for one route (the metric's bounded `route` label)."""
        stats = self.by_route.get(route)
        if stats is None:
            assert self.metrics is not None
            stats = self.by_route[route] = self.metrics.http(self.direction, self.peer, route)
        return stats


@dataclass(slots=True)
class Reject:
    """A request the route layer answers itself (403, unknown upstream, ...)."""

    status: int
    reason: str
    stats: HttpStats | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    label: str = ""  # why, as a metric label (authorization refusals)


Router = Callable[[Head], "Route | Reject"]


class Observer:
    """Where request summaries go (the admin `/tap` stream, the access log) when anyone looks."""

    active = False

    def publish(self, summary: dict[str, Any]) -> None:  # pragma: no cover - interface
        pass
