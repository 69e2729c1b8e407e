"""`weft intention create|list|check|delete`: who may call whom (Consul's intentions).

An intention allows or denies calls from a source service to a destination service (`*` for
every service of the namespace, `ns/name` for another namespace, `*/*` for every service),
or carries L7 permissions that the destination's sidecar checks per request. The most precise
intention for a pair decides (docs/security.md has the precedence table); when none matches,
the server's `intention_default` does.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ._client import add_client_flags, call
from ._output import CommandError, add_output_flag, print_json, print_table

_EXAMPLES = """examples:
  weft intention create web api                  # allow web -> api
  weft intention create --deny '*' db            # deny every service -> db
  weft intention create web api --permissions perms.json
      perms.json: [{"Action": "allow", "HTTP": {"PathPrefix": "/public/", "Methods": ["GET"]}}]
  weft intention check web api                   # exit 0 allowed, 2 denied
  weft intention delete web api
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "intention",
        help="allow or deny calls between services (Consul intentions)",
        description=__doc__,
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    create = sub.add_parser(
        "create",
        help="create or replace the intention from SOURCE to DESTINATION",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _pair(create)
    verdict = create.add_mutually_exclusive_group()
    verdict.add_argument("--allow", action="store_true", help="allow the calls (the default)")
    verdict.add_argument("--deny", action="store_true", help="deny the calls")
    verdict.add_argument(
        "--permissions",
        metavar="FILE",
        help="L7 permissions instead of allow/deny: a JSON list in Consul's shape "
        "(Action, HTTP{PathExact|PathPrefix|PathRegex, Methods, Header}); '-' reads stdin",
    )
    create.add_argument("--description", default="", help="free text kept with the intention")
    create.add_argument(
        "--meta", action="append", default=[], metavar="KEY=VALUE", help="metadata (repeatable)"
    )
    add_output_flag(create)
    add_client_flags(create)
    create.set_defaults(func=run_create)

    listing = sub.add_parser("list", help="every intention, highest precedence first")
    add_output_flag(listing)
    add_client_flags(listing)
    listing.set_defaults(func=run_list)

    check = sub.add_parser(
        "check",
        help="would a connection from SOURCE to DESTINATION be allowed? (exit 0 yes, 2 no)",
    )
    _pair(check)
    add_output_flag(check)
    add_client_flags(check)
    check.set_defaults(func=run_check)

    delete = sub.add_parser("delete", help="delete the intention from SOURCE to DESTINATION")
    _pair(delete)
    add_client_flags(delete)
    delete.set_defaults(func=run_delete)


def _pair(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="SOURCE", help="a service, ns/service, '*' or '*/*'")
    parser.add_argument("destination", metavar="DESTINATION", help="the same forms")


def _body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {"Description": args.description}
    if args.permissions:
        try:
            raw = (
                sys.stdin.read() if args.permissions == "-" else Path(args.permissions).read_text()
            )
            body["Permissions"] = json.loads(raw)
        except OSError as exc:
            raise CommandError(
                f"--permissions: cannot read {args.permissions}: {exc}", 64
            ) from None
        except ValueError as exc:
            raise CommandError(f"--permissions: not JSON: {exc}", 64) from None
    else:
        body["Action"] = "deny" if args.deny else "allow"
    meta = {}
    for item in args.meta:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CommandError(f"--meta: {item!r} is not KEY=VALUE", 64)
        meta[key] = value
    if meta:
        body["Meta"] = meta
    return body


def _names(args: argparse.Namespace) -> tuple[Any, Any]:
    from registry.intentions import IntentionProblem, parse_name

    try:
        return parse_name(args.source, "Source"), parse_name(args.destination, "Destination")
    except IntentionProblem as exc:
        raise CommandError(str(exc), 64) from None


def run_create(args: argparse.Namespace) -> int:
    from registry.intentions import IntentionProblem, parse_body

    source, destination = _names(args)
    body = _body(args)
    try:  # the server checks again; this names the problem without a round trip
        parse_body(body, source=source, destination=destination)
    except IntentionProblem as exc:
        raise CommandError(str(exc), 64) from None

    async def work(client: Any) -> dict[str, Any] | None:
        await client.intention_put(args.source, args.destination, body)
        return await client.intention_get(args.source, args.destination)

    stored = call(args, work)
    if args.output == "json":
        print_json(stored)
    else:
        what = body.get("Action") or f"{len(body['Permissions'])} permissions"
        print(f"intention {args.source} => {args.destination} ({what})")
    return 0


def _verdict(i: dict[str, Any]) -> str:
    return i.get("Action") or f"L7 ({len(i.get('Permissions') or [])} permissions)"


def _name(ns: str, name: str) -> str:
    return name if ns == "default" else f"{ns}/{name}"


def run_list(args: argparse.Namespace) -> int:
    items = call(args, lambda c: c.intention_list())
    if args.output == "json":
        print_json(items)
        return 0
    print_table(
        ("ID", "SOURCE", "ACTION", "DESTINATION", "PRECEDENCE"),
        [
            (
                i["ID"],
                _name(i["SourceNS"], i["SourceName"]),
                _verdict(i),
                _name(i["DestinationNS"], i["DestinationName"]),
                i["Precedence"],
            )
            for i in items
        ],
    )
    return 0


def run_check(args: argparse.Namespace) -> int:
    _names(args)
    allowed = call(args, lambda c: c.intention_check(args.source, args.destination))
    if args.output == "json":
        print_json({"Allowed": allowed})
    else:
        print("Allowed" if allowed else "Denied")
    return 0 if allowed else 2


def run_delete(args: argparse.Namespace) -> int:
    _names(args)
    call(args, lambda c: c.intention_delete(args.source, args.destination))
    print(f"deleted intention {args.source} => {args.destination}")
    return 0
