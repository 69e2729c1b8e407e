"""The server's own endpoints: its OpenAPI document and its health (`/v1/weft/health`)."""

from __future__ import annotations

from typing import Protocol

from ._context import Context
from ._endpoints import Area, json_reply
from ._etcd_upkeep import StorageMonitor
from .web import Request, Response


class ServedApp(Protocol):
    """What these handlers need of the application (`server.RegistryApp`)."""

    ctx: Context
    storage: StorageMonitor | None
    openapi_body: bytes


_INT = {"type": "integer"}
HEALTH_SCHEMA = {
    "type": "object",
    "required": ["status", "revision", "blocking_queries"],
    "additionalProperties": False,
    "properties": {
        "status": {"enum": ["ok", "loading", "stale"]},
        "revision": _INT,
        "blocking_queries": _INT,
        "time": {"type": "number", "description": "the server's clock (Unix time)"},
        "reason": {"type": "string", "description": "why the view cannot be trusted"},
        "etcd": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "db_size_bytes": _INT,
                "db_size_in_use_bytes": _INT,
                "quota_bytes": _INT,
                "alarms": {"type": "array", "items": {"type": "string"}},
            },
        },
        "warnings": {"type": "array", "items": {"type": "string"}},
    },
}
SERVER_AREA: Area[ServedApp] = Area("server", "server", {"Health": HEALTH_SCHEMA})


@SERVER_AREA.route(
    "GET",
    "/v1/openapi.json",
    summary="This document",
    auth="open",
    ok=json_reply("The OpenAPI 3.1 document", {"type": "object"}),
)
async def openapi(app: ServedApp, request: Request) -> Response:
    return Response(body=app.openapi_body)


_HEALTH_SCHEMA = {"$ref": "#/components/schemas/Health"}


@SERVER_AREA.route(
    "GET",
    "/v1/weft/health",
    summary="Server readiness (503 while its mirror of etcd is loading or stale)",
    auth="open",
    ok={
        200: json_reply("Ready", _HEALTH_SCHEMA),
        503: json_reply("Loading or stale", _HEALTH_SCHEMA),
    },
)
async def health(app: ServedApp, request: Request) -> Response:
    ctx = app.ctx
    stale = ctx.catalog.sync.stale_reason()
    healthy = stale is None
    body: dict[str, object] = {
        "status": "ok" if healthy else ("loading" if not ctx.catalog.sync.healthy else "stale"),
        "revision": ctx.mirror.revision,
        "blocking_queries": ctx.hub.waiting,
        "time": ctx.clock(),  # `weft check` compares the servers' clocks
    }
    if stale is not None:
        body["reason"] = stale
    if app.storage is not None:
        body["etcd"] = app.storage.report()
        body["warnings"] = app.storage.warnings()
    return Response.json(body, status=200 if healthy else 503)
