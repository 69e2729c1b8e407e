"""`weft top SERVICE[/INSTANCE]`: a live table of the busiest paths through its sidecars."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import trio

from ._client import add_client_flags
from ._output import CommandError, add_output_flag, print_table
from ._tap_stream import (
    Filter,
    add_tap_flags,
    check_status,
    duration_of,
    is_tty,
    proxies_of,
    stream,
)
from ._top_table import Top

HEADERS = ("DIRECTION", "FROM", "TO", "METHOD", "PATH", "COUNT", "BEST", "WORST", "LAST", "SUCCESS")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "top",
        help="live table of the busiest paths through a service's sidecars",
        description="Count the requests through the sidecars of SERVICE (from every proxy's "
        "admin /tap) by direction, caller, callee, method and path, and show the busiest, "
        "refreshed in place every --refresh on a terminal (a new table each time otherwise; "
        "-o json: one JSON document per line). Stops on Ctrl-C or after --duration.",
    )
    add_tap_flags(parser)
    parser.add_argument("--rows", type=int, default=20, metavar="N", help="rows shown [20]")
    parser.add_argument(
        "--refresh", default="1s", metavar="DURATION", help="time between refreshes [1s]"
    )
    add_output_flag(parser)
    add_client_flags(parser)
    parser.set_defaults(func=run)


def _cells(row: dict[str, Any]) -> list[Any]:
    return [
        row["direction"],
        row["from"],
        row["to"],
        row["method"],
        row["path"],
        row["count"],
        f"{row['best_ms']:.1f}ms",
        f"{row['worst_ms']:.1f}ms",
        f"{row['last_ms']:.1f}ms",
        f"{row['success_rate'] * 100:.2f}%",
    ]


def run(args: argparse.Namespace) -> int:
    if args.rows < 1:
        raise CommandError("--rows: must be at least 1", 64)
    refresh = duration_of(args.refresh)
    if not 0.1 <= refresh <= 60:
        raise CommandError("--refresh: must be between 100ms and 60s", 64)
    wanted = Filter(args.method, args.path, check_status(args.status), args.direction)
    duration = duration_of(args.duration)
    proxies = proxies_of(args)
    top = Top()
    tty = is_tty() and args.output != "json"

    def handle(event: dict[str, Any]) -> bool:
        if wanted(event):
            top.add(event)
        return True

    def draw() -> None:
        rows = top.rows(args.rows)
        if args.output == "json":
            sys.stdout.write(json.dumps({"rows": rows}, sort_keys=True) + "\n")
        else:
            if tty:
                sys.stdout.write("\x1b[H\x1b[2J")  # home and clear: the table redraws in place
            print_table(HEADERS, [_cells(r) for r in rows])
            if not tty:
                sys.stdout.write("\n")
        sys.stdout.flush()

    try:
        trio.run(lambda: stream(proxies, handle, duration=duration, tick=draw, tick_every=refresh))
    except KeyboardInterrupt:
        pass
    draw()
    return 0
