"""Consul's node-level endpoints: `/v1/catalog/register|deregister` (a node with its address
and meta, optionally a service and its checks), `/v1/catalog/datacenters`,
`/v1/health/node/<node>` and `/v1/agent/members`."""

from __future__ import annotations

import json
from typing import Any

from .. import _consul_views as views
from .._consul_input import registration_from_consul
from .._context import Context, consul_response
from .._decode import F, decode
from .._endpoints import Area, Body, Param, json_reply, ref
from .._errors import InvalidInput
from .._mirror import CATALOG, HEALTH
from .._model import Check, Status, replace
from .._validate import address, meta, node_name
from ..etcd import Delete, Put
from ..web import Request, Response
from ._schemas import BLOCKING, BOOL, SCHEMAS, STR, STRINGS, STRMAP, index_json

AREA: Area[Context] = Area("consul", "consul-node", SCHEMAS)
route = AREA.route

_REGISTER = {
    "type": "object",
    "description": (
        "Consul's catalog registration: a node (Node, Address, NodeMeta) and optionally one "
        "Service with its Check/Checks; keys are matched without regard to case."
    ),
    "required": ["Node"],
    "properties": {
        "Node": STR,
        "Address": STR,
        "Datacenter": STR,
        "TaggedAddresses": STRMAP,
        "NodeMeta": STRMAP,
        "Service": {"type": "object"},
        "Check": {"type": "object"},
        "Checks": {"type": "array", "items": {"type": "object"}},
        "SkipNodeUpdate": BOOL,
    },
}
_DEREGISTER = {
    "type": "object",
    "description": "The node with everything on it, or one ServiceID or CheckID on it",
    "required": ["Node"],
    "properties": {"Node": STR, "ServiceID": STR, "CheckID": STR, "Datacenter": STR},
}

_HEALTH_CHECK: dict[str, F] = {
    "Node": F("str"),
    "CheckID": F("str"),
    "Name": F("str"),
    "Status": F("str"),
    "Notes": F("str"),
    "Output": F("str"),
    "ServiceID": F("str"),
    "ServiceName": F("any", ignored=True),
    "ServiceTags": F("any", ignored=True),
    "Type": F("any", ignored=True),
    "Definition": F("any", ignored=True),
    "Namespace": F("any", ignored=True),
    "Partition": F("any", ignored=True),
    "CreateIndex": F("any", ignored=True),
    "ModifyIndex": F("any", ignored=True),
}
CATALOG_REGISTER: dict[str, F] = {
    "ID": F("any", ignored=True),
    "Node": F("str"),
    "Address": F("str"),
    "Datacenter": F("str"),
    "TaggedAddresses": F("strmap"),
    "NodeMeta": F("strmap"),
    "Service": F("anymap"),
    "Check": F("obj", _HEALTH_CHECK),
    "Checks": F("objlist", _HEALTH_CHECK),
    "SkipNodeUpdate": F("bool"),
    "WriteRequest": F("any", ignored=True),  # py-consul sends the token here too
    "Namespace": F("any", ignored=True),
    "Partition": F("any", ignored=True),
    "Locality": F("any", ignored=True),
}
CATALOG_DEREGISTER: dict[str, F] = {
    "Node": F("str"),
    "ServiceID": F("str"),
    "CheckID": F("str"),
    "Datacenter": F("str"),
    "WriteRequest": F("any", ignored=True),
    "Namespace": F("any", ignored=True),
    "Partition": F("any", ignored=True),
}


def _check_status(raw: str, where: str) -> Status:
    try:
        status = Status((raw or "critical").lower())
    except ValueError:
        status = Status.MAINTENANCE
    if status is Status.MAINTENANCE:
        raise InvalidInput(
            f"{where}.Status: {raw!r} is not passing, warning or critical", field=f"{where}.Status"
        )
    return status


@route(
    "PUT",
    "/v1/catalog/register",
    summary="Register a node, and optionally a service with checks whose status it owns",
    errors=(400, 409, 503),
    query=(
        Param("node-meta", {"type": "array", "items": STR}, "key:value (as py-consul sends it)"),
    ),
    body=Body(_REGISTER),
    ok=json_reply("Always true", BOOL),
)
async def catalog_register(ctx: Context, request: Request) -> Response:
    """A registration straight into the catalog, as Consul's external services (ESM) do. Its
    checks carry a status the registrant owns: the server never runs or expires them."""
    token = ctx.token(request)
    data = decode(request.json(), CATALOG_REGISTER, fold_case=True)
    if not data.get("Node"):
        raise InvalidInput("Node: is required", field="Node")
    node = node_name(data["Node"], "Node")
    ctx.write_node(token, node, what=f"node {node!r}")
    node_address = address(data.get("Address", ""), "Address")
    if not node_address and not data.get("SkipNodeUpdate"):
        raise InvalidInput("Address: is required (the node's address)", field="Address")
    ops: list[Put | Delete] = []
    if not data.get("SkipNodeUpdate"):
        # py-consul sends a node's meta as ?node-meta=k:v on this call; take it from there too.
        given = dict(data.get("NodeMeta", {}))
        for raw in request.query.get("node-meta", []):
            key, _, value = raw.partition(":")
            given.setdefault(key, value)
        record = {
            "address": node_address,
            "meta": meta(given, "NodeMeta"),
            "tagged_addresses": data.get("TaggedAddresses", {}),
        }
        ops.append(Put(ctx.keys.node(node), json.dumps(record).encode()))
    specs = ([data["Check"]] if "Check" in data else []) + list(data.get("Checks", []))
    if "Service" in data:
        body = dict(data["Service"])
        if "Service" in body and "Name" not in body:
            body["Name"] = body.pop("Service")
        for ignored in ("CreateIndex", "ModifyIndex", "Datacenter", "ContentHash"):
            body.pop(ignored, None)
        reg = registration_from_consul(
            body,
            node=node,
            node_address=node_address or ctx.mirror.node_address(node),
            rules=ctx.options.check_rules,
            source=token.source if token is not None and token.source else "catalog",
        )
        ctx.write_instance(token, reg.instance)
        checks = list(reg.checks)
        for i, spec in enumerate(specs):
            where = "Check" if "Check" in data and i == 0 else f"Checks[{i}]"
            if spec.get("ServiceID", reg.instance.id) != reg.instance.id:
                raise InvalidInput(
                    f"{where}.ServiceID: must be the registered service {reg.instance.id!r}",
                    field=f"{where}.ServiceID",
                )
            check_id = spec.get("CheckID") or spec.get("Name") or f"service:{reg.instance.id}"
            checks.append(
                Check(
                    id=check_id,
                    node=node,
                    service=reg.instance.service,
                    instance=reg.instance.id,
                    name=spec.get("Name", check_id),
                    status=_check_status(spec.get("Status", ""), where),
                    notes=spec.get("Notes", ""),
                    output=spec.get("Output", ""),
                    runner="adapter",
                )
            )
        ops += ctx.catalog.registration_ops(replace(reg, checks=tuple(checks)))
    elif specs:
        raise InvalidInput(
            "Check: node-level checks are not supported; register them with the service "
            "they belong to (give Service)",
            field="Check",
        )
    if ops:
        await ctx.catalog.commit(ops)
    return Response.json(True)


@route(
    "PUT",
    "/v1/catalog/deregister",
    summary="Deregister a node (with everything on it), or one service or check of it",
    errors=(400, 409, 503),
    body=Body(_DEREGISTER),
    ok=json_reply("Always true", BOOL),
)
async def catalog_deregister(ctx: Context, request: Request) -> Response:
    token = ctx.token(request)
    data = decode(request.json(), CATALOG_DEREGISTER, fold_case=True)
    if not data.get("Node"):
        raise InvalidInput("Node: is required", field="Node")
    node = data["Node"]
    ctx.write_node(token, node, what=f"node {node!r}")
    ops: list[Put | Delete] = []
    if data.get("CheckID"):
        check = ctx.mirror.find_check(node, data["CheckID"])
        if check is not None:
            ops.append(Delete(ctx.keys.check(check.service, node, check.instance, check.id)))
    elif data.get("ServiceID"):
        inst = ctx.mirror.find_instance(node, data["ServiceID"])
        if inst is not None:
            ctx.write_instance(token, inst)
            ops += ctx.catalog.deregistration_ops(inst)
    else:  # the node itself, with everything on it (as Consul)
        instances = ctx.mirror.instances_on(node)
        for inst in instances:
            ctx.write_instance(token, inst)
        await ctx.catalog.apply_batch([], instances)
        ops += [Delete(ctx.keys.node(node)), Delete(ctx.keys.maint(node))]
    if ops:
        await ctx.catalog.commit(ops)
    return Response.json(True)


@route(
    "GET",
    "/v1/catalog/datacenters",
    summary="The datacenters known (this server's only)",
    auth="open",
    ok=json_reply("Datacenter names", STRINGS),
)
async def catalog_datacenters(ctx: Context, request: Request) -> Response:
    return Response.json([ctx.options.datacenter])


@route(
    "GET",
    "/v1/health/node/{node}",
    summary="The checks of every instance on a node (and its maintenance check)",
    auth="read",
    errors=(400,),
    path_params={"node": Param("node", description="The node's name")},
    query=BLOCKING,
    ok=index_json("Checks", {"type": "array", "items": ref("ConsulCheck")}),
)
async def health_node(ctx: Context, request: Request) -> Response:
    ctx.reader(request)
    node = request.params["node"]
    index = await ctx.block(request, lambda: ctx.mirror.index(HEALTH, CATALOG), (HEALTH, CATALOG))
    out: list[dict[str, Any]] = []
    maint = views.maintenance_check(ctx.mirror, node)
    if maint is not None:
        out.append(maint)
    for inst in sorted(ctx.mirror.instances_on(node), key=lambda i: i.id):
        for check in ctx.mirror.checks_of(inst.service, inst.node, inst.id).values():
            out.append(views.check_json(check, inst))
    return consul_response(json.dumps(out).encode(), index)


@route(
    "GET",
    "/v1/agent/members",
    summary="This server, then every node in the catalog (Weft has no gossip)",
    auth="read",
    ok=json_reply("Members", {"type": "array", "items": ref("ConsulMember")}),
)
async def agent_members(ctx: Context, request: Request) -> Response:
    """Consul's gossip members; Weft has no gossip, so: this server, then every node the
    catalog knows (alive while it is in the catalog)."""
    ctx.reader(request)
    dc = ctx.options.datacenter
    host, _, port = ctx.options.advertise.rpartition(":")
    members = [
        {
            "Name": ctx.options.node_name,
            "Addr": host,
            "Port": int(port or 0),
            "Tags": {"dc": dc, "role": "consul", "build": "weft"},
            "Status": 1,
        }
    ]
    for node in ctx.mirror.node_names():
        if node == ctx.options.node_name:
            continue
        members.append(
            {
                "Name": node,
                "Addr": ctx.mirror.node_address(node),
                "Port": 0,
                "Tags": {"dc": dc, "role": "node"},
                "Status": 1,
            }
        )
    return Response.json(members)
