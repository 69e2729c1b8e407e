"""`weft edges [SERVICE]`: who calls whom, with the caller's verified identity."""

from __future__ import annotations

import argparse

from ._golden import GOLDEN, add_view_flags, fetch, golden, show


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "edges",
        help="caller -> callee edges with their mTLS identity and golden metrics",
        description="Every caller -> callee edge that carried traffic in the window, as the "
        "callee's sidecar served it: the SPIFFE ID the caller presented (verified by mTLS), "
        "success rate, RPS and latency.",
    )
    parser.add_argument("service", nargs="?", help="only edges to or from this service")
    add_view_flags(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    doc = fetch(args, "edges", service=args.service)
    rows = [
        [r.get("from"), r.get("to"), r.get("client_id") or "-", *golden(r)] for r in doc["rows"]
    ]
    return show(args, doc, ("FROM", "TO", "CLIENT_ID", *GOLDEN), rows)
