"""Consul's `PUT /v1/txn`: KV and service operations, all applied or none (see `_txn.py`)."""

from __future__ import annotations

from .._context import Context
from .._endpoints import Area, Body, Reply, ref
from .._txn import MAX_OPS, Planner, run
from ..web import Request, Response
from ._schemas import SCHEMAS

AREA: Area[Context] = Area("consul", "consul-txn", SCHEMAS)

_OP = {
    "type": "object",
    "description": "One of KV, Service, Check, Node (Consul's operation shapes; keys in any case)",
    "minProperties": 1,
    "maxProperties": 1,
    "properties": {
        "KV": {"type": "object"},
        "Service": {"type": "object"},
        "Check": {"type": "object"},
        "Node": {"type": "object"},
    },
}
_ANSWER = {"application/json": ref("ConsulTxnAnswer")}


@AREA.route(
    "PUT",
    "/v1/txn",
    summary=(
        "KV, service and check operations applied all together or not at all (reads need a "
        "token that may read, each write one that may write it)"
    ),
    auth="read",
    errors=(400, 503),
    body=Body({"type": "array", "items": _OP, "maxItems": MAX_OPS}),
    ok={
        200: Reply("Every operation applied; Results in order", _ANSWER, ("X-Consul-Index",)),
        409: Reply("Nothing applied; Errors name the operations", _ANSWER, ("X-Consul-Index",)),
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
