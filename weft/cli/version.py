"""`weft version`."""

from __future__ import annotations

import argparse
import platform

import weft


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("version", help="print Weft's version")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print(f"weft {weft.__version__} (Python {platform.python_version()})")
    return 0
