"""`weft tap SERVICE[/INSTANCE]`: live requests through a service's sidecars."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import trio

from ._client import add_client_flags
from ._output import CommandError, add_output_flag
from ._tap_stream import (
    Filter,
    add_tap_flags,
    check_status,
    duration_of,
    proxies_of,
    stream,
    when,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "tap",
        help="watch live requests through a service's sidecars",
        description="Print each request that passes through the sidecars of SERVICE (or of "
        "one instance), gathered from every proxy's admin /tap stream, as it completes. "
        "Stops on Ctrl-C, after --count requests or after --duration. With -o json: one JSON "
        "object per line.",
    )
    add_tap_flags(parser)
    parser.add_argument("--count", type=int, metavar="N", help="stop after N requests")
    add_output_flag(parser)
    add_client_flags(parser)
    parser.set_defaults(func=run)


def line(event: dict[str, Any]) -> str:
    direction = event.get("direction", "?")
    if direction == "inbound":
        caller = str(event.get("client_id") or "?").rpartition("/")[2]
        path = f"{caller} -> {event.get('service')}"
    else:
        path = f"{event.get('service')} -> {event.get('upstream') or '?'}"
    parts = [
        when(event),
        f"{direction:<8}",
        path,
        str(event.get("method", "")),
        str(event.get("path", "")),
        str(event.get("status", "")),
        f"{event.get('latency_ms', 0):.1f}ms",
        f"instance={event.get('instance')}",
    ]
    if event.get("route"):
        parts.append(f"route={event['route']}")
    if event.get("error"):
        parts.append(f"error={event['error']!r}")
    return " ".join(parts)


def run(args: argparse.Namespace) -> int:
    if args.count is not None and args.count < 1:
        raise CommandError("--count: must be at least 1", 64)
    wanted = Filter(args.method, args.path, check_status(args.status), args.direction)
    duration = duration_of(args.duration)
    proxies = proxies_of(args)
    seen = 0

    def handle(event: dict[str, Any]) -> bool:
        nonlocal seen
        if not wanted(event):
            return True
        seen += 1
        if args.output == "json":
            sys.stdout.write(json.dumps(event, sort_keys=True) + "\n")
        else:
            sys.stdout.write(line(event) + "\n")
        sys.stdout.flush()
        return args.count is None or seen < args.count

    try:
        trio.run(lambda: stream(proxies, handle, duration=duration))
    except KeyboardInterrupt:
        return 0
    return 0
