"""Consul's `/v1/agent/check/register|deregister`, `/v1/agent/service/maintenance/<id>` and
`/v1/acl/token/self`.

Weft keeps every check with the instance it watches, so a check registered on its own must
name its `ServiceID` (Consul's node-level checks have no place here; the error says so).
"""

from __future__ import annotations

import datetime
from typing import Any

from .._acl import Role, Token
from .._catalog import Registration
from .._check_reach import check_registration
from .._consul_input import CHECK_SHAPE, registration_from_consul
from .._context import Context
from .._decode import decode
from .._endpoints import Area, Body, Param, json_reply, ref
from .._errors import Forbidden, InvalidInput, NotFound
from .._model import Check, Status
from ..etcd import Delete
from ..web import Request, Response
from ._schemas import EMPTY, SCHEMAS, STR

AREA: Area[Context] = Area("consul", "consul-check", SCHEMAS)
route = AREA.route
_WRITE_ERRORS = (400, 404, 409, 503)
_CHECK = {
    "type": "object",
    "description": (
        "Consul's check definition (Name or CheckID, ServiceID, and one of TTL, HTTP, TCP or "
        "Args with Interval); keys are matched without regard to case."
    ),
    "required": ["ServiceID"],
    "properties": {"Name": STR, "CheckID": STR, "ID": STR, "ServiceID": STR},
}

SERVICE_MAINT_PREFIX = "_service_maintenance:"


@route(
    "PUT",
    "/v1/agent/check/register",
    summary="Add a check to a service instance on this node",
    errors=_WRITE_ERRORS,
    body=Body(_CHECK),
    ok=EMPTY,
)
async def agent_check_register(ctx: Context, request: Request) -> Response:
    token = ctx.token(request)
    node = ctx.node_of(token)
    raw = request.json()
    spec = decode(raw, CHECK_SHAPE, fold_case=True)
    service_id = spec.get("ServiceID")
    if not service_id:
        raise InvalidInput(
            "ServiceID: is required; Weft keeps a check with the service instance it watches "
            "(node-level checks are not supported)",
            field="ServiceID",
        )
    inst = ctx.mirror.find_instance(node, service_id)
    if inst is None:
        raise NotFound(f"ServiceID: no service {service_id!r} on node {node!r}", field="ServiceID")
    ctx.write_instance(token, inst)
    if not spec.get("Name") and not spec.get("CheckID") and not spec.get("ID"):
        raise InvalidInput("Name: is required", field="Name")
    body: dict[str, Any] = dict(raw)
    if not any(k.lower() in ("checkid", "id") for k in body):
        body["CheckID"] = spec["Name"]  # Consul's default check ID is its name
    reg = registration_from_consul(
        {"Name": inst.service, "ID": inst.id, "Checks": [body]},
        node=node,
        node_address=ctx.mirror.node_address(node),
        rules=ctx.options.check_rules,
        runner=_runner(ctx, token),
    )
    if not reg.checks:
        raise InvalidInput("give the check's kind: TTL, HTTP, TCP or Args", field="TTL")
    await check_registration(
        ctx.options.check_reach, inst, reg.checks, [f"{c.type.upper()}" for c in reg.checks]
    )
    await ctx.catalog.register(
        Registration(instance=inst, checks=reg.checks, lease=inst.lease), replace_checks=False
    )
    return Response(status=200, body=b"", content_type="text/plain")


def _runner(ctx: Context, token: Token | None) -> str:
    if token is not None and token.role is Role.AGENT:
        return "agent"
    if token is not None and token.role is Role.ADAPTER:
        return "adapter"
    return "server"


@route(
    "PUT",
    "/v1/agent/check/deregister/{check_id}",
    summary="Remove a check from this node",
    errors=_WRITE_ERRORS,
    path_params={"check_id": Param("check_id", description="e.g. service:web-1")},
    ok=EMPTY,
)
async def agent_check_deregister(ctx: Context, request: Request) -> Response:
    token = ctx.token(request)
    node = ctx.node_of(token)
    check_id = request.params["check_id"]
    check = ctx.mirror.find_check(node, check_id)
    if check is None:
        raise NotFound(f"Unknown check ID {check_id!r} on node {node!r}", field="check_id")
    inst = ctx.mirror.instance(check.service, node, check.instance)
    if inst is not None:
        ctx.write_instance(token, inst)
    else:
        ctx.write_node(token, node, what=f"check {check_id!r}")
    await ctx.catalog.commit(
        [Delete(ctx.keys.check(check.service, node, check.instance, check.id))]
    )
    return Response(status=200, body=b"", content_type="text/plain")


@route(
    "PUT",
    "/v1/agent/service/maintenance/{service_id}",
    summary="Put one service instance of this node into or out of maintenance",
    errors=_WRITE_ERRORS,
    path_params={"service_id": Param("service_id", description="The instance's ID")},
    query=(
        Param(
            "enable",
            {"enum": ["true", "false", "True", "False", "1", "0", "t", "f"]},
            required=True,
        ),
        Param("reason", description="Shown as the maintenance check's Notes"),
    ),
    ok=EMPTY,
)
async def service_maintenance(ctx: Context, request: Request) -> Response:
    """Consul's per-service maintenance: a critical `_service_maintenance:<id>` check takes
    the instance out of `?passing` and DNS until maintenance is turned off."""
    token = ctx.token(request)
    node = ctx.node_of(token)
    service_id = request.params["service_id"]
    inst = ctx.mirror.find_instance(node, service_id)
    if inst is None:
        raise NotFound(f"Unknown service ID {service_id!r} on node {node!r}", field="service_id")
    ctx.write_instance(token, inst)
    # Go's strconv.ParseBool, as Consul parses it (py-consul sends "True").
    enable = (request.arg("enable") or "").lower()
    if enable not in ("true", "false", "1", "0", "t", "f"):
        raise InvalidInput("enable: must be true or false", field="enable")
    check_id = SERVICE_MAINT_PREFIX + inst.id
    if enable in ("true", "1", "t"):
        reason = request.arg("reason") or "Maintenance mode is enabled for this service"
        check = Check(
            id=check_id,
            node=node,
            service=inst.service,
            instance=inst.id,
            name="Service Maintenance Mode",
            status=Status.CRITICAL,
            notes=reason,
            runner="adapter",  # its state is the operator's word: never probed or expired
        )
        await ctx.catalog.register(
            Registration(instance=inst, checks=(check,), lease=inst.lease), replace_checks=False
        )
    else:
        await ctx.catalog.commit([Delete(ctx.keys.check(inst.service, node, inst.id, check_id))])
    return Response(status=200, body=b"", content_type="text/plain")


@route(
    "GET",
    "/v1/acl/token/self",
    summary="The token sent, as Consul's ACL token (its role as a policy)",
    auth="read",
    ok=json_reply("The token", ref("ConsulTokenSelf")),
)
async def acl_token_self(ctx: Context, request: Request) -> Response:
    token = ctx.token(request)
    if token is None:
        raise Forbidden("ACL not found: send the token to describe (X-Consul-Token)")
    body = {
        "AccessorID": token.accessor,
        "SecretID": request.headers.get("x-consul-token") or "",
        "Description": token.description,
        "Policies": [{"ID": f"weft-{token.role}", "Name": f"weft-{token.role}"}],
        "NodeIdentities": [{"NodeName": token.node, "Datacenter": ctx.options.datacenter}]
        if token.node
        else [],
        # Consul's service identities: the services an agent token's service set names.
        "ServiceIdentities": [{"ServiceName": name} for name in token.services or ()],
        "Local": False,
        "CreateTime": _rfc3339(token.created_at),
        "Hash": token.secret_hash[:44],
        "CreateIndex": 0,
        "ModifyIndex": 0,
    }
    return Response.json(body)


def _rfc3339(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
    return moment.isoformat().replace("+00:00", "Z")
