"""Consul's `/v1/connect/intentions`: who may call whom, stored under `config/intention/<ID>`.

    GET    /v1/connect/intentions                      every intention, in evaluation order
    POST   /v1/connect/intentions                      create (legacy, by ID) -> {"ID": ...}
    GET    /v1/connect/intentions/exact?source=&destination=
    PUT    /v1/connect/intentions/exact?source=&destination=   create or update -> true
    DELETE /v1/connect/intentions/exact?source=&destination=   -> true
    GET    /v1/connect/intentions/match?by=source|destination&name=   {name: [...]}
    GET    /v1/connect/intentions/check?source=&destination=          {"Allowed": bool}
    GET|PUT|DELETE /v1/connect/intentions/{id}

and Weft's native `GET /v1/intentions` ({"default", "intentions"}), which the agents follow
with a blocking query to compile intentions into their sidecars' snapshots.

Writes need an operator token; reads follow the registry's read rules. A body is checked
strictly (`_intention_model.parse_body`): any problem is a 400 naming the field and nothing is
stored. A write is one etcd transaction guarded on the revision it was checked at, so two
racing creates of the same source and destination cannot both land.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from .._context import Context, consul_response
from .._endpoints import Area, Body, Param, json_reply
from .._errors import Conflict, InvalidInput, NotFound
from .._intention_model import (
    Intention,
    IntentionProblem,
    Name,
    check,
    evaluation_order,
    match,
    parse_body,
    parse_name,
)
from .._mirror import config_topic
from ..web import Request, Response

KIND = "intention"
TOPIC = config_topic(KIND)
MAX_INTENTIONS = 10_000

_OBJ: dict[str, Any] = {"type": "object"}
_INTENTION: dict[str, Any] = {
    "type": "object",
    "description": "Consul's intention: SourceName, DestinationName (and NS), Action or "
    "Permissions [{Action, HTTP {PathExact|PathPrefix|PathRegex, Methods, Header[]}}], "
    "Description, Meta; the server adds ID, Precedence, CreateIndex, ModifyIndex",
}
SCHEMAS: dict[str, Any] = {"ConsulIntention": _INTENTION}
AREA: Area[Context] = Area("consul", "consul-intentions", SCHEMAS)
NATIVE_AREA: Area[Context] = Area("native", "intentions", SCHEMAS)

_SRC = Param("source", description="`web`, `shop/web` or `*`", required=True)
_DST = Param("destination", description="`api`, `shop/api` or `*`", required=True)
_ID = {"id": Param("id", description="The intention's ID")}
_BLOCKING = (
    Param("index", {"type": "integer", "minimum": 0}, "Block until the index is past this."),
    Param("wait", {"type": "string", "example": "30s"}, "Longest wait (default 5m, max 10m)."),
)


def stored(ctx: Context) -> list[Intention]:
    prefix = ctx.keys.config(KIND, "")
    out = []
    for key, kv in ctx.mirror.raw.items():
        if key.startswith(prefix):
            try:
                out.append(
                    Intention.from_doc(json.loads(kv.value), kv.create_revision, kv.mod_revision)
                )
            except (ValueError, KeyError, TypeError):
                continue  # not ours to serve; writes only ever store checked documents
    return out


def _problem(exc: IntentionProblem) -> InvalidInput:
    return InvalidInput(str(exc), field=exc.field)


def _name(request: Request, param: str) -> Name:
    raw = request.arg(param)
    if not raw:
        raise InvalidInput(f"{param}: required (a service name, ns/name or '*')", field=param)
    try:
        return parse_name(raw, param.capitalize())
    except IntentionProblem as exc:
        raise _problem(exc) from None


def _body(request: Request, **names: Name) -> dict[str, Any]:
    try:
        return parse_body(request.json(), **names)
    except IntentionProblem as exc:
        raise _problem(exc) from None


def _exact(ctx: Context, source: Name, destination: Name) -> Intention | None:
    for i in stored(ctx):
        if i.source == source and i.destination == destination:
            return i
    return None


def _by_id(ctx: Context, request: Request) -> Intention:
    ident = request.params["id"]
    for i in stored(ctx):
        if i.id == ident:
            return i
    raise NotFound(f"no intention with ID {ident!r}")


def _now(ctx: Context) -> str:
    return datetime.fromtimestamp(ctx.clock(), UTC).isoformat().replace("+00:00", "Z")


async def _write(ctx: Context, doc: dict[str, Any], *, ident: str | None) -> str:
    """Store `doc` (a checked body) as intention `ident` (None: a new one); its ID."""
    seen = ctx.mirror.revision
    existing = stored(ctx)
    pair = (
        Name(doc["SourceNS"], doc["SourceName"]),
        Name(doc["DestinationNS"], doc["DestinationName"]),
    )
    old = next((i for i in existing if i.id == ident), None) if ident else None
    for i in existing:
        if (i.source, i.destination) == pair and i.id != ident:
            raise Conflict(
                f"an intention from {pair[0]} to {pair[1]} already exists (ID {i.id}); "
                "update it with PUT /v1/connect/intentions/exact"
            )
    if old is None and len(existing) >= MAX_INTENTIONS:
        raise InvalidInput(f"at most {MAX_INTENTIONS} intentions", field="DestinationName")
    now = _now(ctx)
    record = {
        "ID": ident or str(uuid.uuid4()),
        **doc,
        "CreatedAt": old.doc.get("CreatedAt", now) if old else now,
        "UpdatedAt": now,
    }
    value = json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
    try:
        await ctx.catalog.put_config([(KIND, record["ID"], value)], seen=seen)
    except Conflict:
        raise Conflict("intentions changed while this one was checked; send it again") from None
    return str(record["ID"])


def _writer(ctx: Context, request: Request, what: str) -> None:
    ctx.authorizer.operator(ctx.token(request), what)


async def _index(ctx: Context, request: Request) -> int:
    return await ctx.block(request, lambda: ctx.mirror.index(TOPIC), (TOPIC,))


@AREA.route(
    "GET",
    "/v1/connect/intentions",
    summary="Every intention, highest precedence first (a blocking query with ?index=)",
    auth="read",
    errors=(400,),
    query=(*_BLOCKING, Param("filter", description="A Consul filter expression")),
    ok=json_reply("The intentions", {"type": "array", "items": _INTENTION}),
)
async def list_intentions(ctx: Context, request: Request) -> Response:
    ctx.reader(request)
    index = await _index(ctx, request)
    # Rendered once per index: every agent and watcher woken by a change shares it.
    body = ctx.cached_json(
        request, index, lambda: [i.view() for i in evaluation_order(stored(ctx))]
    )
    return consul_response(body, index)


@AREA.route(
    "POST",
    "/v1/connect/intentions",
    summary="Create an intention (operator); 409 if the pair has one already",
    errors=(409, 503),
    body=Body(_INTENTION),
    ok=json_reply(
        "The new intention's ID", {"type": "object", "properties": {"ID": {"type": "string"}}}
    ),
)
async def create_intention(ctx: Context, request: Request) -> Response:
    _writer(ctx, request, "writing intentions")
    ident = await _write(ctx, _body(request), ident=None)
    return Response.json({"ID": ident})


@AREA.route(
    "GET",
    "/v1/connect/intentions/exact",
    summary="The intention from exactly this source to exactly this destination",
    auth="read",
    errors=(400, 404),
    query=(_SRC, _DST),
    ok=json_reply("The intention", _INTENTION),
)
async def get_exact_intention(ctx: Context, request: Request) -> Response:
    ctx.reader(request)
    source, destination = _name(request, "source"), _name(request, "destination")
    found = _exact(ctx, source, destination)
    if found is None:
        raise NotFound(f"no intention from {source} to {destination}")
    return consul_response(json.dumps(found.view()).encode(), ctx.mirror.index(TOPIC))


@AREA.route(
    "PUT",
    "/v1/connect/intentions/exact",
    summary="Create or update the intention from source to destination (operator)",
    errors=(409, 503),
    query=(_SRC, _DST),
    body=Body(_INTENTION),
    ok=json_reply("true", {"type": "boolean"}),
)
async def put_exact_intention(ctx: Context, request: Request) -> Response:
    _writer(ctx, request, "writing intentions")
    source, destination = _name(request, "source"), _name(request, "destination")
    doc = _body(request, source=source, destination=destination)
    found = _exact(ctx, source, destination)
    await _write(ctx, doc, ident=found.id if found else None)
    return Response.json(True)


@AREA.route(
    "DELETE",
    "/v1/connect/intentions/exact",
    summary="Delete the intention from source to destination (operator)",
    errors=(400, 404, 503),
    query=(_SRC, _DST),
    ok=json_reply("true", {"type": "boolean"}),
)
async def delete_exact_intention(ctx: Context, request: Request) -> Response:
    _writer(ctx, request, "deleting intentions")
    source, destination = _name(request, "source"), _name(request, "destination")
    found = _exact(ctx, source, destination)
    if found is None:
        raise NotFound(f"no intention from {source} to {destination}")
    await ctx.catalog.delete_config(KIND, found.id)
    return Response.json(True)


@AREA.route(
    "GET",
    "/v1/connect/intentions/match",
    summary="The intentions that apply to a source or destination, in evaluation order",
    auth="read",
    errors=(400,),
    query=(
        Param("by", {"enum": ["source", "destination"]}, "Match by source or by destination", True),
        Param("name", description="A service (repeatable)", required=True),
        *_BLOCKING,
    ),
    ok=json_reply("Each name's intentions", _OBJ),
)
async def match_intentions(ctx: Context, request: Request) -> Response:
    ctx.reader(request)
    by = request.arg("by")
    if by not in ("source", "destination"):
        raise InvalidInput(f"by: {by!r} is not 'source' or 'destination'", field="by")
    names = request.query.get("name") or []
    if not names:
        raise InvalidInput("name: required (a service name, ns/name or '*')", field="name")
    wanted = []
    for raw in names:
        try:
            wanted.append((raw, parse_name(raw, "Name")))
        except IntentionProblem as exc:
            raise _problem(exc) from None
    index = await _index(ctx, request)
    all_ = stored(ctx)
    body = {raw: [i.view() for i in match(all_, by, name)] for raw, name in wanted}
    return consul_response(json.dumps(body).encode(), index)


@AREA.route(
    "GET",
    "/v1/connect/intentions/check",
    summary="Would a connection from source to destination be allowed?",
    auth="read",
    errors=(400,),
    query=(_SRC, _DST, Param("source-type", description="Only `consul`")),
    ok=json_reply("{Allowed}", _OBJ),
)
async def check_intention(ctx: Context, request: Request) -> Response:
    ctx.reader(request)
    if request.arg("source-type") not in (None, "", "consul"):
        raise InvalidInput("source-type: only 'consul' is supported", field="source-type")
    source, destination = _name(request, "source"), _name(request, "destination")
    allowed = check(
        stored(ctx),
        source,
        destination,
        default_allow=ctx.options.intention_default == "allow",
    )
    return consul_response(json.dumps({"Allowed": allowed}).encode(), ctx.mirror.index(TOPIC))


@AREA.route(
    "GET",
    "/v1/connect/intentions/{id}",
    summary="One intention by ID",
    auth="read",
    errors=(404,),
    path_params=_ID,
    ok=json_reply("The intention", _INTENTION),
)
async def get_intention(ctx: Context, request: Request) -> Response:
    ctx.reader(request)
    found = _by_id(ctx, request)
    return consul_response(json.dumps(found.view()).encode(), ctx.mirror.index(TOPIC))


@AREA.route(
    "PUT",
    "/v1/connect/intentions/{id}",
    summary="Update an intention by ID (operator)",
    errors=(404, 409, 503),
    path_params=_ID,
    body=Body(_INTENTION),
    ok=json_reply("true", {"type": "boolean"}),
)
async def update_intention(ctx: Context, request: Request) -> Response:
    _writer(ctx, request, "writing intentions")
    found = _by_id(ctx, request)
    await _write(ctx, _body(request), ident=found.id)
    return Response.json(True)


@AREA.route(
    "DELETE",
    "/v1/connect/intentions/{id}",
    summary="Delete an intention by ID (operator)",
    errors=(404, 503),
    path_params=_ID,
    ok=json_reply("true", {"type": "boolean"}),
)
async def delete_intention(ctx: Context, request: Request) -> Response:
    _writer(ctx, request, "deleting intentions")
    found = _by_id(ctx, request)
    await ctx.catalog.delete_config(KIND, found.id)
    return Response.json(True)


@NATIVE_AREA.route(
    "GET",
    "/v1/intentions",
    summary="The mesh-wide default and every intention in evaluation order (blocking with "
    "?index=); what agents compile into sidecar snapshots",
    auth="read",
    errors=(400,),
    query=_BLOCKING,
    ok=json_reply("{default: allow|deny, intentions: [...]}", _OBJ),
)
async def native_intentions(ctx: Context, request: Request) -> Response:
    ctx.reader(request)
    index = await _index(ctx, request)
    body = ctx.cached_json(
        request,
        index,
        lambda: {
            "default": ctx.options.intention_default,
            "intentions": [i.view() for i in evaluation_order(stored(ctx))],
        },
    )
    return Response(
        status=200,
        body=body,
        content_type="application/json",
        headers=[("X-Weft-Index", str(index)), ("X-Consul-Index", str(index))],
    )
