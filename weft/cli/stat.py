"""`weft stat [SERVICE] [--to S | --from S]`: golden metrics per service, instance or edge."""

from __future__ import annotations

import argparse

from ._golden import add_view_flags, fetch, show, stat_table
from ._output import CommandError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "stat",
        help="success rate, RPS and latency per service",
        description="Success rate, requests per second and p50/p95/p99 latency of every "
        "service (or one), as its sidecars served them over the window; with --to or --from, "
        "of the calls between services as the callers' sidecars saw them. Rates are "
        "increases over the whole window (not the last two samples); quantiles are "
        "interpolated from histogram buckets (docs/observability.md).",
    )
    parser.add_argument(
        "service",
        nargs="?",
        help="only this service (with --to: only this caller; with --from: only this callee)",
    )
    direction = parser.add_mutually_exclusive_group()
    direction.add_argument("--to", metavar="SERVICE", help="calls made to SERVICE, per caller")
    direction.add_argument(
        "--from", dest="from_", metavar="SERVICE", help="calls SERVICE made, per callee"
    )
    parser.add_argument(
        "-i", "--by-instance", action="store_true", help="one row per instance, not per service"
    )
    add_view_flags(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.by_instance and (args.to or args.from_):
        raise CommandError("--by-instance shows what instances served; not with --to/--from", 64)
    by = "instance" if args.by_instance else None
    doc = fetch(args, "stat", service=args.service, to=args.to, **{"from": args.from_, "by": by})
    headers, rows = stat_table(doc, by_instance=args.by_instance, edges=bool(args.to or args.from_))
    return show(args, doc, headers, rows)
