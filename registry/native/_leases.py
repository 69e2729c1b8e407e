"""Native `/v1/registry/leases`: instances on a lease leave when their owner stops renewing."""

from __future__ import annotations

from .._acl import Role
from .._context import Context
from .._decode import F, decode
from .._endpoints import Area, Body, Param, json_reply, ref
from .._errors import Forbidden, NotFound
from ..web import Request, Response
from ._input import parse_lease
from ._schemas import SCHEMAS

AREA: Area[Context] = Area("native", "leases", SCHEMAS)
route = AREA.route

_LEASE = {"lease": Param("lease", description="Hex lease ID from POST /v1/registry/leases")}


def _owned_lease(ctx: Context, request: Request) -> int:
    token = ctx.token(request)
    lease = parse_lease(request.params["lease"], "lease")
    owner = ctx.catalog.lease_owner(lease)
    if owner is None:
        raise NotFound(f"lease {request.params['lease']} has expired or was revoked")
    if token is None or (token.role is not Role.OPERATOR and owner.get("owner") != token.accessor):
        raise Forbidden(f"lease {request.params['lease']} belongs to another token")
    return lease


@route(
    "POST",
    "/v1/registry/leases",
    summary="Grant a lease (operator, agent or adapter)",
    errors=(503,),
    body=Body(ref("LeaseSpec")),
    ok=json_reply("The lease", ref("Lease")),
)
async def grant(ctx: Context, request: Request) -> Response:
    token = ctx.token(request)
    if token is None or token.role is Role.READ:
        raise Forbidden("granting a lease needs an operator, agent or adapter token")
    data = decode(request.json(), {"ttl": F("int")})
    lease = await ctx.catalog.grant_lease(data.get("ttl", 10), token)
    return Response.json({"id": f"{lease:x}", "ttl": data.get("ttl", 10)})


@route(
    "PUT",
    "/v1/registry/leases/{lease}",
    summary="Keep a lease alive",
    errors=(400, 404, 503),
    path_params=_LEASE,
    ok=json_reply("The lease", ref("Lease")),
)
async def keepalive(ctx: Context, request: Request) -> Response:
    lease = _owned_lease(ctx, request)
    ttl = await ctx.catalog.keepalive(lease)
    return Response.json({"id": f"{lease:x}", "ttl": ttl})


@route(
    "DELETE",
    "/v1/registry/leases/{lease}",
    summary="Revoke a lease: its instances leave at once",
    errors=(400, 404, 503),
    path_params=_LEASE,
    ok=json_reply(
        "Revoked",
        {
            "type": "object",
            "required": ["id", "revoked"],
            "properties": {"id": {"type": "string"}, "revoked": {"const": True}},
            "additionalProperties": False,
        },
    ),
)
async def revoke(ctx: Context, request: Request) -> Response:
    lease = _owned_lease(ctx, request)
    await ctx.catalog.revoke(lease)
    return Response.json({"id": f"{lease:x}", "revoked": True})
