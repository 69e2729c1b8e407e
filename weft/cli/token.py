"""`weft token create|update|list|revoke|self`: access tokens (operator only, except `self`)."""

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
        description="Tokens carry a role: operator (everything), agent (one node's instances "
        "of the services in its service set), adapter (one source's instances) or read.",
    )
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = sub.add_parser("create", help="create a token; its secret is printed once")
    create.add_argument("--role", required=True, choices=("operator", "agent", "adapter", "read"))
    create.add_argument("--node", default="", help="node an agent token is bound to")
    create.add_argument(
        "--source", default="", help="source an adapter token is bound to, e.g. k8s/prod"
    )
    create.add_argument(
        "--services",
        default=None,
        metavar="NAMES",
        help="agent tokens: the services it may register and get certificates for, "
        "comma-separated; a trailing * makes a prefix (web,api,pay-*; * alone: every service). "
        "Without it an agent token is unscoped, which is deprecated",
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
    update = sub.add_parser(
        "update",
        help="set an agent token's service set (the secret stays the same)",
        description="Scope an agent token to services, e.g. to migrate a token made before "
        "service sets: weft token update <accessor> --services web,api,pay-*",
    )
    update.add_argument("accessor")
    update.add_argument(
        "--services",
        required=True,
        metavar="NAMES",
        help="comma-separated service names; a trailing * makes a prefix; * is every service",
    )
    add_output_flag(update)
    add_client_flags(update)
    update.set_defaults(func=run_update)
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


def service_set(spec: str) -> tuple[list[str], list[str]]:
    """`web,api,pay-*` -> (["web", "api"], ["pay-"]); `*` is the prefix "" (every service)."""
    names: list[str] = []
    prefixes: list[str] = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        if item.endswith("*"):
            prefixes.append(item[:-1])
        else:
            names.append(item)
    return names, prefixes


def run_create(args: argparse.Namespace) -> int:
    try:
        rules = _key_rules(args.key_prefix)
    except ValueError as exc:
        print(f"weft token create: {exc}", file=sys.stderr)
        return 64
    names, prefixes = service_set(args.services) if args.services is not None else (None, None)
    token = call(
        args,
        lambda c: c.create_token(
            args.role,
            node=args.node,
            source=args.source,
            description=args.description,
            key_prefix=rules,
            services=names,
            service_prefix=prefixes,
        ),
    )
    if token.get("warning"):
        print(f"weft token create: warning: {token['warning']}", file=sys.stderr)
    if args.output == "json":
        print_json(token)
    else:
        print(f"accessor: {token['accessor']}\nrole:     {token['role']}")
        if token.get("node"):
            print(f"node:     {token['node']}")
        if token.get("source"):
            print(f"source:   {token['source']}")
        if "services" in token:
            print(f"services: {_services(token)}")
        print(f"secret:   {token['secret']}   (shown once; keep it safe)")
    return 0


def _services(token: dict) -> str:
    if "services" not in token:
        return "any (unscoped)" if token.get("role") == "agent" else ""
    names = [*token["services"], *(p + "*" for p in token.get("service_prefix", []))]
    return ",".join(names) or "none"


def run_update(args: argparse.Namespace) -> int:
    names, prefixes = service_set(args.services)
    token = call(args, lambda c: c.update_token_services(args.accessor, names, prefixes))
    if args.output == "json":
        print_json(token)
    else:
        print(
            f"token {token['accessor']} (node {token.get('node', '')}): services {_services(token)}"
        )
    return 0


def _rows(tokens: list[dict]) -> list[tuple]:
    return [
        (
            t["accessor"],
            t["role"],
            t.get("node") or t.get("source") or "",
            _services(t),
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
        print_table(
            ("ACCESSOR", "ROLE", "BOUND TO", "SERVICES", "DESCRIPTION", "CREATED"), _rows(tokens)
        )
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
        print_table(
            ("ACCESSOR", "ROLE", "BOUND TO", "SERVICES", "DESCRIPTION", "CREATED"), _rows([token])
        )
    return 0
