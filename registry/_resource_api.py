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
each naming the document and the field. Writing needs an operator token. Each stored
resource carries its revision (the etcd revision it was written at) in `metadata.revision`.
"""

from __future__ import annotations

import json
from typing import Any

from ._context import Context
from ._errors import InvalidInput, InvalidResources, NotFound
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


def mount(router: Router, ctx: Context) -> None:
    def route(method: str, pattern: str, tags: tuple[str, ...] = ("native",)):  # type: ignore[no-untyped-def]
        def add(handler):  # type: ignore[no-untyped-def]
            router.add(method, pattern, handler, tags=tags)
            return handler

        return add

    @route("POST", "/v1/resources")
    async def apply(request: Request) -> Response:
        ctx.authorizer.operator(ctx.token(request), "applying traffic resources")
        body = request.json()
        if not isinstance(body, dict) or not isinstance(body.get("resources"), list):
            raise InvalidInput('body: expected {"resources": [...]}', field="resources")
        unknown = set(body) - {"resources", "dry_run"}
        if unknown:
            raise InvalidInput(f"{sorted(unknown)[0]}: unknown field", field=sorted(unknown)[0])
        results = await store(body["resources"], dry_run=bool(body.get("dry_run")))
        return Response.json({"dry_run": bool(body.get("dry_run")), "results": results})

    @route("PUT", "/v1/config", tags=("consul",))
    async def consul_put(request: Request) -> Response:
        """Consul's config-entry write: {"Kind", "Name", "Spec", "Meta"?} -> one resource."""
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
        await store([doc], dry_run=False)
        return Response.json(True)

    async def store(docs: list[Any], *, dry_run: bool) -> list[dict[str, Any]]:
        if len(docs) > MAX_BATCH:
            raise InvalidInput(
                f"resources: at most {MAX_BATCH} in one apply, not {len(docs)}", field="resources"
            )
        seen = ctx.mirror.revision
        current = {(r.kind, r.name): (r, rev) for r, _, rev in stored(ctx)}
        resources, problems = validate_all(docs, [r for r, _ in current.values()])
        if problems:
            raise InvalidResources(problems)
        results, writes = [], []
        for r in resources:
            # Revision and createRevision are the server's to say, never stored.
            meta = {k: v for k, v in r.doc["metadata"].items() if k in ("name", "labels")}
            doc = {
                "apiVersion": r.doc["apiVersion"],
                "kind": r.kind,
                "metadata": meta,
                "spec": r.spec,
            }
            old = current.get((r.kind, r.name))
            if old is not None and old[0].doc == doc:
                results.append(
                    {"kind": r.kind, "name": r.name, "action": "unchanged", "revision": old[1]}
                )
                continue
            writes.append((r.kind, r.name, _encode(doc)))
            results.append(
                {
                    "kind": r.kind,
                    "name": r.name,
                    "action": "configured" if old is not None else "created",
                }
            )
        if writes and not dry_run:
            revision = await ctx.catalog.put_config(writes, seen=seen)
            for item in results:
                item.setdefault("revision", revision)
        return results

    @route("GET", "/v1/resources")
    async def list_all(request: Request) -> Response:
        ctx.reader(request)
        kind = request.arg("kind")
        wanted = _kind(kind) if kind else None
        index = await ctx.block(request, lambda: ctx.mirror.index(CONFIG), (CONFIG,))
        items = [_view(r, c, m) for r, c, m in stored(ctx) if wanted is None or r.kind == wanted]
        return Response.json(
            {"resources": items},
            headers=[("X-Weft-Index", str(index)), ("X-Consul-Index", str(index))],
        )

    def find(request: Request) -> tuple[Resource, int, int]:
        ctx.reader(request)
        kind, name = _kind(request.params["kind"]), request.params["name"]
        for r, c, m in stored(ctx):
            if r.kind == kind and r.name == name:
                return r, c, m
        raise NotFound(f"no {kind} named {name!r}")

    @route("GET", "/v1/resources/{kind}/{name}")
    async def get_one(request: Request) -> Response:
        return Response.json(_view(*find(request)))

    async def delete(request: Request) -> tuple[Resource, int]:
        ctx.authorizer.operator(ctx.token(request), "deleting traffic resources")
        resource, _, _ = find(request)
        return resource, await ctx.catalog.delete_config(resource.kind, resource.name)

    @route("DELETE", "/v1/resources/{kind}/{name}")
    async def delete_native(request: Request) -> Response:
        resource, revision = await delete(request)
        return Response.json(
            {"kind": resource.kind, "name": resource.name, "deleted": True, "revision": revision}
        )

    @route("GET", "/v1/config/{kind}", tags=("consul",))
    async def consul_list(request: Request) -> Response:
        ctx.reader(request)
        kind = _kind(request.params["kind"])
        index = await ctx.block(request, lambda: ctx.mirror.index(CONFIG), (CONFIG,))
        items = [_consul_view(r, c, m) for r, c, m in stored(ctx) if r.kind == kind]
        return Response.json(items, headers=[("X-Consul-Index", str(index))])

    @route("GET", "/v1/config/{kind}/{name}", tags=("consul",))
    async def consul_get(request: Request) -> Response:
        return Response.json(_consul_view(*find(request)))

    @route("DELETE", "/v1/config/{kind}/{name}", tags=("consul",))
    async def consul_delete(request: Request) -> Response:
        await delete(request)
        return Response.json(True)
