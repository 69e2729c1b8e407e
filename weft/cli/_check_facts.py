"""What `weft check` gathers (`_check_mesh`) and judges (`_check_judge`, `_check_hosts`),
and the bounds it judges against."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Limits:
    max_skew: float = 2.0  # seconds between a host's clock and a server's
    ca_expiry: float = 30 * 86400.0  # a root or intermediate closer to its end than this fails
    snapshot_lag: float = 10.0  # seconds a proxy may take to apply its latest snapshot


@dataclass
class ServerView:
    """One server, asked directly (`error` says why it could not be)."""

    url: str
    error: str = ""
    health: dict[str, Any] | None = None
    roots: list[str] | None = None  # root fingerprints it serves
    intention_default: str | None = None
    clock_offset: float | None = None  # its clock minus ours, at the request's midpoint


@dataclass
class MeshFacts:
    now: float
    servers: list[ServerView]
    announced: list[dict[str, Any]] = field(default_factory=list)
    agents: list[dict[str, Any]] = field(default_factory=list)
    agent_nodes: set[str] = field(default_factory=set)  # nodes with agent-registered instances
    roots: dict[str, Any] | None = None  # GET /v1/ca/roots
    ca_status: dict[str, Any] | None = None  # GET /v1/ca/status
    unreadable: dict[str, str] = field(default_factory=dict)  # what could not be read, and why
