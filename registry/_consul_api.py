"""Consul's HTTP API, the subset that existing clients and tools rely on.

Routes are tagged "consul": errors are plain text, as Consul answers them.
"""

from __future__ import annotations

import functools
import json

import weft

from . import _consul_checks, _consul_nodes, _consul_sessions, _consul_txn
from . import _consul_views as views
from ._consul_input import registration_from_consul
from ._context import Context, consul_response
from ._errors import Forbidden, InvalidInput, NotFound
from ._mirror import CATALOG, HEALTH, kv_topic, service_topic
from ._model import Status
from .web import Request, Response, Router

TAGS = ("consul",)


def mount(router: Router, ctx: Context) -> None:
    def route(method: str, pattern: str):  # type: ignore[no-untyped-def]
        def add(handler):  # type: ignore[no-untyped-def]
            router.add(method, pattern, handler, tags=TAGS)
            return handler

        return add

    dc = ctx.options.datacenter
    for method, pattern, handler in (
        *_consul_sessions.ROUTES,
        *_consul_txn.ROUTES,
        *_consul_nodes.ROUTES,
        *_consul_checks.ROUTES,
    ):
        router.add(method, pattern, functools.partial(handler, ctx), tags=TAGS)

    # -- agent -------------------------------------------------------------------------------

    @route("GET", "/v1/agent/self")
    async def agent_self(request: Request) -> Response:
        # Open to anyone, like /v1/status/*: it tells only the datacenter and node name, and
        # clients (py-consul's agent.self(), Prometheus) call it without a token.
        token = ctx.token(request)
        node = ctx.node_of(token)
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

    @route("GET", "/v1/agent/services")
    async def agent_services(request: Request) -> Response:
        node = ctx.node_of(ctx.reader(request))
        index = ctx.mirror.index(CATALOG)
        return consul_response(
            json.dumps(views.agent_services(ctx.mirror, node, dc)).encode(), index
        )

    @route("GET", "/v1/agent/service/{service_id}")
    async def agent_service(request: Request) -> Response:
        node = ctx.node_of(ctx.reader(request))
        inst = ctx.mirror.find_instance(node, request.params["service_id"])
        if inst is None:
            raise NotFound(f"unknown service ID: {request.params['service_id']}")
        body = views.service_json(inst)
        body["Datacenter"] = dc
        return consul_response(json.dumps(body).encode(), ctx.mirror.index(CATALOG))

    @route("GET", "/v1/agent/checks")
    async def agent_checks(request: Request) -> Response:
        node = ctx.node_of(ctx.reader(request))
        return consul_response(
            json.dumps(views.agent_checks(ctx.mirror, node)).encode(), ctx.mirror.index(HEALTH)
        )

    @route("PUT", "/v1/agent/service/register")
    async def register(request: Request) -> Response:
        token = ctx.token(request)
        node = ctx.node_of(token)
        reg = registration_from_consul(
            request.json(),
            node=node,
            node_address=request.peer,
            rules=ctx.options.check_rules,
            source=token.source if token is not None and token.source else "api",
        )
        ctx.authorizer.write_instance(token, reg.instance)
        replace = request.flag("replace-existing-checks")
        await ctx.catalog.register(reg, replace_checks=replace)
        return Response(status=200, body=b"", content_type="text/plain")

    @route("PUT", "/v1/agent/service/deregister/{service_id}")
    async def deregister(request: Request) -> Response:
        token = ctx.token(request)
        node = ctx.node_of(token)
        inst = ctx.mirror.find_instance(node, request.params["service_id"])
        if inst is None:
            raise NotFound(f"Unknown service ID {request.params['service_id']!r} on node {node!r}")
        ctx.authorizer.write_instance(token, inst)
        await ctx.catalog.deregister(inst)
        return Response(status=200, body=b"", content_type="text/plain")

    async def set_check(request: Request, status: Status) -> Response:
        token = ctx.token(request)
        node = ctx.node_of(token)
        check_id = request.params["check_id"]
        ctx.authorizer.write_node(token, node, what=f"check {check_id!r}")
        output = request.arg("note")
        if output is None and request.body:
            try:
                output = str(json.loads(request.body).get("Output", ""))
            except (ValueError, AttributeError):
                raise InvalidInput('body: expected {"Output": "..."}') from None
        await ctx.catalog.update_check(node, check_id, status, output or "")
        return Response(status=200, body=b"", content_type="text/plain")

    @route("PUT", "/v1/agent/check/pass/{check_id}")
    async def check_pass(request: Request) -> Response:
        return await set_check(request, Status.PASSING)

    @route("PUT", "/v1/agent/check/warn/{check_id}")
    async def check_warn(request: Request) -> Response:
        return await set_check(request, Status.WARNING)

    @route("PUT", "/v1/agent/check/fail/{check_id}")
    async def check_fail(request: Request) -> Response:
        return await set_check(request, Status.CRITICAL)

    @route("PUT", "/v1/agent/check/update/{check_id}")
    async def check_update(request: Request) -> Response:
        try:
            body = json.loads(request.body or b"{}")
            status = Status(str(body.get("Status", "")).lower())
        except (ValueError, AttributeError):
            raise InvalidInput(
                'body: expected {"Status": "passing|warning|critical", "Output": "..."}'
            ) from None
        request.query.setdefault("note", [str(body.get("Output", ""))])
        return await set_check(request, status)

    @route("PUT", "/v1/agent/maintenance")
    async def maintenance(request: Request) -> Response:
        token = ctx.token(request)
        node = ctx.node_of(token)
        ctx.authorizer.write_node(token, node, what="maintenance mode")
        enable = request.arg("enable")
        if enable not in ("true", "false"):
            raise InvalidInput("enable: must be true or false", field="enable")
        await ctx.catalog.set_maintenance(node, enable == "true", request.arg("reason") or "")
        return Response(status=200, body=b"", content_type="text/plain")

    # -- catalog -----------------------------------------------------------------------------

    @route("GET", "/v1/catalog/services")
    async def catalog_services(request: Request) -> Response:
        ctx.reader(request)
        index = await ctx.block(request, lambda: ctx.mirror.index(CATALOG), (CATALOG,))
        body = ctx.cached_json(request, index, lambda: views.catalog_services(ctx.mirror))
        return consul_response(body, index)

    @route("GET", "/v1/catalog/service/{name}")
    async def catalog_service(request: Request) -> Response:
        ctx.reader(request)
        name = request.params["name"]
        topic = service_topic(name)
        index = await ctx.block(request, lambda: ctx.mirror.index(topic), (topic,))
        tags = request.query.get("tag", [])
        body = ctx.cached_json(
            request,
            index,
            lambda: views.catalog_service(ctx.mirror, name, tags=tags, datacenter=dc),
        )
        return consul_response(body, index)

    @route("GET", "/v1/catalog/nodes")
    async def catalog_nodes(request: Request) -> Response:
        ctx.reader(request)
        index = await ctx.block(request, lambda: ctx.mirror.index(CATALOG), (CATALOG,))
        body = ctx.cached_json(request, index, lambda: views.catalog_nodes(ctx.mirror, dc))
        return consul_response(body, index)

    @route("GET", "/v1/catalog/node/{node}")
    async def catalog_node(request: Request) -> Response:
        ctx.reader(request)
        node = request.params["node"]
        index = await ctx.block(request, lambda: ctx.mirror.index(CATALOG), (CATALOG,))
        if node not in ctx.mirror.by_node:
            return consul_response(b"null", index)
        body = {
            "Node": views.node_json(ctx.mirror, node, dc),
            "Services": views.agent_services(ctx.mirror, node, dc),
        }
        return consul_response(json.dumps(body).encode(), index)

    # -- health ------------------------------------------------------------------------------

    @route("GET", "/v1/health/service/{name}")
    async def health_service(request: Request) -> Response:
        ctx.reader(request)
        name = request.params["name"]
        topic = service_topic(name)
        index = await ctx.block(request, lambda: ctx.mirror.index(topic), (topic,))
        passing = request.flag("passing")
        tags = request.query.get("tag", [])
        body = ctx.cached_json(
            request,
            index,
            lambda: views.health_service(
                ctx.mirror, name, passing=passing, tags=tags, datacenter=dc
            ),
        )
        return consul_response(body, index)

    @route("GET", "/v1/health/checks/{name}")
    async def health_checks(request: Request) -> Response:
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

    @route("GET", "/v1/health/state/{state}")
    async def health_state(request: Request) -> Response:
        ctx.reader(request)
        state = request.params["state"]
        if state not in ("any", "passing", "warning", "critical"):
            raise InvalidInput(
                f"state: {state!r} is not one of any, passing, warning, critical", field="state"
            )
        index = await ctx.block(request, lambda: ctx.mirror.index(HEALTH), (HEALTH,))
        body = ctx.cached_json(request, index, lambda: views.health_state(ctx.mirror, state))
        return consul_response(body, index)

    # -- status ------------------------------------------------------------------------------

    @route("GET", "/v1/status/leader")
    async def status_leader(request: Request) -> Response:
        return Response.json(ctx.options.advertise)

    @route("GET", "/v1/status/peers")
    async def status_peers(request: Request) -> Response:
        return Response.json([ctx.options.advertise])

    # -- KV ----------------------------------------------------------------------------------

    def kv_entry(key: str) -> dict[str, object]:
        return _consul_sessions.kv_entry(ctx, key)

    @route("GET", "/v1/kv/{key:path}")
    async def kv_get(request: Request) -> Response:
        token = ctx.reader(request)
        key = request.params["key"]
        if not ctx.authorizer.read_kv(token, key) and not (
            request.flag("recurse") or request.query.get("keys") is not None
        ):
            raise Forbidden(f"this token's KV rules deny reading key {key!r}")
        recurse, keys_only = request.flag("recurse"), request.query.get("keys") is not None
        if recurse or keys_only:
            index = await ctx.block(
                request, lambda: ctx.mirror.kv_prefix_index(key), (), kv_prefix=key
            )
            # Keys a `deny` rule hides are left out of listings, as Consul's ACLs filter them.
            matching = sorted(
                k for k in ctx.mirror.kv if k.startswith(key) and ctx.authorizer.read_kv(token, k)
            )
            if not matching:
                return consul_response(b"", index, status=404, content_type="text/plain")
            if keys_only:
                separator = request.arg("separator") or ""
                listed: dict[str, None] = {}
                for k in matching:
                    if separator:
                        cut = k.find(separator, len(key))
                        k = k[: cut + len(separator)] if cut >= 0 else k
                    listed[k] = None
                return consul_response(json.dumps(list(listed)).encode(), index)
            return consul_response(json.dumps([kv_entry(k) for k in matching]).encode(), index)
        topic = kv_topic(key)
        index = await ctx.block(request, lambda: ctx.mirror.index(topic), (topic,))
        if key not in ctx.mirror.kv:
            return consul_response(b"", index, status=404, content_type="text/plain")
        if request.flag("raw"):
            return consul_response(
                ctx.mirror.kv[key].value, index, content_type="application/octet-stream"
            )
        return consul_response(json.dumps([kv_entry(key)]).encode(), index)

    def kv_writer(request: Request) -> None:
        recursive = request.method == "DELETE" and request.flag("recurse")
        ctx.kv_writer(ctx.token(request), request.params["key"], prefix=recursive)

    def int_arg(request: Request, name: str) -> int | None:
        raw = request.arg(name)
        if raw is None:
            return None
        try:
            value = int(raw)
            if value < 0:
                raise ValueError
            return value
        except ValueError:
            raise InvalidInput(
                f"{name}: {raw!r} is not a non-negative integer", field=name
            ) from None

    @route("PUT", "/v1/kv/{key:path}")
    async def kv_put(request: Request) -> Response:
        kv_writer(request)
        key = request.params["key"]
        if not key:
            raise InvalidInput("key: a KV key must not be empty", field="key")
        if len(key.encode()) > 1024:
            raise InvalidInput("key: at most 1024 bytes", field="key")
        ok = await _consul_sessions.kv_write(
            ctx, request, key, flags=int_arg(request, "flags") or 0, cas=int_arg(request, "cas")
        )
        return Response.json(ok)

    @route("DELETE", "/v1/kv/{key:path}")
    async def kv_delete(request: Request) -> Response:
        kv_writer(request)
        ok = await ctx.catalog.kv_delete(
            request.params["key"], recurse=request.flag("recurse"), cas=int_arg(request, "cas")
        )
        return Response.json(ok)
