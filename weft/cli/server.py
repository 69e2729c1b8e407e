"""`weft server`: run the registry and CA HTTP API (stateless; state lives in etcd)."""

from __future__ import annotations

import argparse
import sys

from weft._logging import setup_logging
from weft._settings import EX_USAGE, SettingsError, add_arguments, load_settings

ENV_PREFIX = "WEFT_SERVER_"


def register(subparsers: argparse._SubParsersAction) -> None:
    from registry import ServerConfig

    parser = subparsers.add_parser(
        "server",
        help="run the registry and CA API server",
        description="Serve the Weft registry (native and Consul-compatible HTTP API) from etcd, "
        "and a read-only web dashboard at /ui (docs/observability.md). Settings come from "
        "--config FILE (TOML), then WEFT_SERVER_* environment variables, then flags.",
    )
    parser.add_argument("-c", "--config", metavar="FILE", help="TOML configuration file")
    add_arguments(parser, ServerConfig, ENV_PREFIX)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from registry import ServerConfig, run_server

    try:
        config = load_settings(
            ServerConfig, env_prefix=ENV_PREFIX, file=args.config, flags=vars(args)
        )
    except SettingsError as exc:
        print(f"weft server: invalid configuration: {exc}", file=sys.stderr)
        return EX_USAGE
    setup_logging(config.log_format, config.log_level)
    from agent import Notifier

    return run_server(config, on_ready=Notifier().ready)
