"""`GET /v1/metrics/tap`: live requests of a service's sidecars, for a browser.

A browser cannot reach the sidecars' admin ports (loopback on their hosts, no CORS), so the
server reads their `/tap` streams for it: each call opens every matching proxy's `/tap` (the
admin addresses the agents reported with their metrics), collects summaries for `wait`
seconds and answers them as one JSON document; the dashboard polls. Bounds, so a dashboard (or
anyone with a read token) cannot turn a server into a load on the sidecars: a call lasts at
most `wait` (10 s), keeps at most `max` summaries (500; the rest are counted as `dropped`, so
events per second per caller stay at most max/wait), reads at most 32 proxies and 16 KiB per
line, and at most `MAX_CONCURRENT` taps run on a server at once (more is 429).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import trio

from ._context import Context
from ._endpoints import Area, Param, json_reply
from ._errors import InvalidInput, TooManyRequests
from ._metrics_api import SCHEMAS
from ._metrics_window import newest_samples
from ._numbers import parse_duration
from ._validate import instance_id, service_name
from .web import Request, Response, Router

MAX_CONCURRENT = 8
MAX_PROXIES = 32
MAX_LINE = 16 << 10
MAX_EVENTS = 500
MAX_WAIT = 10.0

AREA: Area[Context] = Area("native", "metrics", SCHEMAS)


def mount(router: Router, ctx: Context) -> None:
    AREA.mount(router, ctx)


def proxies_of(ctx: Context, service: str, instance: str | None) -> list[dict[str, Any]]:
    """The service's proxies with an admin address, from each node's newest sample."""
    out = []
    for node, sample in newest_samples(ctx.mirror.metric_samples):
        for p in sample.proxies:
            if p["service"] != service or not p.get("admin"):
                continue
            if instance is not None and p["instance"] != instance:
                continue
            out.append({"service": service, "instance": p["instance"], "node": node, **p})
    return out[:MAX_PROXIES]


class _Collected:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.events: list[dict[str, Any]] = []
        self.dropped = 0
        self.unreachable: list[str] = []

    def add(self, event: dict[str, Any]) -> None:
        if len(self.events) < self.limit:
            self.events.append(event)
        else:
            self.dropped += 1


async def _read(
    http: httpx.AsyncClient, proxy: dict[str, Any], into: _Collected, limit: int
) -> None:
    try:
        async with http.stream("GET", f"http://{proxy['admin']}/tap?limit={limit}") as resp:
            if resp.status_code != 200:
                into.unreachable.append(proxy["instance"])
                return
            pending = b""
            async for chunk in resp.aiter_bytes():
                pending += chunk
                *lines, pending = pending.split(b"\n")
                if len(pending) > MAX_LINE:
                    into.unreachable.append(proxy["instance"])
                    return  # not a tap stream: a summary is far shorter
                for line in lines:
                    try:
                        event = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(event, dict):
                        event["service"] = proxy["service"]
                        event["instance"] = proxy["instance"]
                        into.add(event)
    except httpx.HTTPError:
        into.unreachable.append(proxy["instance"])


def _when(event: dict[str, Any]) -> float:
    ts = event.get("ts")
    return float(ts) if isinstance(ts, int | float) else 0.0


@AREA.route(
    "GET",
    "/v1/metrics/tap",
    summary="Live requests through a service's sidecars, gathered for `wait` seconds "
    "(the dashboard polls it)",
    auth="read",
    errors=(400, 429),
    query=(
        Param("service", description="Whose sidecars", required=True),
        Param("instance", description="Only this instance's sidecar"),
        Param("wait", {"type": "string", "example": "2s"}, "How long to gather: 0.1s-10s [2s]"),
        Param("max", {"type": "integer"}, "Summaries kept, 1-500 [100]; the rest are counted"),
    ),
    ok=json_reply("{events: [...], dropped, proxies, unreachable: [instance]}", {"type": "object"}),
)
async def metrics_tap(ctx: Context, request: Request) -> Response:
    ctx.reader(request)
    raw = request.arg("service")
    if not raw:
        raise InvalidInput("service: required (whose sidecars to tap)", field="service")
    service = service_name(raw, "service")
    raw_instance = request.arg("instance")
    instance = instance_id(raw_instance, "instance") if raw_instance else None
    wait = parse_duration(request.arg("wait") or "2s", "wait")
    if not 0.1 <= wait <= MAX_WAIT:
        raise InvalidInput(f"wait: {request.arg('wait')!r} is outside 0.1s-10s", field="wait")
    raw_max = request.arg("max") or "100"
    if not raw_max.isdigit() or not 1 <= int(raw_max) <= MAX_EVENTS:
        raise InvalidInput(f"max: {raw_max[:20]!r} is not a number from 1 to 500", field="max")
    limit = int(raw_max)
    running: list[int] = ctx.__dict__.setdefault("_taps_running", [0])
    if running[0] >= MAX_CONCURRENT:
        raise TooManyRequests(
            f"{MAX_CONCURRENT} taps are already running on this server", retry_after=1.0
        )
    proxies = proxies_of(ctx, service, instance)
    collected = _Collected(limit)
    running[0] += 1
    try:
        timeout = httpx.Timeout(2.0, read=None)
        async with httpx.AsyncClient(trust_env=False, timeout=timeout) as http:
            with trio.move_on_after(wait):
                async with trio.open_nursery() as nursery:
                    for proxy in proxies:
                        nursery.start_soon(_read, http, proxy, collected, limit)
    finally:
        running[0] -= 1
    collected.events.sort(key=_when)
    return Response.json(
        {
            "events": collected.events,
            "dropped": collected.dropped,
            "proxies": len(proxies),
            "unreachable": collected.unreachable,
        },
        headers=[("Cache-Control", "no-store")],
    )
