"""The Consul-compatible HTTP API: the subset that existing clients and tools rely on.

One module per area of Consul's API, each declaring its routes in an `Area`; errors are plain
text, as Consul answers them. A new area adds a module and a line here.
"""

from __future__ import annotations

from .._context import Context
from .._endpoints import Area
from ..web import Router
from . import _agent, _catalog, _checks, _health, _kv, _nodes, _sessions, _status, _txn

AREAS: tuple[Area[Context], ...] = (
    _agent.AREA,
    _catalog.AREA,
    _health.AREA,
    _status.AREA,
    _kv.AREA,
    _sessions.AREA,
    _txn.AREA,
    _nodes.AREA,
    _checks.AREA,
)


def mount(router: Router, ctx: Context) -> None:
    for area in AREAS:
        area.mount(router, ctx)
