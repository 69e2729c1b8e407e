"""Consul's `/v1/health/...`: instances with their checks, and checks by state."""

from __future__ import annotations

from .. import _consul_views as views
from .._context import Context, consul_response
from .._endpoints import Area, Param, ref
from .._errors import InvalidInput
from .._mirror import HEALTH, service_topic
from ..web import Request, Response
from ._schemas import BLOCKING, SCHEMAS, TAG, index_json

AREA: Area[Context] = Area("consul", "consul-health", SCHEMAS)
route = AREA.route

_NAME = {"name": Param("name", description="The service's name")}
_STATES = ("any", "passing", "warning", "critical")
_CHECKS = {"type": "array", "items": ref("ConsulCheck")}


@route(
    "GET",
    "/v1/health/service/{name}",
    summary="The instances of a service with their node and checks",
    auth="read",
    errors=(400,),
    path_params=_NAME,
    query=(
        *BLOCKING,
        TAG,
        Param("passing", {"type": "boolean"}, "Only instances whose checks all pass"),
    ),
    ok=index_json("Instances", {"type": "array", "items": ref("ConsulHealthEntry")}),
)
async def health_service(ctx: Context, request: Request) -> Response:
    ctx.reader(request)
    name = request.params["name"]
    # `<s>-sidecar-proxy` is also the sidecars of `s`, as Consul registers them.
    base = views.sidecar_base(name)
    topics = (service_topic(name),) + ((service_topic(base),) if base else ())
    index = await ctx.block(request, lambda: ctx.mirror.index(*topics), topics)
    passing = request.flag("passing")
    tags = sorted(set(request.query.get("tag", [])))
    dc = ctx.options.datacenter

    def render() -> list[dict[str, object]]:
        out = views.health_service(ctx.mirror, name, passing=passing, tags=tags, datacenter=dc)
        if base:
            out += views.health_connect(ctx.mirror, base, passing=passing, tags=tags, datacenter=dc)
        return out

    body = ctx.cached_json(request, index, render, variant=(passing, *tags))
    return consul_response(body, index)


@route(
    "GET",
    "/v1/health/checks/{name}",
    summary="The checks of a service's instances",
    auth="read",
    errors=(400,),
    path_params=_NAME,
    query=BLOCKING,
    ok=index_json("Checks", _CHECKS),
)
async def health_checks(ctx: Context, request: Request) -> Response:
    ctx.reader(request)
    name = request.params["name"]
    topic = service_topic(name)
    index = await ctx.block(request, lambda: ctx.mirror.index(topic), (topic,))

    def render() -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        for inst in ctx.mirror.instances.get(name, {}).values():
            out.extend(c for c in views.instance_checks(ctx.mirror, inst) if c["ServiceID"])
        return out

    return consul_response(ctx.cached_json(request, index, render), index)


@route(
    "GET",
    "/v1/health/state/{state}",
    summary="Every check in a state",
    auth="read",
    errors=(400,),
    path_params={"state": Param("state", {"enum": list(_STATES)})},
    query=BLOCKING,
    ok=index_json("Checks", _CHECKS),
)
async def health_state(ctx: Context, request: Request) -> Response:
    ctx.reader(request)
    state = request.params["state"]
    if state not in _STATES:
        raise InvalidInput(
            f"state: {state!r} is not one of any, passing, warning, critical", field="state"
        )
    index = await ctx.block(request, lambda: ctx.mirror.index(HEALTH), (HEALTH,))
    body = ctx.cached_json(request, index, lambda: views.health_state(ctx.mirror, state))
    return consul_response(body, index)
