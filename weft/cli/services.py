"""`weft services`: every service with its instances' health."""

from __future__ import annotations

import argparse

from ._client import add_client_flags, call
from ._output import add_output_flag, print_json, print_table


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "services",
        help="list services and their health",
        description="List every service in the registry with instance counts by health.",
    )
    add_output_flag(parser)
    add_client_flags(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    services = call(args, lambda client: client.services())
    if args.output == "json":
        print_json(services)
        return 0
    rows = [
        (
            s["name"],
            s["instances"],
            s["passing"],
            s["warning"],
            s["critical"],
            s["maintenance"],
            ",".join(s["tags"]),
        )
        for s in services
    ]
    print_table(("SERVICE", "INSTANCES", "PASSING", "WARNING", "CRITICAL", "MAINT", "TAGS"), rows)
    return 0
