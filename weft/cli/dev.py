"""`weft dev`: run the demo locally (etcd, a server, example services) until Ctrl-C."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "dev",
        help="run a local demo on loopback until Ctrl-C",
        description="Start etcd and weft server on loopback, register example services behind "
        "sidecars with a load generator, print the dashboard's URL and how to query them, then "
        "show a live `weft stat` table (redrawn in place on a terminal). Ctrl-C stops "
        "everything.",
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
        help="write {url, dashboard, web, agent, token_file, pid} as JSON here once the demo is up",
    )
    parser.add_argument(
        "--refresh",
        metavar="DURATION",
        default=None,
        help="time between live stat tables [default: 2s on a terminal, 10s otherwise]",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from weft._devmesh import run as run_dev

    from ._output import CommandError

    refresh = None
    if args.refresh is not None:
        from registry.validation import InvalidInput, parse_duration

        try:
            refresh = parse_duration(args.refresh, "refresh")
        except InvalidInput as exc:
            raise CommandError(f"--refresh: {exc.message.partition(': ')[2]}", 64) from None
        if not 0.5 <= refresh <= 600:
            raise CommandError("--refresh: must be between 500ms and 10m", 64)
    ready = args.ready_file.resolve() if args.ready_file else None
    return run_dev(args.dir.resolve(), server_port=args.port, ready_file=ready, refresh=refresh)
