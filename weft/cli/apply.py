"""`weft apply -f FILE|DIR|-`: store traffic resources (Route, ServiceDefaults, Subset,
Gateway, ExternalService; docs/gateway.md, docs/egress.md).

Other meshes' documents are accepted as written (Linkerd ServiceProfile, Istio
VirtualService, DestinationRule and ServiceEntry, Gateway API or Linkerd HTTPRoute, SMI
TrafficSplit with its HTTPRouteGroups) and imported (docs/importers.md): what Weft cannot
honour is a warning, or with --strict a refusal.

The whole set is checked first, here and again by the server, and stored in one transaction
or not at all: a bad file changes nothing and the error names the file, the document and the
field. `--dry-run` checks everything and reports what would change without storing.
"""

from __future__ import annotations

import argparse

from ._client import add_client_flags, call
from ._output import CommandError
from ._resource_files import EX_DATAERR, add_strict_flag, check_locally, load_importing, locate


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "apply",
        help="store traffic resources from files (validated as a whole)",
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
    parser.add_argument(
        "--dry-run", action="store_true", help="validate and show what would change; store nothing"
    )
    add_strict_flag(parser)
    add_client_flags(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from registry.client import APIError

    docs, origins = load_importing(args.filename, args.strict)
    check_locally(docs, origins)

    async def work(client):  # type: ignore[no-untyped-def]
        try:
            return await client.apply_resources(docs, dry_run=args.dry_run)
        except APIError as exc:
            if exc.problems:
                lines = "\n  ".join(locate(p, origins) for p in exc.problems)
                raise CommandError(f"refused, nothing was stored:\n  {lines}", EX_DATAERR) from None
            raise

    results = call(args, work)
    suffix = " (dry run)" if args.dry_run else ""
    for item in results:
        revision = f" at revision {item['revision']}" if item.get("revision") else ""
        print(f"{item['kind']}/{item['name']} {item['action']}{revision}{suffix}")
    return 0
