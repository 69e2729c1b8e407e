"""Consul's `/v1/session/*` endpoints, and the lock side of `/v1/kv` (`?acquire=`,
`?release=`, and the `LockIndex` / `Session` fields of an entry)."""

from __future__ import annotations

import base64
import json
from typing import Any

from .._context import Context, consul_response
from .._endpoints import Area, Body, Param, json_reply, ref
from .._errors import InvalidInput
from .._mirror import SESSIONS
from .._session_model import session_from_consul, valid_session_id
from ..web import Request, Response
from ._schemas import BLOCKING, BOOL, SCHEMAS, STR, STRINGS, index_json

AREA: Area[Context] = Area("consul", "consul-session", SCHEMAS)
route = AREA.route

_SESSION = {"session": Param("session", description="The session's ID (a UUID)")}
_SESSIONS = index_json("Sessions", {"type": "array", "items": ref("ConsulSession")})
_CREATE = {
    "type": "object",
    "description": "Keys are matched without regard to case; every field is optional.",
    "properties": {
        "Name": STR,
        "Node": STR,
        "LockDelay": {"type": ["string", "integer"], "description": "'15s' or nanoseconds"},
        "Behavior": {"enum": ["release", "delete"]},
        "TTL": {"type": "string", "example": "30s"},
        "Checks": STRINGS,
        "NodeChecks": STRINGS,
        "ServiceChecks": {"type": "array", "items": {"type": "object", "properties": {"ID": STR}}},
    },
}


def kv_entry(ctx: Context, key: str) -> dict[str, Any]:
    kv = ctx.mirror.kv[key]
    lock = ctx.sessions.lock_state(key)
    entry: dict[str, Any] = {
        "LockIndex": lock.lock_index,
        "Key": key,
        "Flags": ctx.catalog.kv_flags(key),
        "Value": base64.b64encode(kv.value).decode() if kv.value else None,
        "CreateIndex": kv.create_revision,
        # Taking or losing the lock changes the entry, as in Consul: watchers of the key wake.
        "ModifyIndex": max(kv.mod_revision, ctx.mirror.kv_lock_changed.get(key, 0)),
    }
    if lock.holder:
        entry["Session"] = lock.holder
    return entry


def _session_arg(request: Request, name: str) -> str:
    raw = request.arg(name) or ""
    if not valid_session_id(raw):
        raise InvalidInput(f"{name}: {raw!r} is not a session ID (a UUID)", field=name)
    return raw.lower()


async def kv_write(
    ctx: Context, request: Request, key: str, *, flags: int, cas: int | None
) -> bool:
    """A KV PUT: a plain write, or a lock acquire or release when the query asks for one."""
    acquire, release = request.arg("acquire"), request.arg("release")
    if acquire is not None and release is not None:
        raise InvalidInput("acquire: give ?acquire or ?release, not both", field="acquire")
    if acquire is not None:
        session = _session_arg(request, "acquire")
        return await ctx.sessions.acquire(key, request.body, session, flags=flags, cas=cas)
    if release is not None:
        session = _session_arg(request, "release")
        return await ctx.sessions.release(key, request.body, session, flags=flags, cas=cas)
    lease = ctx.sessions.holder_lease(key)
    return await ctx.catalog.kv_put(key, request.body, flags=flags, cas=cas, lease=lease)


# -- /v1/session ---------------------------------------------------------------------------


@route(
    "PUT",
    "/v1/session/create",
    summary="Create a session (on its own etcd lease when it has a TTL)",
    errors=(400, 503),
    body=Body(_CREATE, required=False),
    ok=json_reply(
        "The new session's ID",
        {
            "type": "object",
            "required": ["ID"],
            "properties": {"ID": STR},
            "additionalProperties": False,
        },
    ),
)
async def session_create(ctx: Context, request: Request) -> Response:
    token = ctx.token(request)
    body = request.json() if request.body.strip() else None
    session = session_from_consul(
        body, node=ctx.node_of(token), min_ttl=ctx.options.session_min_ttl
    )
    ctx.write_node(token, session.node, what="a session")
    created = await ctx.sessions.create(session)
    return Response.json({"ID": created.id})


def _owned(ctx: Context, request: Request) -> str:
    token = ctx.token(request)
    session_id = request.params["session"]
    session = ctx.sessions.get(session_id)
    ctx.write_node(token, session.node if session else ctx.node_of(token), what="a session")
    return session_id


@route(
    "PUT",
    "/v1/session/destroy/{session}",
    summary="End a session (its locks are released or their keys deleted)",
    errors=(400, 503),
    path_params=_SESSION,
    ok=json_reply("Always true", BOOL),
)
async def session_destroy(ctx: Context, request: Request) -> Response:
    await ctx.sessions.destroy(_owned(ctx, request))
    return Response.json(True)


@route(
    "PUT",
    "/v1/session/renew/{session}",
    summary="Renew a session's TTL",
    errors=(400, 404, 503),
    path_params=_SESSION,
    ok=_SESSIONS,
)
async def session_renew(ctx: Context, request: Request) -> Response:
    session = await ctx.sessions.renew(_owned(ctx, request))
    return consul_response(json.dumps([session.consul_json()]).encode(), ctx.sessions.index())


async def _listing(ctx: Context, request: Request, keep: Any) -> Response:
    ctx.reader(request)
    index = await ctx.block(request, ctx.sessions.index, (SESSIONS,))
    body = [s.consul_json() for s in ctx.sessions.all() if keep(s)]
    return consul_response(json.dumps(body).encode(), index)


@route(
    "GET",
    "/v1/session/info/{session}",
    summary="One session (an empty list when there is none)",
    auth="read",
    errors=(400,),
    path_params=_SESSION,
    query=BLOCKING,
    ok=_SESSIONS,
)
async def session_info(ctx: Context, request: Request) -> Response:
    session_id = request.params["session"]
    return await _listing(ctx, request, lambda s: s.id == session_id)


@route(
    "GET",
    "/v1/session/node/{node}",
    summary="The sessions of a node",
    auth="read",
    errors=(400,),
    path_params={"node": Param("node", description="The node's name")},
    query=BLOCKING,
    ok=_SESSIONS,
)
async def session_node(ctx: Context, request: Request) -> Response:
    node = request.params["node"]
    return await _listing(ctx, request, lambda s: s.node == node)


@route(
    "GET",
    "/v1/session/list",
    summary="Every session",
    auth="read",
    errors=(400,),
    query=BLOCKING,
    ok=_SESSIONS,
)
async def session_list(ctx: Context, request: Request) -> Response:
    return await _listing(ctx, request, lambda s: True)
