"""`weft diff -f FILE|DIR|-`: what `weft apply` would change, as a unified diff of YAML.

Exit status 0 when nothing would change, 1 when something would (as `diff` and
`kubectl diff` do), 65 when a file is invalid.
"""

from __future__ import annotations

import argparse
import difflib
import sys

import yaml

from ._client import add_client_flags, call
from ._resource_files import add_strict_flag, check_locally, load_importing


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "diff", help="show what applying files would change", description=__doc__
    )
    parser.add_argument("-f", "--filename", action="append", required=True, metavar="FILE|DIR|-")
    add_strict_flag(parser)
    add_client_flags(parser)
    parser.set_defaults(func=run)


def _comparable(doc: dict | None) -> str:  # type: ignore[type-arg]
    if doc is None:
        return ""
    meta = {k: v for k, v in doc["metadata"].items() if k in ("name", "labels")}
    clean = {
        "apiVersion": doc["apiVersion"],
        "kind": doc["kind"],
        "metadata": meta,
        "spec": doc["spec"],
    }
    return yaml.safe_dump(clean, sort_keys=True)


def run(args: argparse.Namespace) -> int:
    docs, _ = load_importing(args.filename, args.strict)
    check_locally(docs, _)

    async def work(client):  # type: ignore[no-untyped-def]
        return [await client.resource(d["kind"], d["metadata"]["name"]) for d in docs]

    current = call(args, work)
    changed = False
    for doc, old in zip(docs, current, strict=True):
        label = f"{doc['kind']}/{doc['metadata']['name']}"
        lines = list(
            difflib.unified_diff(
                _comparable(old).splitlines(keepends=True),
                _comparable(doc).splitlines(keepends=True),
                fromfile=f"{label} (stored)" if old else "/dev/null",
                tofile=f"{label} (file)",
            )
        )
        if lines:
            changed = True
            sys.stdout.writelines(lines)
    return 1 if changed else 0
