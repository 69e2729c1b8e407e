"""`weft get KIND [NAME]`: show stored traffic resources (Route, ServiceDefaults, Subset,
Gateway, ExternalService)."""

from __future__ import annotations

import argparse
import json
import sys

import yaml

from ._client import add_client_flags, call
from ._output import CommandError, print_table


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("get", help="show stored traffic resources")
    parser.add_argument(
        "kind", help="Route, ServiceDefaults, Subset, Gateway, ExternalService (or 'all')"
    )
    parser.add_argument("name", nargs="?", help="one resource; all of the kind if absent")
    parser.add_argument(
        "-o",
        "--output",
        choices=("table", "yaml", "json"),
        default="table",
        help="a table, or the documents as YAML or JSON [default: table]",
    )
    add_client_flags(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.name:
        found = call(args, lambda c: c.resource(args.kind, args.name))
        if found is None:
            raise CommandError(f"no {args.kind} named {args.name!r}", 1)
        docs = [found]
    else:
        kind = None if args.kind == "all" else args.kind
        docs = call(args, lambda c: c.resources(kind))[0]
    if args.output == "json":
        json.dump(docs if not args.name else docs[0], sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    elif args.output == "yaml":
        yaml.safe_dump_all(docs, sys.stdout, sort_keys=False)
    else:
        rows = [
            [d["kind"], d["metadata"]["name"], _target(d), d["metadata"].get("revision")]
            for d in docs
        ]
        print_table(["KIND", "NAME", "SERVICE", "REVISION"], rows)
    return 0


def _target(doc: dict) -> str:  # type: ignore[type-arg]
    spec = doc.get("spec", {})
    if doc["kind"] == "ServiceDefaults":
        return str(doc["metadata"]["name"])
    if doc["kind"] == "Gateway":
        return str(spec.get("service") or doc["metadata"]["name"])
    if "gateway" in spec:  # a Route at a gateway: the Gateway it binds to
        return f"gateway/{spec['gateway']}"
    if doc["kind"] == "ExternalService":  # what the apps call: host:port/protocol
        ports = ",".join(f"{p['port']}/{p['protocol']}" for p in spec.get("ports", []))
        return f"{','.join(spec.get('hosts', []))}:{ports}"
    service = spec.get("service", "")
    return f"{service}/{spec['subset']}" if doc["kind"] == "Subset" else str(service)
