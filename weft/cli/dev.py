"""`weft dev`: run the demo locally (etcd, a server, example services) until Ctrl-C."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "dev",
        help="run a local demo on loopback until Ctrl-C",
        description="Start etcd and weft server on loopback, register example services and "
        "print how to query them. Ctrl-C stops everything.",
    )
    parser.add_argument(
        "--dir",
        default=".weft-dev",
        type=Path,
        help="working directory for data and logs (wiped at start) [default: .weft-dev]",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=8500,
        help="preferred server port (another is used if taken) [default: 8500]",
    )
    parser.add_argument(
        "--ready-file",
        type=Path,
        default=None,
        help="write {url, web, agent, token_file, pid} as JSON here once the demo is up",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from weft._devmesh import run as run_dev

    ready = args.ready_file.resolve() if args.ready_file else None
    return run_dev(args.dir.resolve(), server_port=args.port, ready_file=ready)
