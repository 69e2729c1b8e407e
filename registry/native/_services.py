"""Native `/v1/registry/...`: services, instances, batches, check results, maintenance."""

from __future__ import annotations

from typing import Any

from .._check_reach import check_registration, native_fields
from .._context import Context
from .._decode import F, decode
from .._endpoints import Area, Body, Param, json_reply, ref
from .._errors import InvalidInput, NotFound
from .._mirror import CATALOG, HEALTH, service_topic
from .._validate import node_name
from .._validate import status as parse_status
from ..web import Request, Response
from ._input import BATCH_SHAPE, INSTANCE_SHAPE, MAX_BATCH, registration_from_native
from ._schemas import BLOCKING, INDEX_HEADERS, SCHEMAS
from ._views import check_view, instance_view

OUTPUT_LIMIT = 64 * 1024  # a check's output (Consul's OutputMaxSize defaults to 4 KiB)


def _output(value: str) -> str:
    # Probe output is whatever the app answered (CR, escapes and all): bounded, not filtered.
    if len(value) > OUTPUT_LIMIT:
        raise InvalidInput(f"output: at most {OUTPUT_LIMIT} characters", field="output")
    return value


AREA: Area[Context] = Area("native", "registry", SCHEMAS)
route = AREA.route

_WRITE_ERRORS = (400, 404, 409, 503)


def _indexed(body: bytes, index: int) -> Response:
    return Response(
        body=body, headers=[("X-Weft-Index", str(index)), ("X-Consul-Index", str(index))]
    )


@route(
    "GET",
    "/v1/registry/services",
    summary="Services with instance counts by health",
    auth="read",
    errors=(400,),
    query=BLOCKING,
    ok=json_reply(
        "Services", {"type": "array", "items": ref("ServiceSummary")}, headers=INDEX_HEADERS
    ),
)
async def list_services(ctx: Context, request: Request) -> Response:
    ctx.reader(request)
    index = await ctx.block(request, lambda: ctx.mirror.index(CATALOG, HEALTH), (CATALOG, HEALTH))

    def render() -> list[dict[str, Any]]:
        out = []
        for name in sorted(ctx.mirror.instances):
            counts = {"passing": 0, "warning": 0, "critical": 0, "maintenance": 0}
            tag_set: dict[str, None] = {}
            for inst in ctx.mirror.instances[name].values():
                view = instance_view(ctx, inst, with_checks=False)
                counts[view["status"]] += 1
                tag_set.update(dict.fromkeys(inst.tags))
            out.append(
                {
                    "name": name,
                    "instances": len(ctx.mirror.instances[name]),
                    **counts,
                    "tags": sorted(tag_set),
                }
            )
        return out

    return _indexed(ctx.cached_json(request, index, render), index)


@route(
    "GET",
    "/v1/registry/services/{name}",
    summary="Instances of a service with their checks",
    auth="read",
    errors=(400,),
    path_params={"name": Param("name", description="The service's name")},
    query=(*BLOCKING, Param("passing", {"type": "boolean"}, "Only passing instances")),
    ok=json_reply("The service's instances", ref("Service"), headers=INDEX_HEADERS),
)
async def get_service(ctx: Context, request: Request) -> Response:
    ctx.reader(request)
    name = request.params["name"]
    topic = service_topic(name)
    index = await ctx.block(request, lambda: ctx.mirror.index(topic), (topic,))
    passing = request.flag("passing")

    def render() -> dict[str, Any]:
        instances = [
            instance_view(ctx, i)
            for i in sorted(ctx.mirror.instances.get(name, {}).values(), key=lambda i: i.key)
        ]
        if passing:
            instances = [i for i in instances if i["status"] == "passing"]
        return {"service": name, "instances": instances}

    return _indexed(ctx.cached_json(request, index, render, variant=(passing,)), index)


@route(
    "GET",
    "/v1/registry/instances",
    summary="Instances, filtered by node and/or source",
    auth="read",
    query=(
        Param("node", description="Only instances on this node"),
        Param("source", description="Only instances from this source (agent, api, k8s/...)"),
    ),
    ok=json_reply(
        "Instances", {"type": "array", "items": ref("Instance")}, headers=("X-Weft-Index",)
    ),
)
async def list_instances(ctx: Context, request: Request) -> Response:
    ctx.reader(request)
    node, source = request.arg("node"), request.arg("source")
    index = ctx.mirror.index(CATALOG, HEALTH)
    out = []
    for name in sorted(ctx.mirror.instances):
        for inst in sorted(ctx.mirror.instances[name].values(), key=lambda i: i.key):
            if (node and inst.node != node) or (source and inst.source != source):
                continue
            out.append(instance_view(ctx, inst))
    return Response.json(out, headers=[("X-Weft-Index", str(index))])


@route(
    "PUT",
    "/v1/registry/instances",
    summary="Register (or update) an instance",
    errors=_WRITE_ERRORS,
    body=Body(ref("InstanceSpec")),
    ok=json_reply("The instance as stored", ref("Instance")),
)
async def put_instance(ctx: Context, request: Request) -> Response:
    token = ctx.token(request)
    data = decode(request.json(), INSTANCE_SHAPE)
    reg = registration_from_native(data, ctx, token, request)
    ctx.write_instance(token, reg.instance)
    await check_registration(
        ctx.options.check_reach, reg.instance, reg.checks, native_fields(reg.checks)
    )
    await ctx.catalog.register(reg)
    inst = ctx.mirror.instance(reg.instance.service, reg.instance.node, reg.instance.id)
    return Response.json(instance_view(ctx, inst) if inst else {"service": reg.instance.service})


@route(
    "DELETE",
    "/v1/registry/instances/{service}/{node}/{id}",
    summary="Deregister an instance and its checks",
    errors=_WRITE_ERRORS,
    path_params={"service": Param("service"), "node": Param("node"), "id": Param("id")},
    ok=json_reply(
        "Deleted",
        {
            "type": "object",
            "required": ["deleted"],
            "properties": {"deleted": {"const": True}},
            "additionalProperties": False,
        },
    ),
)
async def delete_instance(ctx: Context, request: Request) -> Response:
    token = ctx.token(request)
    p = request.params
    inst = ctx.mirror.instance(p["service"], p["node"], p["id"])
    if inst is None:
        raise NotFound(f"no instance {p['id']!r} of service {p['service']!r} on node {p['node']!r}")
    ctx.write_instance(token, inst)
    await ctx.catalog.deregister(inst)
    return Response.json({"deleted": True})


@route(
    "POST",
    "/v1/registry/batch",
    summary="Apply many registrations and deregistrations in few etcd transactions",
    errors=_WRITE_ERRORS,
    body=Body(ref("Batch")),
    ok=json_reply("What was applied", ref("BatchResult")),
)
async def batch(ctx: Context, request: Request) -> Response:
    token = ctx.token(request)
    data = decode(request.json(), BATCH_SHAPE)
    upserts_raw, deletes_raw = data.get("upserts", []), data.get("deletes", [])
    if len(upserts_raw) + len(deletes_raw) > MAX_BATCH:
        raise InvalidInput(f"a batch holds at most {MAX_BATCH} entries", field="upserts")
    upserts = [
        registration_from_native(u, ctx, token, request, path=f"upserts[{i}]")
        for i, u in enumerate(upserts_raw)
    ]
    deletes = []
    for i, ref_ in enumerate(deletes_raw):
        inst = ctx.mirror.instance(
            ref_.get("service", ""), ref_.get("node", ""), ref_.get("id", "")
        )
        if inst is not None:
            deletes.append(inst)
        elif not all(ref_.get(k) for k in ("service", "node", "id")):
            raise InvalidInput(f"deletes[{i}]: needs service, node and id", field=f"deletes[{i}]")
    for i, reg in enumerate(upserts):
        ctx.write_instance(token, reg.instance)
        await check_registration(
            ctx.options.check_reach,
            reg.instance,
            reg.checks,
            native_fields(reg.checks, f"upserts[{i}]"),
        )
    for inst in deletes:
        ctx.write_instance(token, inst)
    transactions = await ctx.catalog.apply_batch(upserts, deletes)
    return Response.json(
        {"upserted": len(upserts), "deleted": len(deletes), "transactions": transactions}
    )


@route(
    "PUT",
    "/v1/registry/checks/{node}/{check_id}",
    summary="Report a check's status",
    errors=_WRITE_ERRORS,
    path_params={"node": Param("node"), "check_id": Param("check_id")},
    body=Body(ref("CheckUpdate")),
    ok=json_reply("The check as stored", ref("Check")),
)
async def put_check(ctx: Context, request: Request) -> Response:
    token = ctx.token(request)
    node, check_id = request.params["node"], request.params["check_id"]
    ctx.write_check(token, node, check_id)
    data = decode(request.json(), {"status": F("str"), "output": F("str")})
    if "status" not in data:
        raise InvalidInput("status: is required", field="status")
    check = await ctx.catalog.update_check(
        node, check_id, parse_status(data["status"], "status"), _output(data.get("output", ""))
    )
    return Response.json(check_view(check))


@route(
    "PUT",
    "/v1/registry/maintenance/{node}",
    summary="Put a node into or out of maintenance",
    errors=_WRITE_ERRORS,
    path_params={"node": Param("node")},
    body=Body(ref("MaintenanceSpec")),
    ok=json_reply(
        "The node's maintenance mode",
        {
            "type": "object",
            "required": ["node", "maintenance"],
            "properties": {"node": {"type": "string"}, "maintenance": {"type": "boolean"}},
            "additionalProperties": False,
        },
    ),
)
async def put_maintenance(ctx: Context, request: Request) -> Response:
    token = ctx.token(request)
    node = node_name(request.params["node"], "node")
    ctx.write_node(token, node, what="maintenance mode")
    data = decode(request.json(), {"enable": F("bool"), "reason": F("str")})
    if "enable" not in data:
        raise InvalidInput("enable: is required", field="enable")
    await ctx.catalog.set_maintenance(node, data["enable"], data.get("reason", ""))
    return Response.json({"node": node, "maintenance": data["enable"]})


@route(
    "GET",
    "/v1/registry/maintenance",
    summary="The nodes in maintenance, with their reasons",
    auth="read",
    ok=json_reply(
        "Maintenance records by node",
        {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["reason", "since"],
                "properties": {
                    "reason": {"type": "string"},
                    "since": {"type": "number", "description": "Unix time"},
                },
            },
        },
    ),
)
async def get_maintenance(ctx: Context, request: Request) -> Response:
    ctx.reader(request)
    return Response.json(ctx.mirror.maint)
