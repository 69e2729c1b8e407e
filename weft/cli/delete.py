"""`weft delete KIND NAME` or `weft delete -f FILE`: remove stored traffic resources."""

from __future__ import annotations

import argparse

from ._client import add_client_flags, call
from ._output import CommandError
from ._resource_files import load


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("delete", help="remove stored traffic resources")
    parser.add_argument("kind", nargs="?", help="Route, ServiceDefaults, Subset or ExternalService")
    parser.add_argument("name", nargs="?")
    parser.add_argument(
        "-f",
        "--filename",
        action="append",
        metavar="FILE|DIR|-",
        help="delete the resources these files define",
    )
    add_client_flags(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.filename:
        docs, _ = load(args.filename)
        targets = [(d.get("kind"), (d.get("metadata") or {}).get("name")) for d in docs]
    elif args.kind and args.name:
        targets = [(args.kind, args.name)]
    else:
        raise CommandError("give KIND NAME, or -f FILE", 64)

    async def work(client):  # type: ignore[no-untyped-def]
        done = []
        for kind, name in targets:
            if await client.resource(kind, name) is None:
                done.append(f"{kind}/{name} not found")
                continue
            result = await client.delete_resource(kind, name)
            done.append(
                f"{result['kind']}/{result['name']} deleted at revision {result['revision']}"
            )
        return done

    for line in call(args, work):
        print(line)
    return 0
