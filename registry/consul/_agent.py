"""Consul's `/v1/agent/...`: the "agent" is the token's node (agent tokens) or the server's
`node_name`, so Consul clients that register "with their local agent" work against a server.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import weft

from .. import _consul_views as views
from .._check_reach import check_registration, consul_fields
from .._consul_input import registration_from_consul
from .._context import Context, consul_response
from .._endpoints import Area, Body, Handler, Param, json_reply, ref
from .._errors import InvalidInput, NotFound
from .._mirror import CATALOG, HEALTH
from .._model import Status
from ..web import Request, Response
from ._schemas import EMPTY, SCHEMAS, STR, index_json

AREA: Area[Context] = Area("consul", "consul-agent", SCHEMAS)
route = AREA.route

_SERVICE_ID = {"service_id": Param("service_id", description="The instance's ID on this node")}
_CHECK_ID = {"check_id": Param("check_id", description="e.g. service:web-1")}
_NOTE = Param("note", description="Becomes the check's Output")
_WRITE_ERRORS = (400, 404, 409, 503)


def _done() -> Response:
    return Response(status=200, body=b"", content_type="text/plain")


@route(
    "GET",
    "/v1/agent/self",
    summary="The agent's configuration and member record",
    # Open to anyone, like /v1/status/*: it tells only the datacenter and node name, and
    # clients (py-consul's agent.self(), Prometheus) call it without a token. A token that is
    # sent must be known, though.
    auth="open",
    errors=(403,),
    ok=json_reply("The agent", ref("ConsulAgentSelf")),
)
async def agent_self(ctx: Context, request: Request) -> Response:
    dc = ctx.options.datacenter
    node = ctx.node_of(ctx.token(request))
    host, _, port = ctx.options.advertise.rpartition(":")
    body = {
        "Config": {
            "Datacenter": dc,
            "NodeName": node,
            "NodeID": views.node_id(node),
            "Server": True,
            "Version": f"1.17.0+weft{weft.__version__}",
            "Revision": "weft",
            "PrimaryDatacenter": dc,
        },
        "Member": {
            "Name": node,
            "Addr": host,
            "Port": int(port or 0),
            "Tags": {"dc": dc, "role": "consul"},
            "Status": 1,
        },
        "Meta": {},
        "DebugConfig": {},
        "Coord": None,
        "xDS": None,
    }
    return Response.json(body)


@route(
    "GET",
    "/v1/agent/services",
    summary="The services registered on this agent's node, by ID",
    auth="read",
    ok=index_json(
        "Services by ID", {"type": "object", "additionalProperties": ref("ConsulService")}
    ),
)
async def agent_services(ctx: Context, request: Request) -> Response:
    node = ctx.node_of(ctx.reader(request))
    body = views.agent_services(ctx.mirror, node, ctx.options.datacenter)
    return consul_response(json.dumps(body).encode(), ctx.mirror.index(CATALOG))


@route(
    "GET",
    "/v1/agent/service/{service_id}",
    summary="One service registered on this agent's node",
    auth="read",
    errors=(404,),
    path_params=_SERVICE_ID,
    ok=index_json("The service", ref("ConsulService")),
)
async def agent_service(ctx: Context, request: Request) -> Response:
    node = ctx.node_of(ctx.reader(request))
    inst = ctx.mirror.find_instance(node, request.params["service_id"])
    if inst is None:
        raise NotFound(f"unknown service ID: {request.params['service_id']}")
    body = views.service_json(inst)
    body["Datacenter"] = ctx.options.datacenter
    return consul_response(json.dumps(body).encode(), ctx.mirror.index(CATALOG))


@route(
    "GET",
    "/v1/agent/checks",
    summary="The checks on this agent's node, by ID",
    auth="read",
    ok=index_json("Checks by ID", {"type": "object", "additionalProperties": ref("ConsulCheck")}),
)
async def agent_checks(ctx: Context, request: Request) -> Response:
    node = ctx.node_of(ctx.reader(request))
    return consul_response(
        json.dumps(views.agent_checks(ctx.mirror, node)).encode(), ctx.mirror.index(HEALTH)
    )


@route(
    "PUT",
    "/v1/agent/service/register",
    summary="Register (or update) a service instance with its checks",
    errors=_WRITE_ERRORS,
    query=(Param("replace-existing-checks", {"type": "boolean"}),),
    body=Body(ref("ConsulRegistration")),
    ok=EMPTY,
)
async def register(ctx: Context, request: Request) -> Response:
    token = ctx.token(request)
    node = ctx.node_of(token)
    reg = registration_from_consul(
        request.json(),
        node=node,
        node_address=request.peer,
        rules=ctx.options.check_rules,
        source=token.source if token is not None and token.source else "api",
        trust_domain=ctx.trust_domain(),
    )
    ctx.write_instance(token, reg.instance)
    await check_registration(
        ctx.options.check_reach, reg.instance, reg.checks, consul_fields(reg.checks)
    )
    await ctx.catalog.register(reg, replace_checks=request.flag("replace-existing-checks"))
    return _done()


@route(
    "PUT",
    "/v1/agent/service/deregister/{service_id}",
    summary="Deregister a service instance and its checks",
    errors=_WRITE_ERRORS,
    path_params=_SERVICE_ID,
    ok=EMPTY,
)
async def deregister(ctx: Context, request: Request) -> Response:
    token = ctx.token(request)
    node = ctx.node_of(token)
    inst = ctx.mirror.find_instance(node, request.params["service_id"])
    if inst is None:
        raise NotFound(f"Unknown service ID {request.params['service_id']!r} on node {node!r}")
    ctx.write_instance(token, inst)
    await ctx.catalog.deregister(inst)
    return _done()


async def _set_check(ctx: Context, request: Request, status: Status) -> Response:
    token = ctx.token(request)
    node = ctx.node_of(token)
    check_id = request.params["check_id"]
    ctx.write_check(token, node, check_id)
    output = request.arg("note")
    if output is None and request.body:
        body = request.json()
        if not isinstance(body, dict) or not isinstance(body.get("Output", ""), str):
            raise InvalidInput('body: expected {"Output": "..."}', field="Output")
        output = body.get("Output", "")
    await ctx.catalog.update_check(node, check_id, status, output or "")
    return _done()


def _check_route(verb: str, status: str) -> Callable[[Handler[Context]], Handler[Context]]:
    return route(
        "PUT",
        f"/v1/agent/check/{verb}/{{check_id}}",
        summary=f"Set a check {status} (and reset its TTL clock)",
        errors=_WRITE_ERRORS,
        path_params=_CHECK_ID,
        query=(_NOTE,),
        ok=EMPTY,
    )


@_check_route("pass", "passing")
async def check_pass(ctx: Context, request: Request) -> Response:
    return await _set_check(ctx, request, Status.PASSING)


@_check_route("warn", "warning")
async def check_warn(ctx: Context, request: Request) -> Response:
    return await _set_check(ctx, request, Status.WARNING)


@_check_route("fail", "critical")
async def check_fail(ctx: Context, request: Request) -> Response:
    return await _set_check(ctx, request, Status.CRITICAL)


@route(
    "PUT",
    "/v1/agent/check/update/{check_id}",
    summary="Set a check's status and output",
    errors=_WRITE_ERRORS,
    path_params=_CHECK_ID,
    body=Body(
        {
            "type": "object",
            "properties": {"Status": {"enum": ["passing", "warning", "critical"]}, "Output": STR},
        },
        required=False,
    ),
    ok=EMPTY,
)
async def check_update(ctx: Context, request: Request) -> Response:
    body = request.json() if request.body else {}
    try:
        if not isinstance(body, dict) or not isinstance(body.get("Output", ""), str):
            raise ValueError
        status = Status(str(body.get("Status", "")).lower())
        if status is Status.MAINTENANCE:
            raise ValueError
    except ValueError:
        raise InvalidInput(
            'body: expected {"Status": "passing|warning|critical", "Output": "..."}',
            field="Status",
        ) from None
    request.query.setdefault("note", [body.get("Output", "")])
    return await _set_check(ctx, request, status)


@route(
    "PUT",
    "/v1/agent/maintenance",
    summary="Put this agent's node into or out of maintenance",
    errors=_WRITE_ERRORS,
    query=(
        Param("enable", {"enum": ["true", "false"]}, required=True),
        Param("reason", description="Shown as the maintenance check's Notes"),
    ),
    ok=EMPTY,
)
async def maintenance(ctx: Context, request: Request) -> Response:
    token = ctx.token(request)
    node = ctx.node_of(token)
    ctx.write_node(token, node, what="maintenance mode")
    enable = request.arg("enable")
    if enable not in ("true", "false"):
        raise InvalidInput("enable: must be true or false", field="enable")
    await ctx.catalog.set_maintenance(node, enable == "true", request.arg("reason") or "")
    return _done()
