"""Consul's Connect views of the catalog: `/v1/health/connect/<s>` and `/v1/catalog/connect/<s>`
answer the sidecars of a service (kind `connect-proxy`), as Consul's clients expect to find
them before dialling a service through the mesh."""

from __future__ import annotations

from .. import _consul_views as views
from .._context import Context, consul_response
from .._endpoints import Area, Param, ref
from .._mirror import service_topic
from ..web import Request, Response
from ._schemas import BLOCKING, SCHEMAS, TAG, index_json

AREA: Area[Context] = Area("consul", "consul-connect-catalog", SCHEMAS)
route = AREA.route

_NAME = {"name": Param("name", description="The destination service's name")}


@route(
    "GET",
    "/v1/health/connect/{name}",
    summary="The sidecars (connect-proxy instances) of a service, with their checks",
    auth="read",
    errors=(400,),
    path_params=_NAME,
    query=(
        *BLOCKING,
        TAG,
        Param("passing", {"type": "boolean"}, "Only sidecars whose checks all pass"),
    ),
    ok=index_json("Sidecars", {"type": "array", "items": ref("ConsulHealthEntry")}),
)
async def health_connect(ctx: Context, request: Request) -> Response:
    ctx.reader(request)
    name = request.params["name"]
    topic = service_topic(name)
    index = await ctx.block(request, lambda: ctx.mirror.index(topic), (topic,))
    passing = request.flag("passing")
    tags = sorted(set(request.query.get("tag", [])))
    dc = ctx.options.datacenter
    body = ctx.cached_json(
        request,
        index,
        lambda: views.health_connect(ctx.mirror, name, passing=passing, tags=tags, datacenter=dc),
        variant=(passing, *tags),
    )
    return consul_response(body, index)


@route(
    "GET",
    "/v1/catalog/connect/{name}",
    summary="The sidecars (connect-proxy instances) of a service, whatever their health",
    auth="read",
    errors=(400,),
    path_params=_NAME,
    query=(*BLOCKING, TAG),
    ok=index_json("Sidecars", {"type": "array", "items": ref("ConsulCatalogService")}),
)
async def catalog_connect(ctx: Context, request: Request) -> Response:
    ctx.reader(request)
    name = request.params["name"]
    topic = service_topic(name)
    index = await ctx.block(request, lambda: ctx.mirror.index(topic), (topic,))
    tags = sorted(set(request.query.get("tag", [])))
    dc = ctx.options.datacenter
    body = ctx.cached_json(
        request,
        index,
        lambda: views.catalog_connect(ctx.mirror, name, tags=tags, datacenter=dc),
        variant=tuple(tags),
    )
    return consul_response(body, index)
