"""Consul's `/v1/status/...`: open to anyone, as Consul's are (clients probe them first)."""

from __future__ import annotations

from .._context import Context
from .._endpoints import Area, json_reply
from ..web import Request, Response
from ._schemas import SCHEMAS, STR

AREA: Area[Context] = Area("consul", "consul-status", SCHEMAS)
route = AREA.route


@route(
    "GET",
    "/v1/status/leader",
    summary="The address of the leader (this server: every server answers)",
    auth="open",
    ok=json_reply("host:port", STR),
)
async def status_leader(ctx: Context, request: Request) -> Response:
    return Response.json(ctx.options.advertise)


@route(
    "GET",
    "/v1/status/peers",
    summary="The servers' addresses",
    auth="open",
    ok=json_reply("host:port of each", {"type": "array", "items": STR}),
)
async def status_peers(ctx: Context, request: Request) -> Response:
    return Response.json([ctx.options.advertise])
