"""`GET /v1/weft/servers`: the servers that announced themselves (`_announce.py`), for
`weft check` to find and compare every server, even from behind a load balancer."""

from __future__ import annotations

import json
from typing import Any

from ._context import Context
from ._endpoints import Area, json_reply, ref
from .web import Request, Response

SERVERS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "time": {"type": "number", "description": "the answering server's clock, Unix seconds"},
        "servers": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "identity": {"type": "string"},
                    "url": {"type": "string"},
                    "advertise": {"type": "string"},
                    "version": {"type": "string"},
                    "time": {"type": "number"},
                    "revision": {"type": "integer"},
                    "stale": {"type": ["string", "null"]},
                    "intention_default": {"type": "string"},
                    "age_seconds": {"type": "number"},
                },
            },
        },
    },
}

AREA: Area[Context] = Area("server", "server", {"Servers": SERVERS_SCHEMA})


@AREA.route(
    "GET",
    "/v1/weft/servers",
    summary="Every running server's last announcement (rewritten every 5 s, gone 15 s after "
    "the server stops)",
    auth="read",
    ok=json_reply("The servers", ref("Servers")),
)
async def servers(ctx: Context, request: Request) -> Response:
    ctx.reader(request)
    now = ctx.clock()
    prefix = ctx.keys.server()
    out = []
    for key, kv in sorted(ctx.mirror.raw.items()):
        if not key.startswith(prefix):
            continue
        try:
            record = json.loads(kv.value)
            record["age_seconds"] = now - float(record["time"])
        except (ValueError, KeyError, TypeError):
            continue  # not a record this version can read
        out.append(record)
    return Response.json({"time": now, "servers": out})
