"""Consul's `PUT /v1/txn`: KV and service operations, all applied or none (see `_txn.py`)."""

from __future__ import annotations

from .._context import Context
from .._endpoints import Area, json_reply
from .._txn import Planner, run
from ..web import Request, Response
from ._schemas import SCHEMAS

AREA: Area[Context] = Area("consul", "consul-txn", SCHEMAS)
route = AREA.route

_ANSWER = {
    "type": "object",
    "properties": {"Results": {"type": ["array", "null"]}, "Errors": {"type": ["array", "null"]}},
}


@route(
    "PUT",
    "/v1/txn",
    summary="Up to 64 KV, Service and Check operations as one etcd transaction: all or none",
    auth="read",
    errors=(400, 409),
    ok={
        200: json_reply("Every operation applied; the reads' results", _ANSWER),
        409: json_reply("Nothing applied: the failed operations, by OpIndex", _ANSWER),
    },
)
async def txn(ctx: Context, request: Request) -> Response:
    token = ctx.reader(request)
    planner = Planner(
        ctx.keys,
        ctx.mirror,
        ctx.catalog,
        ctx.sessions,
        node=ctx.node_of(token),
        node_address=request.peer,
        rules=ctx.options.check_rules,
    )
    plan = planner.plan(request.json())
    for key, prefix in plan.kv_writes:
        ctx.kv_writer(token, key, prefix=prefix)
    for inst in plan.instances:
        ctx.write_instance(token, inst)
    status, answer = await run(plan, ctx.catalog, ctx.mirror, ctx.keys)
    return Response.json(
        answer, status=status, headers=[("X-Consul-Index", str(max(ctx.mirror.revision, 1)))]
    )
