"""Live request summaries gathered from every proxy of a service (`weft tap`, `weft top`).

The servers say where a service's proxies are (`/v1/metrics/proxies`: each proxy's admin
address, as its agent reported it); each proxy's admin `/tap` streams one JSON summary per
request while someone reads. Those streams are merged into one channel, each summary tagged
with the proxy's service and instance. A proxy whose stream ends is asked again after a
second, so a restarted sidecar rejoins. `Filter` and `Top` are pure.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import trio

from ._client import call
from ._output import CommandError


@dataclass(frozen=True)
class Filter:
    method: str | None = None
    path: str | None = None  # a prefix
    status: str | None = None  # "503", "5xx"
    direction: str | None = None

    def __call__(self, event: dict[str, Any]) -> bool:
        if self.method and str(event.get("method", "")).upper() != self.method.upper():
            return False
        if self.path and not str(event.get("path", "")).startswith(self.path):
            return False
        if self.direction and event.get("direction") != self.direction:
            return False
        if self.status:
            status = str(event.get("status", ""))
            if self.status.endswith("xx"):
                return status[:1] == self.status[:1]
            return status == self.status
        return True


def check_status(raw: str | None) -> str | None:
    if raw is None:
        return None
    if (len(raw) == 3 and raw.isdigit()) or (
        len(raw) == 3 and raw[0] in "12345" and raw[1:] == "xx"
    ):
        return raw
    raise CommandError(f"--status: {raw!r} is not a status code (503) or class (5xx)", 64)


def add_tap_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "target",
        metavar="SERVICE[/INSTANCE]",
        help="whose proxies: a service, one of its instances, or an instance ID alone",
    )
    parser.add_argument("--method", help="only requests with this method")
    parser.add_argument("--path", metavar="PREFIX", help="only requests whose path starts so")
    parser.add_argument("--status", help="only responses with this status (503) or class (5xx)")
    parser.add_argument(
        "--direction",
        choices=("inbound", "outbound"),
        help="only requests the proxies "
        "received from callers (inbound) or sent to upstreams (outbound)",
    )
    parser.add_argument(
        "--duration", metavar="DURATION", help="stop after this long (e.g. 10s) [default: never]"
    )


def proxies_of(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The target's proxies with an admin address: SERVICE, SERVICE/INSTANCE, or an
    instance ID alone when no service has that name."""
    service, _, instance = args.target.partition("/")
    from registry.validation import InvalidInput, instance_id

    try:
        instance_id(service, "target")
    except InvalidInput as exc:
        raise CommandError(exc.message, 64) from None
    if instance:
        doc = call(args, lambda client: client.metrics("proxies", service=service))
        found = [p for p in doc["proxies"] if p["instance"] == instance]
    else:
        doc = call(args, lambda client: client.metrics("proxies"))
        found = [p for p in doc["proxies"] if p["service"] == service]
        found = found or [p for p in doc["proxies"] if p["instance"] == service]
    found = [p for p in found if p.get("admin")]
    if not found:
        what = f"instance {instance!r} of {service!r}" if instance else repr(args.target)
        raise CommandError(
            f"no proxy of {what} has reported to the servers (is its agent running, with "
            "metrics_interval on?)"
        )
    return found


def duration_of(raw: str | None) -> float:
    if raw is None:
        return math.inf
    from registry.validation import InvalidInput, parse_duration

    try:
        return parse_duration(raw, "duration")
    except InvalidInput as exc:
        raise CommandError(f"--duration: {exc.message.partition(': ')[2]}", 64) from None


async def _follow(
    http: httpx.AsyncClient, proxy: dict[str, Any], send: trio.MemorySendChannel[dict[str, Any]]
) -> None:
    while True:
        try:
            async with http.stream("GET", f"http://{proxy['admin']}/tap") as resp:
                async for line in resp.aiter_lines():
                    if not line.strip():
                        continue
                    try:
                        event = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(event, dict):
                        event["service"] = proxy["service"]
                        event["instance"] = proxy["instance"]
                        await send.send(event)
        except httpx.HTTPError:
            pass
        await trio.sleep(1)


async def stream(
    proxies: list[dict[str, Any]],
    handle: Callable[[dict[str, Any]], bool],
    *,
    duration: float,
    tick: Callable[[], None] | None = None,
    tick_every: float = 1.0,
) -> None:
    """Feed every summary to `handle` (False: stop) until `duration` passes; `tick` runs
    every `tick_every` seconds (a live table's refresh)."""
    send, receive = trio.open_memory_channel[dict[str, Any]](1024)
    timeout = httpx.Timeout(5.0, read=None)
    async with (
        httpx.AsyncClient(trust_env=False, timeout=timeout) as http,
        trio.open_nursery() as nursery,
    ):
        for proxy in proxies:
            nursery.start_soon(_follow, http, proxy, send)
        deadline = trio.current_time() + duration if math.isfinite(duration) else math.inf
        next_tick = trio.current_time() + tick_every
        while True:
            wake = min(deadline, next_tick if tick else math.inf)
            with trio.move_on_at(wake):
                event = await receive.receive()
                if not handle(event):
                    break
                continue
            now = trio.current_time()
            if now >= deadline:
                break
            if tick is not None and now >= next_tick:
                tick()
                next_tick = now + tick_every
        nursery.cancel_scope.cancel()


def when(event: dict[str, Any]) -> str:
    ts = event.get("ts")
    if not isinstance(ts, int | float):
        return "-"
    return time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int(ts * 1000) % 1000:03d}"


def is_tty() -> bool:
    return sys.stdout.isatty()
