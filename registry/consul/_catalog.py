"""Consul's `/v1/catalog/...`: services, their instances, nodes (blocking queries)."""

from __future__ import annotations

import json

from .. import _consul_views as views
from .._consul_query import record_filter
from .._context import Context, consul_response
from .._endpoints import Area, Param, ref
from .._mirror import CATALOG, service_topic
from ..web import Request, Response
from ._schemas import BLOCKING, SCHEMAS, STRINGS, TAG, index_json

AREA: Area[Context] = Area("consul", "consul-catalog", SCHEMAS)
route = AREA.route

_NAME = {"name": Param("name", description="The service's name")}


@route(
    "GET",
    "/v1/catalog/services",
    summary="Every service with the union of its instances' tags",
    auth="read",
    errors=(400,),
    query=BLOCKING,
    ok=index_json("Tags by service", {"type": "object", "additionalProperties": STRINGS}),
)
async def catalog_services(ctx: Context, request: Request) -> Response:
    ctx.reader(request)
    index = await ctx.block(request, lambda: ctx.mirror.index(CATALOG), (CATALOG,))
    keep = record_filter(request, "/v1/catalog/services")
    if keep is None:
        body = ctx.cached_json(request, index, lambda: views.catalog_services(ctx.mirror))
        return consul_response(body, index)
    # As Consul: the filter picks instances, the answer lists the services of those picked,
    # each with the tags of its picked instances.
    dc = ctx.options.datacenter
    out: dict[str, list[str]] = {}
    for name in sorted(ctx.mirror.instances):
        picked = [
            r for r in views.catalog_service(ctx.mirror, name, tags=[], datacenter=dc) if keep(r)
        ]
        if picked:
            out[name] = sorted({tag for r in picked for tag in r["ServiceTags"]})
    return consul_response(json.dumps(out).encode(), index)


@route(
    "GET",
    "/v1/catalog/service/{name}",
    summary="The instances of a service (whatever their health)",
    auth="read",
    errors=(400,),
    path_params=_NAME,
    query=(*BLOCKING, TAG),
    ok=index_json("Instances", {"type": "array", "items": ref("ConsulCatalogService")}),
)
async def catalog_service(ctx: Context, request: Request) -> Response:
    ctx.reader(request)
    name = request.params["name"]
    base = views.sidecar_base(name)  # `<s>-sidecar-proxy`: also the sidecars of `s`
    topics = (service_topic(name),) + ((service_topic(base),) if base else ())
    index = await ctx.block(request, lambda: ctx.mirror.index(*topics), topics)
    tags = sorted(set(request.query.get("tag", [])))
    dc = ctx.options.datacenter

    def render() -> list[dict[str, object]]:
        out = views.catalog_service(ctx.mirror, name, tags=tags, datacenter=dc)
        if base:
            out += views.catalog_connect(ctx.mirror, base, tags=tags, datacenter=dc)
        return out

    body = ctx.cached_json(request, index, render, variant=tuple(tags))
    return consul_response(body, index)


@route(
    "GET",
    "/v1/catalog/nodes",
    summary="Every node that has instances",
    auth="read",
    errors=(400,),
    query=BLOCKING,
    ok=index_json("Nodes", {"type": "array", "items": ref("ConsulNode")}),
)
async def catalog_nodes(ctx: Context, request: Request) -> Response:
    ctx.reader(request)
    index = await ctx.block(request, lambda: ctx.mirror.index(CATALOG), (CATALOG,))
    dc = ctx.options.datacenter
    body = ctx.cached_json(request, index, lambda: views.catalog_nodes(ctx.mirror, dc))
    return consul_response(body, index)


@route(
    "GET",
    "/v1/catalog/node/{node}",
    summary="A node and its services (null for an unknown node, as Consul answers)",
    auth="read",
    errors=(400,),
    path_params={"node": Param("node", description="The node's name")},
    query=BLOCKING,
    ok=index_json(
        "The node and its services by ID",
        {
            "oneOf": [
                {"type": "null"},
                {
                    "type": "object",
                    "required": ["Node", "Services"],
                    "additionalProperties": False,
                    "properties": {
                        "Node": ref("ConsulNode"),
                        "Services": {
                            "type": "object",
                            "additionalProperties": ref("ConsulService"),
                        },
                    },
                },
            ]
        },
    ),
)
async def catalog_node(ctx: Context, request: Request) -> Response:
    ctx.reader(request)
    node = request.params["node"]
    index = await ctx.block(request, lambda: ctx.mirror.index(CATALOG), (CATALOG,))
    if node not in ctx.mirror.by_node and node not in ctx.mirror.nodes:
        return consul_response(b"null", index)  # a declared node with no services is a node
    dc = ctx.options.datacenter
    services = views.agent_services(ctx.mirror, node, dc)
    keep = record_filter(request, "/v1/catalog/node/{node}")
    if keep is not None:
        services = {sid: svc for sid, svc in services.items() if keep(svc)}
    body = {"Node": views.node_json(ctx.mirror, node, dc), "Services": services}
    return consul_response(json.dumps(body).encode(), index)
