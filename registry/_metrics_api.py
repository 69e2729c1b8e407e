"""Golden metrics with no extra system: `/v1/metrics/*` (docs/observability.md).

    POST /v1/metrics/push     an agent's proxies' cumulative counters (agent token)
    GET  /v1/metrics/stat     success rate, RPS, p50/p95/p99 per service or instance,
                              or per caller/callee with ?to= / ?from=
    GET  /v1/metrics/edges    caller -> callee, with the caller's verified SPIFFE ID
    GET  /v1/metrics/routes   per route of a service (as its callers' proxies counted them)
    GET  /v1/metrics/proxies  every reporting proxy and its admin address (for tap and top)
    GET  /v1/metrics/targets  Prometheus HTTP service discovery of every sidecar's /metrics

Storage: each push is one etcd key per node in a ring of slots, on the agent's lease (a node
that goes away takes its samples along): a fine tier of `ceil(300 s / resolution)` slots
keeps the last five minutes at `metrics_resolution` (10 s), a coarse tier of 60 slots the
last hour at one minute. A node writes at most one push per `metrics_min_interval` (5 s;
sooner is 429), a push is at most `metrics_sample_bytes` (64 KiB) encoded, so what one node
can hold in etcd and in every server's mirror is bounded by (fine + 60) x that size. Every
server mirrors the same keys, so every server answers the same.
"""

from __future__ import annotations

import functools
import json
import math
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ._acl import Role
from ._context import Context
from ._endpoints import Area, Body, Param, json_reply, ref
from ._errors import Forbidden, InvalidInput, TooManyRequests
from ._etcd_types import Delete, KeyValue, Put
from ._metrics_sample import PushLimits, decode_push, encode_sample
from ._metrics_window import Sample, aggregate, inbound_open, newest_samples, parse_window, pick
from ._validate import service_name
from .web import Request, Response, Router

METRICS_META = "weft_metrics"  # an instance's sidecar metrics address (set by its agent)
FINE_SPAN = 300.0  # seconds the fine tier covers
COARSE_SLOTS, COARSE_STEP = 60, 60.0
Handler = Callable[[Context, Request], Awaitable[Response]]
_TS = re.compile(rb'\{"ts":([0-9.]+),')

_ROW = {
    "type": "object",
    "properties": {
        "service": {"type": "string"},
        "instance": {"type": "string"},
        "node": {"type": "string"},
        "from": {"type": "string"},
        "to": {"type": "string"},
        "route": {"type": "string"},
        "client_id": {"type": ["string", "null"]},
        "requests": {"type": "integer", "description": "responses counted in the window"},
        "rps": {"type": "number", "description": "responses per second over the window"},
        "success_rate": {"type": ["number", "null"], "description": "non-5xx share, 0-1"},
        "latency_ms": {
            "type": ["object", "null"],
            "properties": {q: {"type": ["number", "null"]} for q in ("p50", "p95", "p99")},
        },
        "tcp_connections": {"type": "integer"},
        "proxies": {"type": "integer", "description": "proxies that reported"},
        "instances": {"type": "integer", "description": "instances in the catalog"},
    },
}
SCHEMAS: dict[str, Any] = {
    "MetricsView": {
        "type": "object",
        "properties": {
            "window_seconds": {"type": "number"},
            "generated_at": {"type": "number", "description": "the server's clock, Unix s"},
            "rows": {"type": "array", "items": ref("MetricsRow")},
        },
    },
    "MetricsRow": _ROW,
    "MetricsPush": {
        "type": "object",
        "required": ["lease", "proxies"],
        "description": "registry/_metrics_sample.py describes every field and bound",
        "properties": {"lease": {"type": "string"}, "proxies": {"type": "array"}},
    },
}
AREA: Area[Context] = Area("native", "metrics", SCHEMAS)
_WINDOW = Param("window", {"type": "string", "example": "1m"}, "10s to 1h (default 1m)")
_SERVICE = Param("service", description="Only this service")
_VIEW = json_reply("Golden metrics over the window", ref("MetricsView"))


def mount(router: Router, ctx: Context) -> None:
    AREA.mount(router, ctx)


def _sample_ts(kv: KeyValue) -> float:
    match = _TS.match(kv.value)
    return float(match.group(1)) if match else 0.0


def fine_slots(resolution: float) -> int:
    return max(2, math.ceil(FINE_SPAN / resolution))


def coarse_slot(now: float) -> str:
    return f"m{int(now // COARSE_STEP) % COARSE_SLOTS}"


def slots(now: float, resolution: float, coarse_held: float | None) -> list[str]:
    """The ring slots a sample taken at `now` goes to: its fine slot always, its minute's
    coarse slot unless that already holds a sample of this minute (`coarse_held`: the time
    of the sample there). Slots are reused round the ring, so a node's keys never grow."""
    names = [f"s{int(now // resolution) % fine_slots(resolution)}"]
    if coarse_held is None or int(coarse_held // COARSE_STEP) != int(now // COARSE_STEP):
        names.append(coarse_slot(now))
    return names


@AREA.route(
    "POST",
    "/v1/metrics/push",
    summary="Store this node's proxies' counters (agent token; one push per min interval)",
    errors=(404, 429, 503),
    body=Body(ref("MetricsPush")),
    ok=json_reply("Stored", {"type": "object"}),
)
async def push_metrics(ctx: Context, request: Request) -> Response:
    token = ctx.token(request)
    if token is None or token.role is not Role.AGENT:
        raise Forbidden("pushing metrics needs an agent token (bound to the node it reports)")
    options = ctx.options
    lease_hex, proxies = decode_push(request.json(), PushLimits(options.metrics_sample_bytes))
    lease = int(lease_hex, 16)
    owner = ctx.catalog.lease_owner(lease)
    if owner is None or owner.get("node") != token.node:
        raise Forbidden(f"lease: {lease_hex} is not a live lease of node {token.node!r}")
    now = ctx.clock()
    held = ctx.mirror.metric_samples.get(token.node, {})
    if held:
        newest = max(held.values(), key=lambda kv: kv.mod_revision)
        wait = _sample_ts(newest) + options.metrics_min_interval - now
        # A sample "from the future" was timed by a server whose clock runs ahead: that is
        # no reason to refuse this node for as long as the clocks disagree.
        if 0 < wait <= options.metrics_min_interval:
            raise TooManyRequests(
                f"one push per {options.metrics_min_interval:g}s per node; "
                f"try again in {wait:.1f}s",
                retry_after=wait,
            )
    value = encode_sample(now, proxies, PushLimits(options.metrics_sample_bytes))
    coarse = held.get(coarse_slot(now))
    names = slots(now, options.metrics_resolution, _sample_ts(coarse) if coarse else None)
    ops: list[Put | Delete] = [Put(ctx.keys.metrics(token.node, n), value, lease) for n in names]
    await ctx.catalog.commit(ops)
    return Response.json({"stored": [op.key.rpartition("/")[2] for op in ops], "ts": now})


def _pairs(ctx: Context, window: float, now: float) -> list[tuple[Sample, Sample]]:
    resolution = ctx.options.metrics_resolution
    grace = 3 * max(resolution, ctx.options.metrics_min_interval)
    if window + resolution >= FINE_SPAN:
        grace += COARSE_STEP  # such windows start among the one-minute samples
    out = []
    for slots in list(ctx.mirror.metric_samples.values()):
        chosen = pick(((_sample_ts(kv), kv) for kv in slots.values()), now, window, grace)
        if chosen is None:
            continue
        (_, newest), (_, base) = chosen
        try:
            out.append((Sample.from_json(newest.value), Sample.from_json(base.value)))
        except (ValueError, KeyError, TypeError):
            continue  # written by hand or by another version: that node sits out
    return out


class _Recent:
    """Views answered in the last second, shared by everyone asking the same: a view decodes
    two samples per node and folds every series, and a wall of dashboards polling together
    should cost one of those, not one each. Keyed on the raw parameters a view reads (so
    nothing else of a query string is held), at most `size` entries."""

    def __init__(self, ttl: float = 1.0, size: int = 256) -> None:
        self.ttl, self.size = ttl, size
        self.views: dict[tuple[str, ...], tuple[float, bytes]] = {}

    def get(self, key: tuple[str, ...], now: float) -> bytes | None:
        hit = self.views.get(key)
        return hit[1] if hit is not None and hit[0] > now else None

    def put(self, key: tuple[str, ...], now: float, body: bytes) -> None:
        if len(self.views) >= self.size:
            self.views = {k: v for k, v in self.views.items() if v[0] > now}
            if len(self.views) >= self.size:
                self.views.clear()
        self.views[key] = (now + self.ttl, body)


_VIEW_PARAMS = ("window", "service", "to", "from", "by")


def _shared(handler: Handler) -> Handler:
    @functools.wraps(handler)
    async def answer(ctx: Context, request: Request) -> Response:
        ctx.reader(request)  # the token is checked before anything is served from memory
        recent: _Recent = ctx.__dict__.setdefault("_metrics_recent", _Recent())
        key = (request.path, *(request.arg(name) or "" for name in _VIEW_PARAMS))
        now = time.monotonic()
        body = recent.get(key, now)
        if body is not None:
            return Response(body=body)
        resp = await handler(ctx, request)
        if resp.status == 200:
            recent.put(key, now, resp.body)
        return resp

    return answer


def _view(ctx: Context, window: float, now: float, rows: list[dict[str, Any]]) -> Response:
    return Response.json({"window_seconds": window, "generated_at": round(now, 3), "rows": rows})


def _optional_service(request: Request, name: str) -> str | None:
    raw = request.arg(name)
    return service_name(raw, name) if raw else None


@AREA.route(
    "GET",
    "/v1/metrics/stat",
    summary="Success rate, RPS and latency per service (or instance, or caller/callee)",
    auth="read",
    errors=(400,),
    query=(
        _SERVICE,
        _WINDOW,
        Param(
            "to",
            description="Rows per caller of this service (as callers' proxies saw it; "
            "`service` then names the caller)",
        ),
        Param(
            "from", description="Rows per service this one calls (`service` then names the callee)"
        ),
        Param("by", {"enum": ["service", "instance"]}, "Group by service (default) or instance"),
    ),
    ok=_VIEW,
)
@_shared
async def metrics_stat(ctx: Context, request: Request) -> Response:
    ctx.reader(request)
    window = parse_window(request.arg("window"))
    service = _optional_service(request, "service")
    to, frm = _optional_service(request, "to"), _optional_service(request, "from")
    by = request.arg("by") or "service"
    if by not in ("service", "instance"):
        raise InvalidInput(f"by: {by!r} is not 'service' or 'instance'", field="by")
    now = ctx.clock()
    pairs = _pairs(ctx, window, now)
    if to is not None or frm is not None:

        def outbound(p: dict[str, Any], d: str, peer: str, route: str) -> Any:
            if d != "outbound":
                return None
            if to is not None and peer != to:
                return None
            if frm is not None and p["service"] != frm:
                return None
            # With ?to= the service named is a caller; with ?from= it is a callee.
            if service is not None and service != (p["service"] if to is not None else peer):
                return None
            return (p["service"], peer), {"from": p["service"], "to": peer}

        return _view(ctx, window, now, aggregate(pairs, outbound))

    def labels(p: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        if by == "instance":
            return (p["service"], p["instance"]), {
                "service": p["service"],
                "instance": p["instance"],
            }
        return p["service"], {"service": p["service"]}

    def inbound(p: dict[str, Any], d: str, peer: str, route: str) -> Any:
        if d != "inbound" or (service is not None and p["service"] != service):
            return None
        return labels(p)

    def opened(p: dict[str, Any]) -> Any:
        if service is not None and p["service"] != service:
            return None
        return (*labels(p), inbound_open(p))

    rows = aggregate(pairs, inbound, opened)
    for row in rows:
        row["instances"] = len(ctx.mirror.instances.get(row["service"], {}))
    return _view(ctx, window, now, rows)


@AREA.route(
    "GET",
    "/v1/metrics/edges",
    summary="Caller -> callee edges with the caller's verified SPIFFE ID",
    auth="read",
    errors=(400,),
    query=(_SERVICE, _WINDOW),
    ok=_VIEW,
)
@_shared
async def metrics_edges(ctx: Context, request: Request) -> Response:
    ctx.reader(request)
    window = parse_window(request.arg("window"))
    service = _optional_service(request, "service")
    now = ctx.clock()

    def edge(p: dict[str, Any], d: str, peer: str, route: str) -> Any:
        if d != "inbound" or (service is not None and service not in (p["service"], peer)):
            return None
        client_id = next((i for dd, pp, i in p.get("peer_ids", []) if (dd, pp) == (d, peer)), None)
        return (peer, p["service"]), {
            "from": peer,
            "to": p["service"],
            "client_id": client_id,
            "server_id": p.get("identity"),
        }

    return _view(ctx, window, now, aggregate(_pairs(ctx, window, now), edge))


@AREA.route(
    "GET",
    "/v1/metrics/routes",
    summary="Golden metrics per route of a service, as its callers' proxies counted them",
    auth="read",
    errors=(400,),
    query=(
        Param("service", description="The service whose routes", required=True),
        _WINDOW,
        Param("from", description="Only calls from this service"),
    ),
    ok=_VIEW,
)
@_shared
async def metrics_routes(ctx: Context, request: Request) -> Response:
    ctx.reader(request)
    window = parse_window(request.arg("window"))
    raw = request.arg("service")
    if not raw:
        raise InvalidInput("service: required (the service whose routes to show)", field="service")
    service = service_name(raw, "service")
    frm = _optional_service(request, "from")
    now = ctx.clock()

    def by_route(p: dict[str, Any], d: str, peer: str, route: str) -> Any:
        if d != "outbound" or peer != service or (frm is not None and p["service"] != frm):
            return None
        return route, {"route": route, "service": service}

    rows = aggregate(_pairs(ctx, window, now), by_route)
    seen = {row["route"] for row in rows}
    for name in _configured_routes(ctx, service):
        if name not in seen:  # a route nobody took in the window still shows, empty
            rows.append(
                {
                    "route": name,
                    "service": service,
                    "requests": 0,
                    "rps": 0.0,
                    "success_rate": None,
                    "latency_ms": None,
                    "tcp_connections": 0,
                    "proxies": 0,
                }
            )
    return _view(ctx, window, now, rows)


def _configured_routes(ctx: Context, service: str) -> list[str]:
    kv = ctx.mirror.raw.get(ctx.keys.config("Route", service))
    if kv is None:
        return []
    try:
        rules = json.loads(kv.value)["spec"].get("rules", [])
        return [str(r["name"]) for r in rules if isinstance(r, dict) and r.get("name")]
    except (ValueError, KeyError, TypeError, AttributeError):
        return []


@AREA.route(
    "GET",
    "/v1/metrics/proxies",
    summary="Every proxy that reported recently, with its admin address (for tap and top)",
    auth="read",
    errors=(400,),
    query=(_SERVICE,),
    ok=json_reply("The proxies", {"type": "object"}),
)
async def metrics_proxies(ctx: Context, request: Request) -> Response:
    ctx.reader(request)
    service = _optional_service(request, "service")
    now = ctx.clock()
    out = []
    for node, sample in newest_samples(ctx.mirror.metric_samples):
        for p in sample.proxies:
            if service is not None and p["service"] != service:
                continue
            out.append(
                {
                    "service": p["service"],
                    "instance": p["instance"],
                    "node": node,
                    "admin": p.get("admin"),
                    "identity": p.get("identity"),
                    "age_seconds": round(now - sample.ts, 3),
                }
            )
    return Response.json({"proxies": out})


@AREA.route(
    "GET",
    "/v1/metrics/targets",
    summary="Every sidecar's metrics address in Prometheus' HTTP service-discovery format",
    auth="read",
    ok=json_reply(
        "[{targets: [host:port], labels: {service, instance_id, node}}]",
        {"type": "array", "items": {"type": "object"}},
    ),
)
async def metrics_targets(ctx: Context, request: Request) -> Response:
    # The same `weft_metrics` meta Consul discovery reads (`__meta_consul_service_metadata_`),
    # for Prometheus builds without Consul discovery (Debian's, for one): `http_sd_configs`.
    ctx.reader(request)
    groups = []
    for service, instances in sorted(ctx.mirror.instances.items()):
        for (node, iid), inst in sorted(instances.items()):
            address = inst.meta.get(METRICS_META)
            if address:
                labels = {"service": service, "instance_id": iid, "node": node}
                groups.append({"targets": [address], "labels": labels})
    return Response.json(groups)
