"""`weft token create|list|revoke|self`: access tokens (operator only, except `self`)."""

from __future__ import annotations

import argparse
import datetime
import sys

from ._client import add_client_flags, call
from ._output import add_output_flag, print_json, print_table


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "token",
        help="manage access tokens",
        description="Tokens carry a role: operator (everything), agent (one node's instances), "
        "adapter (one source's instances) or read.",
    )
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = sub.add_parser("create", help="create a token; its secret is printed once")
    create.add_argument("--role", required=True, choices=("operator", "agent", "adapter", "read"))
    create.add_argument("--node", default="", help="node an agent token is bound to")
    create.add_argument(
        "--source", default="", help="source an adapter token is bound to, e.g. k8s/prod"
    )
    create.add_argument("--description", default="")
    create.add_argument(
        "--key-prefix",
        action="append",
        default=[],
        metavar="PREFIX=POLICY",
        help="a KV rule like Consul's key_prefix: app/=write, app/secret/=deny (read, write "
        "or deny; the longest matching prefix wins); repeat for more",
    )
    add_output_flag(create)
    add_client_flags(create)
    create.set_defaults(func=run_create)
    listing = sub.add_parser("list", help="list tokens (secrets are never shown again)")
    add_output_flag(listing)
    add_client_flags(listing)
    listing.set_defaults(func=run_list)
    revoke = sub.add_parser("revoke", help="revoke a token by its accessor")
    revoke.add_argument("accessor")
    add_client_flags(revoke)
    revoke.set_defaults(func=run_revoke)
    me = sub.add_parser("self", help="show the token in use")
    add_output_flag(me)
    add_client_flags(me)
    me.set_defaults(func=run_self)


def _key_rules(specs: list[str]) -> dict[str, str]:
    rules: dict[str, str] = {}
    for spec in specs:
        prefix, sep, policy = spec.rpartition("=")
        if not sep:
            raise ValueError(f"--key-prefix {spec!r} is not PREFIX=POLICY (e.g. app/=write)")
        rules[prefix] = policy
    return rules


def run_create(args: argparse.Namespace) -> int:
    try:
        rules = _key_rules(args.key_prefix)
    except ValueError as exc:
        print(f"weft token create: {exc}", file=sys.stderr)
        return 64
    token = call(
        args,
        lambda c: c.create_token(
            args.role,
            node=args.node,
            source=args.source,
            description=args.description,
            key_prefix=rules,
        ),
    )
    if args.output == "json":
        print_json(token)
    else:
        print(f"accessor: {token['accessor']}\nrole:     {token['role']}")
        if token.get("node"):
            print(f"node:     {token['node']}")
        if token.get("source"):
            print(f"source:   {token['source']}")
        print(f"secret:   {token['secret']}   (shown once; keep it safe)")
    return 0


def _rows(tokens: list[dict]) -> list[tuple]:
    return [
        (
            t["accessor"],
            t["role"],
            t.get("node") or t.get("source") or "",
            t["description"],
            datetime.datetime.fromtimestamp(t["created_at"], datetime.UTC).strftime(
                "%Y-%m-%d %H:%M:%SZ"
            ),
        )
        for t in tokens
    ]


def run_list(args: argparse.Namespace) -> int:
    tokens = call(args, lambda c: c.tokens())
    if args.output == "json":
        print_json(tokens)
    else:
        print_table(("ACCESSOR", "ROLE", "BOUND TO", "DESCRIPTION", "CREATED"), _rows(tokens))
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    call(args, lambda c: c.revoke_token(args.accessor))
    print(f"revoked token {args.accessor}")
    return 0


def run_self(args: argparse.Namespace) -> int:
    token = call(args, lambda c: c.token_self())
    if args.output == "json":
        print_json(token)
    else:
        print_table(("ACCESSOR", "ROLE", "BOUND TO", "DESCRIPTION", "CREATED"), _rows([token]))
    return 0
