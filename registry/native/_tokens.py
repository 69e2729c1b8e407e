"""Native `/v1/tokens`: operator, agent (node-bound), adapter (source-bound) and read tokens."""

from __future__ import annotations

from .._context import Context
from .._decode import F, decode
from .._endpoints import Area, Body, Param, json_reply, ref
from .._errors import Forbidden, InvalidInput
from .._validate import node_name, source, text
from ..web import Request, Response
from ._schemas import SCHEMAS

AREA: Area[Context] = Area("native", "tokens", SCHEMAS)
route = AREA.route

TOKEN_SHAPE = {
    "role": F("str"),
    "node": F("str"),
    "source": F("str"),
    "description": F("str"),
    "key_prefix": F("strmap"),
    "key": F("strmap"),
}


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
    )
    return Response.json({**token.public(), "secret": secret}, status=200)


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
