"""`weft routes SERVICE`: golden metrics per route of a service."""

from __future__ import annotations

import argparse

from ._golden import GOLDEN, add_view_flags, fetch, golden, show


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "routes",
        help="success rate, RPS and latency per route of a service",
        description="Golden metrics per route of SERVICE (the names of its Route rules, and "
        "'default'), as its callers' sidecars counted them over the window. Routes with no "
        "traffic in the window are listed with '-'.",
    )
    parser.add_argument("service", help="the service whose routes")
    parser.add_argument(
        "--from", dest="from_", metavar="SERVICE", help="only calls made by SERVICE"
    )
    add_view_flags(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    doc = fetch(args, "routes", service=args.service, **{"from": args.from_})
    rows = [[r.get("route"), r.get("service"), *golden(r)] for r in doc["rows"]]
    return show(args, doc, ("ROUTE", "SERVICE", *GOLDEN), rows)
