"""`weft convert -f FILE|DIR|-`: print other meshes' documents as Weft resources.

Reads Linkerd ServiceProfile, Istio VirtualService and DestinationRule, Gateway API
HTTPRoute (and Linkerd's policy.linkerd.io HTTPRoute) and SMI TrafficSplit (with the
HTTPRouteGroups its matches name) documents as written (weft.dev/v1 ones pass unchanged) and
prints the Weft documents `weft apply` would store, as YAML, without contacting the server.
HTTPRoutes of one Service in the files are merged into its one Route. docs/importers.md has
the whole mapping.
Warnings and notes go to standard error; `--strict` refuses on any warning.
"""

from __future__ import annotations

import argparse
import json
import sys

import yaml

from ._resource_files import add_strict_flag, check_locally, load_importing


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="print other meshes' traffic resources as Weft resources (stores nothing)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-f",
        "--filename",
        action="append",
        required=True,
        metavar="FILE|DIR|-",
        help="a YAML or JSON file, a directory of them, or - for standard input (repeatable)",
    )
    parser.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml")
    add_strict_flag(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    docs, origins = load_importing(args.filename, args.strict)
    check_locally(docs, origins)
    if args.output == "json":
        json.dump(docs, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        yaml.safe_dump_all(docs, sys.stdout, sort_keys=False)
    return 0
