"""`weft service show|register|deregister`: one service's instances, or change them."""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from pathlib import Path
from typing import Any

import yaml

from ._client import add_client_flags, call
from ._output import CommandError, add_output_flag, print_json, print_table


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "service",
        help="show, register or deregister service instances",
        description="Show a service's instances, or register/deregister instances from a file.",
    )
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    show = sub.add_parser("show", help="instances of a service with their checks")
    show.add_argument("name")
    show.add_argument("--passing", action="store_true", help="only passing instances")
    add_output_flag(show)
    add_client_flags(show)
    show.set_defaults(func=run_show)

    reg = sub.add_parser(
        "register",
        help="register instances from a JSON, YAML or TOML file",
        description="The file holds one instance or a list of them, in the native shape: "
        "service, id, node, address, port, protocol, tags, meta, weights, checks. "
        "See docs/api.md.",
    )
    reg.add_argument("file", help="file to read ('-' for standard input, as JSON or YAML)")
    add_client_flags(reg)
    reg.set_defaults(func=run_register)

    dereg = sub.add_parser("deregister", help="remove an instance (and its checks)")
    dereg.add_argument("service")
    dereg.add_argument("id")
    dereg.add_argument("--node", default="weft", help="node of the instance [default: weft]")
    add_client_flags(dereg)
    dereg.set_defaults(func=run_deregister)


def run_show(args: argparse.Namespace) -> int:
    instances, _ = call(args, lambda c: c.service(args.name, passing=args.passing))
    if args.output == "json":
        print_json(instances)
        return 0
    if not instances:
        print(f"no instances of {args.name}", file=sys.stderr)
        return 0
    rows = [
        (
            i["id"],
            i["node"],
            f"{i['address']}:{i['port']}",
            i["status"],
            i["source"],
            ", ".join(f"{c['id']}={c['status']}" for c in i["checks"]),
        )
        for i in instances
    ]
    print_table(("ID", "NODE", "ADDRESS", "STATUS", "SOURCE", "CHECKS"), rows)
    return 0


def load_documents(path: str) -> list[dict[str, Any]]:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}", 66) from None
    try:
        if path.endswith(".toml"):
            data: Any = tomllib.loads(text)
            data = data.get("instances", data)
        elif path.endswith(".json"):
            data = json.loads(text)
        else:
            data = yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise CommandError(f"{path} is not valid: {exc}", 65) from None
    docs = data if isinstance(data, list) else [data]
    if not all(isinstance(d, dict) for d in docs):
        raise CommandError(f"{path}: expected an instance object or a list of them", 65)
    return docs


def run_register(args: argparse.Namespace) -> int:
    docs = load_documents(args.file)

    async def work(client: Any) -> list[dict[str, Any]]:
        return [await client.register(doc) for doc in docs]

    for done in call(args, work):
        print(f"registered {done['service']}/{done.get('id', '')} on node {done.get('node', '')}")
    return 0


def run_deregister(args: argparse.Namespace) -> int:
    call(args, lambda c: c.deregister(args.service, args.node, args.id))
    print(f"deregistered {args.service}/{args.id} on node {args.node}")
    return 0
