"""Consul's `/v1/kv/...`: the key/value space under `kv/` in etcd (operator tokens write)."""

from __future__ import annotations

import json

from .._context import Context, consul_response
from .._endpoints import Area, Body, Param, Reply, json_reply, ref
from .._errors import Forbidden, InvalidInput
from .._mirror import kv_topic
from .._numbers import parse_index
from ..web import Request, Response
from . import _sessions
from ._schemas import BLOCKING, BOOL, INDEX_HEADERS, SCHEMAS, STRINGS

AREA: Area[Context] = Area("consul", "consul-kv", SCHEMAS)
route = AREA.route

MAX_KEY_BYTES = 1024
_KEY = {"key": Param("key", description="The key (may contain `/`); empty with ?recurse")}
_RECURSE = Param("recurse", {"type": "boolean"}, "Every key under the prefix")
_CAS = Param(
    "cas",
    {"type": "integer", "minimum": 0},
    "Only if the key's ModifyIndex is this (0: only if absent)",
)


def _entry(ctx: Context, key: str) -> dict[str, object]:
    return _sessions.kv_entry(ctx, key)


def _int_arg(request: Request, name: str) -> int | None:
    raw = request.arg(name)
    return None if raw is None else parse_index(raw, name)


def _writer(ctx: Context, request: Request) -> None:
    recursive = request.method == "DELETE" and request.flag("recurse")
    ctx.kv_writer(ctx.token(request), request.params["key"], prefix=recursive)


@route(
    "GET",
    "/v1/kv/{key:path}",
    summary="A key's entry, the entries or keys under a prefix, or a raw value",
    auth="read",
    errors=(400, 404),
    path_params=_KEY,
    query=(
        *BLOCKING,
        _RECURSE,
        Param("keys", {"type": "boolean"}, "Only the keys under the prefix"),
        Param("separator", description="With ?keys: list keys only up to this separator"),
        Param("raw", {"type": "boolean"}, "The value itself, not its entry"),
    ),
    ok=Reply(
        "The entries (a list of keys with ?keys, the bytes with ?raw); 404 when absent",
        {
            "application/json": {
                "oneOf": [
                    {"type": "array", "items": ref("ConsulKVEntry")},
                    STRINGS,
                ]
            },
            "application/octet-stream": {"type": "string", "format": "binary"},
        },
        INDEX_HEADERS,
    ),
)
async def kv_get(ctx: Context, request: Request) -> Response:
    token = ctx.reader(request)
    key = request.params["key"]
    recurse, keys_only = request.flag("recurse"), request.query.get("keys") is not None
    if not ctx.authorizer.read_kv(token, key) and not (recurse or keys_only):
        raise Forbidden(f"this token's KV rules deny reading key {key!r}")
    if recurse or keys_only:
        index = await ctx.block(request, lambda: ctx.mirror.kv_prefix_index(key), (), kv_prefix=key)
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
        return consul_response(json.dumps([_entry(ctx, k) for k in matching]).encode(), index)
    topic = kv_topic(key)
    index = await ctx.block(request, lambda: ctx.mirror.index(topic), (topic,))
    if key not in ctx.mirror.kv:
        return consul_response(b"", index, status=404, content_type="text/plain")
    if request.flag("raw"):
        return consul_response(
            ctx.mirror.kv[key].value, index, content_type="application/octet-stream"
        )
    return consul_response(json.dumps([_entry(ctx, key)]).encode(), index)


@route(
    "PUT",
    "/v1/kv/{key:path}",
    summary="Set a key (operator); false when a ?cas lost",
    errors=(400, 503),
    path_params=_KEY,
    query=(
        _CAS,
        Param("flags", {"type": "integer", "minimum": 0}, "An opaque number kept with the key"),
        Param("acquire", description="Take the key's lock for this session (true/false answer)"),
        Param("release", description="Release the key's lock held by this session"),
    ),
    body=Body(
        {"type": "string", "format": "binary"},
        content_type="application/octet-stream",
        required=False,
        description="The value, as raw bytes",
    ),
    ok=json_reply("Whether the value was written", BOOL),
)
async def kv_put(ctx: Context, request: Request) -> Response:
    _writer(ctx, request)
    key = request.params["key"]
    if not key:
        raise InvalidInput("key: a KV key must not be empty", field="key")
    if len(key.encode()) > MAX_KEY_BYTES:
        raise InvalidInput(f"key: at most {MAX_KEY_BYTES} bytes", field="key")
    ok = await _sessions.kv_write(
        ctx, request, key, flags=_int_arg(request, "flags") or 0, cas=_int_arg(request, "cas")
    )
    return Response.json(ok)


@route(
    "DELETE",
    "/v1/kv/{key:path}",
    summary="Delete a key, or every key under a prefix (operator); false when a ?cas lost",
    errors=(400, 503),
    path_params=_KEY,
    query=(_RECURSE, _CAS),
    ok=json_reply("Whether anything was deleted as asked", BOOL),
)
async def kv_delete(ctx: Context, request: Request) -> Response:
    _writer(ctx, request)
    ok = await ctx.catalog.kv_delete(
        request.params["key"], recurse=request.flag("recurse"), cas=_int_arg(request, "cas")
    )
    return Response.json(ok)
