"""`weft`: one module per subcommand in this package, each with `register(subparsers)`.

A subcommand module defines `register(subparsers) -> None`, which adds its parser and sets
`func` (taking the parsed namespace, returning an exit status). Adding a command means adding
a module; this file does not change.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import weft

from ._output import CommandError


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser for every subcommand, or only for `command` when given: a `weft proxy`
    process then never imports the server, agent or adapter (memory is the proxy's budget)."""
    parser = argparse.ArgumentParser(
        prog="weft",
        description="Weft: a service mesh for VMs, bare metal and Kubernetes.",
    )
    parser.add_argument("--version", action="version", version=f"weft {weft.__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    package = importlib.import_module("weft.cli")
    names = sorted(m.name for m in pkgutil.iter_modules(package.__path__))
    wanted = command.replace("-", "_") if command else None
    if wanted not in names:
        wanted = None
    for name in names:
        if name.startswith("_") or (wanted is not None and name != wanted):
            continue
        module = importlib.import_module(f"weft.cli.{name}")
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    first = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(first)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 64
    try:
        return int(args.func(args) or 0)
    except CommandError as exc:
        print(f"weft {args.command}: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        return 130
