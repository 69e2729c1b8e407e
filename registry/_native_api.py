"""Weft's native `/v1/registry/...` and `/v1/tokens` API (JSON errors, snake_case fields).

This is what the agent and the Kubernetes adapter use: instances on leases, batches, check
results pushed by the host, and tokens. The OpenAPI document describes it.
"""

from __future__ import annotations

from typing import Any

from ._acl import Role, Token
from ._catalog import Registration
from ._consul_views import maintenance_check
from ._context import Context
from ._decode import F, decode
from ._errors import Forbidden, InvalidInput, NotFound
from ._mirror import CATALOG, HEALTH, service_topic
from ._model import Check, Instance, Status, Weights, worst
from ._validate import (
    CHECK_SHAPE,
    address,
    build_check,
    instance_id,
    meta,
    node_name,
    port,
    protocol,
    service_name,
    tags,
    weights,
)
from .web import Request, Response, Router

INSTANCE_SHAPE: dict[str, F] = {
    "service": F("str"),
    "id": F("str"),
    "node": F("str"),
    "namespace": F("str"),
    "address": F("str"),
    "node_address": F("str"),
    "port": F("int"),
    "protocol": F("str"),
    "tags": F("strlist"),
    "meta": F("strmap"),
    "weights": F("obj", {"passing": F("int"), "warning": F("int")}),
    "sidecar_port": F("int"),
    "identity": F("str"),
    "source": F("str"),
    "kind": F("str"),
    "checks": F("objlist", CHECK_SHAPE),
    "lease": F("str"),
}

REF_SHAPE: dict[str, F] = {"service": F("str"), "node": F("str"), "id": F("str")}
BATCH_SHAPE: dict[str, F] = {
    "upserts": F("objlist", INSTANCE_SHAPE),
    "deletes": F("objlist", REF_SHAPE),
}
MAX_BATCH = 5000


def parse_lease(raw: str, field: str = "lease") -> int:
    try:
        value = int(raw, 16)
        if value <= 0:
            raise ValueError
        return value
    except ValueError:
        raise InvalidInput(
            f"{field}: {raw!r} is not a lease ID (hex, as returned by POST /v1/registry/leases)",
            field=field,
        ) from None


def registration_from_native(
    data: dict[str, Any], ctx: Context, token: Token | None, request: Request, *, path: str = ""
) -> Registration:
    def at(name: str) -> str:
        return f"{path}.{name}" if path else name

    for required in ("service", "port"):
        if required not in data:
            raise InvalidInput(f"{at(required)}: is required", field=at(required))
    name = service_name(data["service"], at("service"))
    default_node = (
        token.node if token is not None and token.role is Role.AGENT else (ctx.options.node_name)
    )
    node = node_name(data.get("node", default_node), at("node"))
    iid = instance_id(data.get("id", name), at("id"))
    if token is not None and token.role is Role.ADAPTER:
        default_source = token.source
    elif token is not None and token.role is Role.AGENT:
        default_source = "agent"
    else:
        default_source = "api"
    # Who owns a check's status: the host's agent, an adapter (which reports the status of its
    # source, e.g. Kubernetes readiness, and resends it on every change), or the server.
    if token is not None and token.role is Role.AGENT:
        runner = "agent"
    elif token is not None and token.role is Role.ADAPTER:
        runner = "adapter"
    else:
        runner = "server"
    passing, warning = weights(data.get("weights", {}), at("weights"))
    inst = Instance(
        service=name,
        id=iid,
        node=node,
        namespace=data.get("namespace", "default"),
        address=address(data.get("address", ""), at("address")),
        node_address=address(data.get("node_address", request.peer), at("node_address")),
        port=port(data["port"], at("port")),
        protocol=protocol(data.get("protocol", "http"), at("protocol")),
        tags=tags(data.get("tags", []), at("tags")),
        meta=meta(data.get("meta", {}), at("meta")),
        weights=Weights(passing, warning),
        sidecar_port=port(data.get("sidecar_port", 0), at("sidecar_port"), allow_zero=True),
        identity=data.get("identity", ""),
        source=data.get("source", default_source),
        kind=data.get("kind", ""),
    )
    if inst.namespace != "default":
        service_name(inst.namespace, at("namespace"))
    checks: list[Check] = []
    seen: set[str] = set()
    specs = data.get("checks", [])
    for i, spec in enumerate(specs):
        where = f"{at('checks')}[{i}]"
        check_id = spec.get("id") or (
            f"service:{iid}" if len(specs) == 1 else f"service:{iid}:{i + 1}"
        )
        if check_id in seen:
            raise InvalidInput(f"{where}.id: {check_id!r} is used twice", field=f"{where}.id")
        seen.add(check_id)
        checks.append(
            build_check(
                spec,
                field=where,
                check_id=check_id,
                node=node,
                service=name,
                instance=iid,
                runner=runner,
                rules=ctx.options.check_rules,
            )
        )
    lease = parse_lease(data["lease"], at("lease")) if data.get("lease") else 0
    if lease:
        owner = ctx.catalog.lease_owner(lease)
        if owner is None:
            raise NotFound(
                f"{at('lease')}: lease {data['lease']} does not exist (expired or "
                "revoked); grant a new one",
                field=at("lease"),
            )
        if (
            token is not None
            and token.role is not Role.OPERATOR
            and owner.get("owner") != (token.accessor)
        ):
            raise Forbidden(f"{at('lease')}: lease {data['lease']} belongs to another token")
    return Registration(instance=inst, checks=tuple(checks), lease=lease)


def check_view(check: Check) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": check.id,
        "name": check.name,
        "type": check.type,
        "status": str(check.status),
        "output": check.output,
        "notes": check.notes,
        "runner": check.runner,
        "status_since": check.status_since,
    }
    for name in ("ttl", "http", "tcp", "interval", "timeout", "deregister_critical_after"):
        value = getattr(check, name)
        if value:
            out[name] = value
    if check.args:
        out["args"] = list(check.args)
    return out


def instance_view(ctx: Context, inst: Instance, *, with_checks: bool = True) -> dict[str, Any]:
    checks = ctx.mirror.checks_of(inst.service, inst.node, inst.id)
    in_maint = inst.node in ctx.mirror.maint
    statuses = [c.status for c in checks.values()]
    if in_maint:
        statuses.append(Status.MAINTENANCE)
    out: dict[str, Any] = {
        "service": inst.service,
        "id": inst.id,
        "node": inst.node,
        "namespace": inst.namespace,
        "address": inst.address or inst.node_address,
        "node_address": inst.node_address,
        "port": inst.port,
        "protocol": inst.protocol,
        "tags": list(inst.tags),
        "meta": dict(inst.meta),
        "weights": {"passing": inst.weights.passing, "warning": inst.weights.warning},
        "sidecar_port": inst.sidecar_port,
        "identity": inst.identity,
        "source": inst.source,
        "kind": inst.kind,
        "lease": f"{inst.lease:x}" if inst.lease else None,
        "create_index": inst.create_index,
        "modify_index": inst.modify_index,
        "status": str(worst(statuses)),
        "maintenance": in_maint,
    }
    if with_checks:
        out["checks"] = [check_view(c) for c in checks.values()]
        maint = maintenance_check(ctx.mirror, inst.node)
        if maint is not None:
            out["maintenance_reason"] = maint["Notes"]
    return out


def mount(router: Router, ctx: Context) -> None:
    def route(method: str, pattern: str):  # type: ignore[no-untyped-def]
        def add(handler):  # type: ignore[no-untyped-def]
            router.add(method, pattern, handler, tags=("native",))
            return handler

        return add

    @route("GET", "/v1/registry/services")
    async def list_services(request: Request) -> Response:
        ctx.reader(request)
        index = await ctx.block(
            request, lambda: ctx.mirror.index(CATALOG, HEALTH), (CATALOG, HEALTH)
        )

        def render() -> list[dict[str, Any]]:
            out = []
            for name in sorted(ctx.mirror.instances):
                counts = {"passing": 0, "warning": 0, "critical": 0, "maintenance": 0}
                tag_set: dict[str, None] = {}
                for inst in ctx.mirror.instances[name].values():
                    view = instance_view(ctx, inst, with_checks=False)
                    counts[view["status"]] += 1
                    tag_set.update(dict.fromkeys(inst.tags))
                out.append(
                    {
                        "name": name,
                        "instances": len(ctx.mirror.instances[name]),
                        **counts,
                        "tags": sorted(tag_set),
                    }
                )
            return out

        body = ctx.cached_json(request, index, render)
        return Response(
            body=body, headers=[("X-Weft-Index", str(index)), ("X-Consul-Index", str(index))]
        )

    @route("GET", "/v1/registry/services/{name}")
    async def get_service(request: Request) -> Response:
        ctx.reader(request)
        name = request.params["name"]
        topic = service_topic(name)
        index = await ctx.block(request, lambda: ctx.mirror.index(topic), (topic,))
        passing = request.flag("passing")

        def render() -> dict[str, Any]:
            instances = [
                instance_view(ctx, i)
                for i in sorted(ctx.mirror.instances.get(name, {}).values(), key=lambda i: i.key)
            ]
            if passing:
                instances = [i for i in instances if i["status"] == "passing"]
            return {"service": name, "instances": instances}

        body = ctx.cached_json(request, index, render)
        return Response(
            body=body, headers=[("X-Weft-Index", str(index)), ("X-Consul-Index", str(index))]
        )

    @route("GET", "/v1/registry/instances")
    async def list_instances(request: Request) -> Response:
        ctx.reader(request)
        node, source = request.arg("node"), request.arg("source")
        index = ctx.mirror.index(CATALOG, HEALTH)
        out = []
        for name in sorted(ctx.mirror.instances):
            for inst in sorted(ctx.mirror.instances[name].values(), key=lambda i: i.key):
                if (node and inst.node != node) or (source and inst.source != source):
                    continue
                out.append(instance_view(ctx, inst))
        return Response.json(out, headers=[("X-Weft-Index", str(index))])

    @route("PUT", "/v1/registry/instances")
    async def put_instance(request: Request) -> Response:
        token = ctx.token(request)
        data = decode(request.json(), INSTANCE_SHAPE)
        reg = registration_from_native(data, ctx, token, request)
        ctx.authorizer.write_instance(token, reg.instance)
        await ctx.catalog.register(reg)
        inst = ctx.mirror.instance(reg.instance.service, reg.instance.node, reg.instance.id)
        return Response.json(
            instance_view(ctx, inst) if inst else {"service": reg.instance.service}
        )

    @route("DELETE", "/v1/registry/instances/{service}/{node}/{id}")
    async def delete_instance(request: Request) -> Response:
        token = ctx.token(request)
        p = request.params
        inst = ctx.mirror.instance(p["service"], p["node"], p["id"])
        if inst is None:
            raise NotFound(
                f"no instance {p['id']!r} of service {p['service']!r} on node {p['node']!r}"
            )
        ctx.authorizer.write_instance(token, inst)
        await ctx.catalog.deregister(inst)
        return Response.json({"deleted": True})

    @route("POST", "/v1/registry/batch")
    async def batch(request: Request) -> Response:
        token = ctx.token(request)
        data = decode(request.json(), BATCH_SHAPE)
        upserts_raw, deletes_raw = data.get("upserts", []), data.get("deletes", [])
        if len(upserts_raw) + len(deletes_raw) > MAX_BATCH:
            raise InvalidInput(f"a batch holds at most {MAX_BATCH} entries", field="upserts")
        upserts = [
            registration_from_native(u, ctx, token, request, path=f"upserts[{i}]")
            for i, u in enumerate(upserts_raw)
        ]
        deletes = []
        for i, ref in enumerate(deletes_raw):
            inst = ctx.mirror.instance(
                ref.get("service", ""), ref.get("node", ""), ref.get("id", "")
            )
            if inst is not None:
                deletes.append(inst)
            elif not all(ref.get(k) for k in ("service", "node", "id")):
                raise InvalidInput(
                    f"deletes[{i}]: needs service, node and id", field=f"deletes[{i}]"
                )
        for reg in upserts:
            ctx.authorizer.write_instance(token, reg.instance)
        for inst in deletes:
            ctx.authorizer.write_instance(token, inst)
        transactions = await ctx.catalog.apply_batch(upserts, deletes)
        return Response.json(
            {"upserted": len(upserts), "deleted": len(deletes), "transactions": transactions}
        )

    @route("PUT", "/v1/registry/checks/{node}/{check_id}")
    async def put_check(request: Request) -> Response:
        token = ctx.token(request)
        node, check_id = request.params["node"], request.params["check_id"]
        ctx.authorizer.write_node(token, node, what=f"check {check_id!r}")
        data = decode(request.json(), {"status": F("str"), "output": F("str")})
        if "status" not in data:
            raise InvalidInput("status: is required", field="status")
        from ._validate import status as parse_status

        check = await ctx.catalog.update_check(
            node, check_id, parse_status(data["status"], "status"), data.get("output", "")
        )
        return Response.json(check_view(check))

    @route("PUT", "/v1/registry/maintenance/{node}")
    async def put_maintenance(request: Request) -> Response:
        token = ctx.token(request)
        node = node_name(request.params["node"], "node")
        ctx.authorizer.write_node(token, node, what="maintenance mode")
        data = decode(request.json(), {"enable": F("bool"), "reason": F("str")})
        if "enable" not in data:
            raise InvalidInput("enable: is required", field="enable")
        await ctx.catalog.set_maintenance(node, data["enable"], data.get("reason", ""))
        return Response.json({"node": node, "maintenance": data["enable"]})

    @route("GET", "/v1/registry/maintenance")
    async def get_maintenance(request: Request) -> Response:
        ctx.reader(request)
        return Response.json(ctx.mirror.maint)

    # -- leases ------------------------------------------------------------------------------

    @route("POST", "/v1/registry/leases")
    async def grant(request: Request) -> Response:
        token = ctx.token(request)
        if token is None or token.role is Role.READ:
            raise Forbidden("granting a lease needs an operator, agent or adapter token")
        data = decode(request.json(), {"ttl": F("int")})
        lease = await ctx.catalog.grant_lease(data.get("ttl", 10), token)
        return Response.json({"id": f"{lease:x}", "ttl": data.get("ttl", 10)})

    def owned_lease(request: Request) -> int:
        token = ctx.token(request)
        lease = parse_lease(request.params["lease"], "lease")
        owner = ctx.catalog.lease_owner(lease)
        if owner is None:
            raise NotFound(f"lease {request.params['lease']} has expired or was revoked")
        if token is None or (
            token.role is not Role.OPERATOR and owner.get("owner") != token.accessor
        ):
            raise Forbidden(f"lease {request.params['lease']} belongs to another token")
        return lease

    @route("PUT", "/v1/registry/leases/{lease}")
    async def keepalive(request: Request) -> Response:
        lease = owned_lease(request)
        ttl = await ctx.catalog.keepalive(lease)
        return Response.json({"id": f"{lease:x}", "ttl": ttl})

    @route("DELETE", "/v1/registry/leases/{lease}")
    async def revoke(request: Request) -> Response:
        lease = owned_lease(request)
        await ctx.catalog.revoke(lease)
        return Response.json({"id": f"{lease:x}", "revoked": True})

    # -- tokens ------------------------------------------------------------------------------

    @route("POST", "/v1/tokens")
    async def create_token(request: Request) -> Response:
        ctx.authorizer.operator(ctx.token(request), "creating tokens")
        data = decode(
            request.json(),
            {
                "role": F("str"),
                "node": F("str"),
                "source": F("str"),
                "description": F("str"),
                "key_prefix": F("strmap"),
                "key": F("strmap"),
            },
        )
        if "role" not in data:
            raise InvalidInput("role: is required (operator, agent, adapter or read)", field="role")
        if data.get("node"):
            node_name(data["node"], "node")
        secret, token = await ctx.catalog.create_token(
            data["role"],
            node=data.get("node", ""),
            source=data.get("source", ""),
            description=data.get("description", ""),
            key_prefix=data.get("key_prefix"),
            key=data.get("key"),
        )
        return Response.json({**token.public(), "secret": secret}, status=200)

    @route("GET", "/v1/tokens")
    async def list_tokens(request: Request) -> Response:
        ctx.authorizer.operator(ctx.token(request), "listing tokens")
        return Response.json([t.public() for t in ctx.catalog.tokens()])

    @route("GET", "/v1/tokens/self")
    async def token_self(request: Request) -> Response:
        token = ctx.token(request)
        if token is None:
            raise Forbidden("no token was sent")
        return Response.json(token.public())

    @route("DELETE", "/v1/tokens/{accessor}")
    async def revoke_token(request: Request) -> Response:
        ctx.authorizer.operator(ctx.token(request), "revoking tokens")
        token = await ctx.catalog.revoke_token(request.params["accessor"])
        return Response.json({**token.public(), "revoked": True})
