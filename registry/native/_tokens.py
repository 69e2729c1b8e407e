"""Native `/v1/tokens`: operator, agent (node- and service-bound), adapter (source-bound) and
read tokens; `PATCH /v1/tokens/<accessor>` changes an agent token's service set."""

from __future__ import annotations

import dataclasses
import logging

from .._acl import Role, Token, check_service_rules
from .._context import Context
from .._decode import F, decode
from .._endpoints import Area, Body, Param, json_reply, ref
from .._errors import Forbidden, InvalidInput
from .._validate import node_name, source, text
from ..web import Request, Response
from ._schemas import SCHEMAS

log = logging.getLogger("weft.registry.tokens")

AREA: Area[Context] = Area("native", "tokens", SCHEMAS)
route = AREA.route

TOKEN_SHAPE = {
    "role": F("str"),
    "node": F("str"),
    "source": F("str"),
    "description": F("str"),
    "key_prefix": F("strmap"),
    "key": F("strmap"),
    "services": F("strlist"),
    "service_prefix": F("strlist"),
}
UPDATE_SHAPE = {"services": F("strlist"), "service_prefix": F("strlist")}


@route(
    "POST",
    "/v1/tokens",
    summary="Create a token (operator); its secret is shown only in this answer",
    errors=(503,),
    body=Body(ref("TokenSpec")),
    ok=json_reply("The token with its secret", ref("Token")),
)
async def create_token(ctx: Context, request: Request) -> Response:
    ctx.authorizer.operator(ctx.token(request), "creating tokens")
    data = decode(request.json(), TOKEN_SHAPE)
    if "role" not in data:
        raise InvalidInput("role: is required (operator, agent, adapter or read)", field="role")
    unscoped = "services" not in data and "service_prefix" not in data
    if data["role"] == "agent" and unscoped and ctx.authorizer.require_agent_services:
        raise InvalidInput(
            "services: this server requires agent tokens to name their services "
            "(require_agent_services); give `services` or `service_prefix`",
            field="services",
        )
    if data.get("node"):
        node_name(data["node"], "node")
    if data.get("source"):
        source(data["source"], "source")
    secret, token = await ctx.catalog.create_token(
        data["role"],
        node=data.get("node", ""),
        source=data.get("source", ""),
        description=text(data.get("description", ""), "description", limit=256),
        key_prefix=data.get("key_prefix"),
        key=data.get("key"),
        services=data.get("services"),
        service_prefix=data.get("service_prefix"),
    )
    body = {**token.public(), "secret": secret}
    if token.role is Role.AGENT and not token.scoped:
        body["warning"] = (
            "this agent token has no service set: it may act for any service on its node "
            "(deprecated); give `services` or `service_prefix`"
        )
    return Response.json(body, status=200)


@route(
    "GET",
    "/v1/tokens",
    summary="List tokens (operator); secrets are never shown",
    ok=json_reply("Tokens", {"type": "array", "items": ref("Token")}),
)
async def list_tokens(ctx: Context, request: Request) -> Response:
    ctx.authorizer.operator(ctx.token(request), "listing tokens")
    return Response.json([t.public() for t in ctx.catalog.tokens()])


@route(
    "GET",
    "/v1/tokens/self",
    summary="The calling token",
    ok=json_reply("The token", ref("Token")),
)
async def token_self(ctx: Context, request: Request) -> Response:
    token = ctx.token(request)
    if token is None:
        raise Forbidden("no token was sent")
    return Response.json(token.public())


@route(
    "PATCH",
    "/v1/tokens/{accessor}",
    summary="Set an agent token's service set (operator); the secret stays the same",
    errors=(400, 404, 503),
    path_params={"accessor": Param("accessor", description="The token's accessor ID")},
    body=Body(ref("TokenServices")),
    ok=json_reply("The updated token", ref("Token")),
)
async def update_token(ctx: Context, request: Request) -> Response:
    ctx.authorizer.operator(ctx.token(request), "updating tokens")
    data = decode(request.json(), UPDATE_SHAPE)
    if "services" not in data and "service_prefix" not in data:
        raise InvalidInput(
            "services: give `services` and/or `service_prefix` (the new service set)",
            field="services",
        )
    services, prefixes = check_service_rules(data.get("services"), data.get("service_prefix"))

    def scope(token: Token) -> Token:
        if token.role is not Role.AGENT:
            raise InvalidInput(
                f"services: token {token.accessor} is a {token.role} token; only agent tokens "
                "have a service set",
                field="services",
            )
        return dataclasses.replace(token, services=services, service_prefix=prefixes)

    token = await ctx.catalog.update_token(request.params["accessor"], scope)
    log.info(
        "token service set changed",
        extra={"kv": {"accessor": token.accessor, "services": token.service_listing()}},
    )
    return Response.json(token.public())


@route(
    "DELETE",
    "/v1/tokens/{accessor}",
    summary="Revoke a token (operator); the last operator token is refused (409)",
    errors=(404, 409, 503),
    path_params={"accessor": Param("accessor", description="The token's accessor ID")},
    ok=json_reply("The revoked token", ref("Token")),
)
async def revoke_token(ctx: Context, request: Request) -> Response:
    ctx.authorizer.operator(ctx.token(request), "revoking tokens")
    token = await ctx.catalog.revoke_token(request.params["accessor"])
    return Response.json({**token.public(), "revoked": True})
