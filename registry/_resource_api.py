"""Traffic resources over HTTP: Weft's native `/v1/resources` and Consul-style `/v1/config`.

    POST   /v1/resources                {"resources": [...], "dry_run": false}  apply a batch
    GET    /v1/resources[?kind=Route]   every stored resource (blocking with ?index=)
    GET    /v1/resources/{kind}/{name}
    DELETE /v1/resources/{kind}/{name}
    PUT    /v1/config                   {"Kind", "Name", "Spec", "Meta"?}: one resource
    GET    /v1/config/{kind}[/{name}]   the same, in Consul's config-entry shape
    DELETE /v1/config/{kind}/{name}

A batch is validated as a whole (`_resources.validate_all`, also against what is stored)
and then written in one etcd transaction, or not at all: a refusal (400) lists every problem,
each naming the document and the field. Each stored resource carries its revision (the etcd
revision it was written at) in `metadata.revision`.

Who may write: an operator token writes any resource; an adapter token (the Kubernetes
adapter syncing Istio/Linkerd/Gateway API objects) writes and deletes only resources of its
own source, which are stored with `metadata.source`. The conflict rule: **the operator
wins**. An adapter may not replace or delete an operator's resource or another source's
(403, naming it); an operator who changes an adapter's resource takes it over (its source is
dropped) and the adapter leaves it alone from then on. An operator apply that changes nothing
keeps the source, so `weft get all -o yaml | weft apply -f -` takes nothing over.
"""

from __future__ import annotations

import json
from typing import Any

from ._acl import Role, Token
from ._context import Context
from ._endpoints import Area, Body, Param, json_reply, ref
from ._errors import Forbidden, InvalidInput, InvalidResources, NotFound
from ._mirror import CONFIG
from ._resources import API_VERSION, KINDS, Resource, validate_all
from .web import Request, Response, Router

MAX_BATCH = 128  # one etcd transaction


def _encode(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def stored(ctx: Context) -> list[tuple[Resource, int, int]]:
    """(resource, create revision, mod revision) of everything under config/, sorted."""
    prefix = ctx.keys.config()
    out = []
    for key, kv in ctx.mirror.raw.items():
        if not key.startswith(prefix):
            continue
        kind, _, name = key[len(prefix) :].partition("/")
        if kind not in KINDS:
            continue  # intentions live beside them, with their own API
        try:
            doc = json.loads(kv.value)
        except ValueError:
            continue
        out.append((Resource(kind, name, doc), kv.create_revision, kv.mod_revision))
    out.sort(key=lambda r: (r[0].kind, r[0].name))
    return out


def _view(resource: Resource, created: int, revision: int) -> dict[str, Any]:
    doc = json.loads(json.dumps(resource.doc))
    doc["metadata"]["revision"] = revision
    doc["metadata"]["createRevision"] = created
    return doc


def _consul_view(resource: Resource, created: int, revision: int) -> dict[str, Any]:
    return {
        "Kind": resource.kind,
        "Name": resource.name,
        "Meta": resource.doc["metadata"].get("labels", {}),
        "Spec": resource.spec,
        "CreateIndex": created,
        "ModifyIndex": revision,
    }


def _kind(raw: str) -> str:
    for kind in KINDS:
        if raw.lower() in (kind.lower(), kind.lower() + "s"):
            return kind
    raise InvalidInput(f"kind: {raw!r} is not one of {', '.join(KINDS)}", field="kind")


_OBJECT: dict[str, Any] = {"type": "object"}
SCHEMAS: dict[str, Any] = {
    "ResourceBatch": {
        "type": "object",
        "required": ["resources"],
        "additionalProperties": False,
        "properties": {
            "resources": {
                "type": "array",
                "maxItems": MAX_BATCH,
                "items": ref("Resource"),
                "description": "validated as a whole, stored in one transaction or not at all",
            },
            "dry_run": {"type": "boolean"},
        },
    },
    "Resource": {
        "type": "object",
        "description": (
            "A traffic resource (docs/traffic.md): Route, ServiceDefaults, Subset, Gateway "
            "(docs/gateway.md) or ExternalService (docs/egress.md)"
        ),
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": API_VERSION},
            "kind": {"enum": list(KINDS)},
            "metadata": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "labels": {"type": "object"},
                    "revision": {"type": "integer", "description": "the server's; ignored"},
                    "createRevision": {"type": "integer", "description": "the server's"},
                    "source": {
                        "type": "string",
                        "description": "the server's: the adapter source that wrote it, if any",
                    },
                },
            },
            "spec": _OBJECT,
        },
    },
    "ConfigEntry": {
        "type": "object",
        "description": "A traffic resource in Consul's config-entry shape",
        "properties": {
            "Kind": {"enum": list(KINDS)},
            "Name": {"type": "string"},
            "Meta": _OBJECT,
            "Spec": _OBJECT,
            "CreateIndex": {"type": "integer"},
            "ModifyIndex": {"type": "integer"},
        },
    },
}
_BLOCKING = (
    Param("index", {"type": "integer", "minimum": 0}, "Block until the index is past this."),
    Param("wait", {"type": "string", "example": "30s"}, "Longest wait (default 5m, max 10m)."),
)
_KIND_NAME = {
    "kind": Param("kind", description="Route, ServiceDefaults, Subset, Gateway or ExternalService"),
    "name": Param("name", description="The resource's metadata.name"),
}
_KIND = {"kind": _KIND_NAME["kind"]}

AREA: Area[Context] = Area("native", "traffic", SCHEMAS)
CONSUL_AREA: Area[Context] = Area("consul", "consul-config", SCHEMAS)


def mount(router: Router, ctx: Context) -> None:
    AREA.mount(router, ctx)
    CONSUL_AREA.mount(router, ctx)


def owner(resource: Resource) -> str:
    """The adapter source a stored resource belongs to; "" for an operator's."""
    return str(resource.doc["metadata"].get("source", ""))


def _whose(resource: Resource) -> str:
    return f"source {owner(resource)!r}" if owner(resource) else "an operator"


def _without_source(doc: dict[str, Any]) -> dict[str, Any]:
    return {**doc, "metadata": {k: v for k, v in doc["metadata"].items() if k != "source"}}


def _adapter_source(token: Token | None) -> str:
    return token.source if token is not None and token.role is Role.ADAPTER else ""


async def store(
    ctx: Context, docs: list[Any], *, dry_run: bool, token: Token | None = None
) -> list[dict[str, Any]]:
    """Validate a batch as a whole (also against what is stored) and write it in one
    transaction guarded by the revision it was checked at (which also guards the owners
    checked here: a resource taken over meanwhile makes the write a 409)."""
    if len(docs) > MAX_BATCH:
        raise InvalidInput(
            f"resources: at most {MAX_BATCH} in one apply, not {len(docs)}", field="resources"
        )
    seen = ctx.mirror.revision
    current = {(r.kind, r.name): (r, rev) for r, _, rev in stored(ctx)}
    resources, problems = validate_all(docs, [r for r, _ in current.values()])
    if problems:
        raise InvalidResources(problems)
    source = _adapter_source(token)
    if source:
        taken = [
            f"{r.kind} {r.name} belongs to {_whose(held[0])}"
            for r in resources
            if (held := current.get((r.kind, r.name))) is not None and owner(held[0]) != source
        ]
        if taken:
            raise Forbidden(
                f"this adapter token (source {source!r}) may only replace resources of its own "
                f"source: {'; '.join(taken)}"
            )
    results: list[dict[str, Any]] = []
    writes = []
    for r in resources:
        # Revision, createRevision and source are the server's to say, never taken as sent.
        meta = {k: v for k, v in r.doc["metadata"].items() if k in ("name", "labels")}
        if source:
            meta["source"] = source
        doc = {"apiVersion": r.doc["apiVersion"], "kind": r.kind, "metadata": meta, "spec": r.spec}
        old = current.get((r.kind, r.name))
        if old is not None and not source and _without_source(old[0].doc) == doc:
            doc = old[0].doc  # an operator's no-op apply takes nothing over
        if old is not None and old[0].doc == doc:
            results.append(
                {"kind": r.kind, "name": r.name, "action": "unchanged", "revision": old[1]}
            )
            continue
        writes.append((r.kind, r.name, _encode(doc)))
        action = "configured" if old is not None else "created"
        results.append({"kind": r.kind, "name": r.name, "action": action})
    if writes and not dry_run:
        revision = await ctx.catalog.put_config(writes, seen=seen)
        for item in results:
            item.setdefault("revision", revision)
    return results


def _find(ctx: Context, request: Request) -> tuple[Resource, int, int]:
    ctx.reader(request)
    kind, name = _kind(request.params["kind"]), request.params["name"]
    for r, c, m in stored(ctx):
        if r.kind == kind and r.name == name:
            return r, c, m
    raise NotFound(f"no {kind} named {name!r}")


async def _delete(ctx: Context, request: Request) -> tuple[Resource, int]:
    token = ctx.token(request)
    ctx.authorizer.write_resources(token, "deleting traffic resources")
    resource, _, mod = _find(ctx, request)
    source = _adapter_source(token)
    if not source:
        return resource, await ctx.catalog.delete_config(resource.kind, resource.name)
    if owner(resource) != source:
        raise Forbidden(
            f"{resource.kind} {resource.name} belongs to {_whose(resource)}; this adapter "
            f"token (source {source!r}) may only delete resources of its own source"
        )
    return resource, await ctx.catalog.delete_config(resource.kind, resource.name, mod=mod)


@AREA.route(
    "POST",
    "/v1/resources",
    summary="Apply a batch of traffic resources (operator, or adapter: its own source's); "
    "400 lists every problem",
    errors=(409, 503),
    body=Body(ref("ResourceBatch")),
    ok=json_reply(
        "What each resource became",
        {
            "type": "object",
            "required": ["dry_run", "results"],
            "additionalProperties": False,
            "properties": {
                "dry_run": {"type": "boolean"},
                "results": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["kind", "name", "action"],
                        "additionalProperties": False,
                        "properties": {
                            "kind": {"type": "string"},
                            "name": {"type": "string"},
                            "action": {"enum": ["created", "configured", "unchanged"]},
                            # Absent in a dry run for what would change.
                            "revision": {"type": "integer"},
                        },
                    },
                },
            },
        },
    ),
)
async def apply_resources(ctx: Context, request: Request) -> Response:
    token = ctx.token(request)
    ctx.authorizer.write_resources(token, "applying traffic resources")
    body = request.json()
    if not isinstance(body, dict) or not isinstance(body.get("resources"), list):
        raise InvalidInput('body: expected {"resources": [...]}', field="resources")
    unknown = set(body) - {"resources", "dry_run"}
    if unknown:
        raise InvalidInput(f"{sorted(unknown)[0]}: unknown field", field=sorted(unknown)[0])
    dry_run = body.get("dry_run")
    if dry_run is None:
        dry_run = False
    elif not isinstance(dry_run, bool):
        # bool() of it would turn "no" into a real apply and {} into a dry run.
        raise InvalidInput(f"dry_run: expected true or false, got {dry_run!r:.40}", field="dry_run")
    results = await store(ctx, body["resources"], dry_run=dry_run, token=token)
    return Response.json({"dry_run": dry_run, "results": results})


@AREA.route(
    "GET",
    "/v1/resources",
    summary="Stored traffic resources (a blocking query with ?index=)",
    auth="read",
    errors=(400,),
    query=(Param("kind", description="Only this kind"), *_BLOCKING),
    ok=json_reply(
        "The resources, with metadata.revision",
        {
            "type": "object",
            "required": ["resources"],
            "additionalProperties": False,
            "properties": {"resources": {"type": "array", "items": ref("Resource")}},
        },
        headers=("X-Weft-Index", "X-Consul-Index"),
    ),
)
async def list_resources(ctx: Context, request: Request) -> Response:
    ctx.reader(request)
    kind = request.arg("kind")
    wanted = _kind(kind) if kind else None
    index = await ctx.block(request, lambda: ctx.mirror.index(CONFIG), (CONFIG,))
    items = [_view(r, c, m) for r, c, m in stored(ctx) if wanted is None or r.kind == wanted]
    return Response.json(
        {"resources": items},
        headers=[("X-Weft-Index", str(index)), ("X-Consul-Index", str(index))],
    )


@AREA.route(
    "GET",
    "/v1/resources/{kind}/{name}",
    summary="One traffic resource",
    auth="read",
    errors=(400, 404),
    path_params=_KIND_NAME,
    ok=json_reply("The resource", ref("Resource")),
)
async def get_resource(ctx: Context, request: Request) -> Response:
    return Response.json(_view(*_find(ctx, request)))


@AREA.route(
    "DELETE",
    "/v1/resources/{kind}/{name}",
    summary="Delete a traffic resource (operator, or adapter: its own source's)",
    errors=(400, 404, 409, 503),
    path_params=_KIND_NAME,
    ok=json_reply(
        "Deleted, and at which revision",
        {
            "type": "object",
            "required": ["kind", "name", "deleted", "revision"],
            "additionalProperties": False,
            "properties": {
                "kind": {"type": "string"},
                "name": {"type": "string"},
                "deleted": {"const": True},
                "revision": {"type": "integer"},
            },
        },
    ),
)
async def delete_resource(ctx: Context, request: Request) -> Response:
    resource, revision = await _delete(ctx, request)
    return Response.json(
        {"kind": resource.kind, "name": resource.name, "deleted": True, "revision": revision}
    )


@CONSUL_AREA.route(
    "PUT",
    "/v1/config",
    summary="Write one traffic resource as a Consul config entry {Kind, Name, Spec, Meta?}",
    errors=(409, 503),
    body=Body(ref("ConfigEntry")),
    ok=json_reply("true", {"type": "boolean"}),
)
async def put_config_entry(ctx: Context, request: Request) -> Response:
    ctx.authorizer.operator(ctx.token(request), "applying traffic resources")
    body = request.json()
    if not isinstance(body, dict):
        raise InvalidInput("body: expected a config entry object", field="body")
    unknown = set(body) - {"Kind", "Name", "Spec", "Meta"}
    if unknown:
        raise InvalidInput(f"{sorted(unknown)[0]}: unknown field", field=sorted(unknown)[0])
    doc: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": body.get("Kind"),
        "metadata": {"name": body.get("Name")},
        "spec": body.get("Spec"),
    }
    if body.get("Meta"):
        doc["metadata"]["labels"] = body["Meta"]
    await store(ctx, [doc], dry_run=False)
    return Response.json(True)


@CONSUL_AREA.route(
    "GET",
    "/v1/config/{kind}",
    summary="The traffic resources of a kind, as Consul config entries",
    auth="read",
    errors=(400,),
    path_params=_KIND,
    query=_BLOCKING,
    ok=json_reply("Config entries", {"type": "array", "items": ref("ConfigEntry")}),
)
async def list_config_entries(ctx: Context, request: Request) -> Response:
    ctx.reader(request)
    kind = _kind(request.params["kind"])
    index = await ctx.block(request, lambda: ctx.mirror.index(CONFIG), (CONFIG,))
    items = [_consul_view(r, c, m) for r, c, m in stored(ctx) if r.kind == kind]
    return Response.json(items, headers=[("X-Consul-Index", str(index))])


@CONSUL_AREA.route(
    "GET",
    "/v1/config/{kind}/{name}",
    summary="One traffic resource as a Consul config entry",
    auth="read",
    errors=(400, 404),
    path_params=_KIND_NAME,
    ok=json_reply("The config entry", ref("ConfigEntry")),
)
async def get_config_entry(ctx: Context, request: Request) -> Response:
    return Response.json(_consul_view(*_find(ctx, request)))


@CONSUL_AREA.route(
    "DELETE",
    "/v1/config/{kind}/{name}",
    summary="Delete a traffic resource (operator)",
    errors=(400, 404, 503),
    path_params=_KIND_NAME,
    ok=json_reply("true", {"type": "boolean"}),
)
async def delete_config_entry(ctx: Context, request: Request) -> Response:
    await _delete(ctx, request)
    return Response.json(True)
