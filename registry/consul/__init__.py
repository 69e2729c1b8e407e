"""The Consul-compatible HTTP API: the subset that existing clients and tools rely on.

One module per area of Consul's API, each declaring its routes in an `Area` with plain
module-level handlers; errors are plain text, as Consul answers them. A new area adds a module
and a line here.

    _agent     /v1/agent/self, services, service register/deregister, check pass/warn/fail
    _checks    /v1/agent/check/register|deregister, service maintenance, /v1/acl/token/self
    _catalog   /v1/catalog/services, service, nodes, node
    _nodes     /v1/catalog/register|deregister|datacenters, /v1/health/node, agent members
    _health    /v1/health/service, checks, state
    _kv        /v1/kv (with the lock side in _session)
    _session   /v1/session/*, KV ?acquire= / ?release=
    _txn       /v1/txn
    _connect   /v1/health/connect, /v1/catalog/connect (sidecars as connect-proxy instances)
    _intentions /v1/connect/intentions (and the native /v1/intentions agents follow)
    _status    /v1/status/leader, peers
"""

from __future__ import annotations

from .._context import Context
from .._endpoints import Area
from ..web import Router
from . import (
    _agent,
    _catalog,
    _checks,
    _connect,
    _health,
    _intentions,
    _kv,
    _nodes,
    _session,
    _status,
    _txn,
)

AREAS: tuple[Area[Context], ...] = (  # mounted in this order: the first match answers
    _agent.AREA,
    _catalog.AREA,
    _health.AREA,
    _connect.AREA,
    _status.AREA,
    _kv.AREA,
    _intentions.AREA,
    _intentions.NATIVE_AREA,
    _session.AREA,
    _txn.AREA,
    _nodes.AREA,
    _checks.AREA,
)


def mount(router: Router, ctx: Context) -> None:
    for area in AREAS:
        area.mount(router, ctx)
