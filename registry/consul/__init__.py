"""The Consul-compatible HTTP API: the subset that existing clients and tools rely on.

One module per area of Consul's API, each declaring its routes in an `Area`; errors are plain
text, as Consul answers them. New areas (sessions, txn, ...) add a module and a line here.
"""

from __future__ import annotations

import re

from .. import _consul_checks, _consul_nodes, _consul_sessions, _consul_txn
from .._context import Context
from .._endpoints import Area, Param, json_reply
from ..web import Router
from . import _agent, _catalog, _connect, _health, _kv, _status

# Sessions, transactions, node and check registration: plain route tables, declared here with
# Consul's answer left untyped (any JSON) until each module declares its own shapes.
_TABLES = (
    _consul_sessions.ROUTES,
    _consul_txn.ROUTES,
    _consul_nodes.ROUTES,
    _consul_checks.ROUTES,
)
_EXTRA: Area[Context] = Area("consul", "consul-extra")
for _method, _path, _handler in (row for table in _TABLES for row in table):
    _EXTRA.route(
        _method,
        _path,
        summary=((_handler.__doc__ or _handler.__name__).strip().splitlines() or [""])[0],
        ok=json_reply("Consul's answer", {}),
        auth="read" if _method == "GET" else "token",
        errors=(400, 404, 409, 500),
        path_params={
            name: Param(name, description=f"The {name.replace('_', ' ')}")
            for name in re.findall(r"{(\w+)", _path)
        },
    )(_handler)

AREAS: tuple[Area[Context], ...] = (
    _agent.AREA,
    _catalog.AREA,
    _health.AREA,
    _connect.AREA,
    _status.AREA,
    _kv.AREA,
    _EXTRA,
)


def mount(router: Router, ctx: Context) -> None:
    for area in AREAS:
        area.mount(router, ctx)
