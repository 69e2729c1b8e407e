"""Weft's native `/v1/registry/...` and `/v1/tokens` API (JSON errors, snake_case fields).

This is what the agent and the Kubernetes adapter use: instances on leases, batches, check
results pushed by the host, and tokens. One module per area, each declaring its routes.
"""

from __future__ import annotations

from .._context import Context
from .._endpoints import Area
from ..web import Router
from . import _agents, _leases, _services, _tokens

AREAS: tuple[Area[Context], ...] = (_services.AREA, _leases.AREA, _tokens.AREA, _agents.AREA)


def mount(router: Router, ctx: Context) -> None:
    for area in AREAS:
        area.mount(router, ctx)
