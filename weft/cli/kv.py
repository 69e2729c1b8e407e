"""`weft kv get|put|delete|list`: the Consul-style key/value store."""

from __future__ import annotations

import argparse
import sys

from ._client import add_client_flags, call
from ._output import CommandError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("kv", help="read and write the key/value store")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    get = sub.add_parser("get", help="print a key's value")
    get.add_argument("key")
    add_client_flags(get)
    get.set_defaults(func=run_get)
    put = sub.add_parser("put", help="set a key (value '-' reads standard input)")
    put.add_argument("key")
    put.add_argument("value")
    add_client_flags(put)
    put.set_defaults(func=run_put)
    delete = sub.add_parser("delete", help="delete a key")
    delete.add_argument("key")
    delete.add_argument("--recurse", action="store_true", help="delete every key under it")
    add_client_flags(delete)
    delete.set_defaults(func=run_delete)
    listing = sub.add_parser("list", help="list keys under a prefix")
    listing.add_argument("prefix", nargs="?", default="")
    add_client_flags(listing)
    listing.set_defaults(func=run_list)


def run_get(args: argparse.Namespace) -> int:
    value = call(args, lambda c: c.kv_get(args.key))
    if value is None:
        raise CommandError(f"no key {args.key!r}", 1)
    sys.stdout.buffer.write(value)
    if sys.stdout.isatty() and not value.endswith(b"\n"):
        sys.stdout.write("\n")
    return 0


def run_put(args: argparse.Namespace) -> int:
    value = sys.stdin.buffer.read() if args.value == "-" else args.value.encode()
    call(args, lambda c: c.kv_put(args.key, value))
    print(f"set {args.key} ({len(value)} bytes)")
    return 0


def run_delete(args: argparse.Namespace) -> int:
    call(args, lambda c: c.kv_delete(args.key, recurse=args.recurse))
    print(f"deleted {args.key}{' and everything under it' if args.recurse else ''}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    for key in call(args, lambda c: c.kv_list(args.prefix)):
        print(key)
    return 0
