"""`weft proxy`: run the sidecar proxy from a snapshot file (or `--check` one)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from weft._settings import EX_USAGE, SettingsError, add_arguments, load_settings

from ._output import CommandError

EX_DATAERR = 65


def register(subparsers: argparse._SubParsersAction) -> None:
    from proxy._settings import ENV_PREFIX, ProxySettings

    parser = subparsers.add_parser(
        "proxy",
        help="run the sidecar proxy (mTLS, HTTP/1.1 balancing, TCP) from a snapshot",
        description=(
            "Run Weft's sidecar proxy. Its configuration (identity, certificates, listeners, "
            "upstreams, authorization) is a versioned JSON snapshot, reloaded when the file "
            "changes and on SIGHUP; SIGTERM drains. See docs/proxy.md and docs/snapshot.md."
        ),
    )
    parser.add_argument("--config", type=Path, help="TOML settings file (a [proxy] section)")
    parser.add_argument(
        "--check",
        action="store_true",
        help="validate the snapshot and its certificate files, print the verdict and exit "
        f"(0: it would apply, {EX_DATAERR}: it would be refused)",
    )
    parser.add_argument("--worker-of", type=int, default=None, help=argparse.SUPPRESS)
    add_arguments(parser, ProxySettings, ENV_PREFIX)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from proxy._settings import ENV_PREFIX, ProxySettings
    from weft._logging import setup_logging

    try:
        settings = load_settings(
            ProxySettings,
            env_prefix=ENV_PREFIX,
            file=args.config,
            flags=vars(args),
            file_section="proxy",
        )
    except SettingsError as exc:
        raise CommandError(str(exc), status=EX_USAGE) from None
    setup_logging(settings.log_format, settings.log_level)
    if args.check:
        return _check(settings)
    if settings.workers > 1 and args.worker_of is None:
        from proxy._workers import run_workers

        return run_workers(settings, sys.argv)

    import trio

    from proxy._server import StartupError, main

    try:
        if args.worker_of is not None:
            from proxy._workers import worker_main

            trio.run(worker_main, settings)
        else:
            trio.run(main, settings)
    except StartupError as exc:
        raise CommandError(str(exc), status=exc.status) from None
    return 0


def _check(settings: object) -> int:
    from proxy import SnapshotError, TlsSetupError, parse_snapshot
    from proxy._tls import load_tls

    path = settings.snapshot  # type: ignore[attr-defined]
    try:
        snapshot = parse_snapshot(Path(path).read_bytes())
        material = load_tls(snapshot.tls, snapshot.identity)
    except OSError as exc:
        print(f"cannot read {path}: {exc.strerror}", file=sys.stderr)
        return EX_DATAERR
    except SnapshotError as exc:
        for problem in exc.problems:
            print(f"{path}: {problem}", file=sys.stderr)
        return EX_DATAERR
    except TlsSetupError as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return EX_DATAERR
    summary = {
        "version": snapshot.version,
        "identity": str(snapshot.identity),
        "inbound": snapshot.inbound is not None,
        "upstreams": [u.name for u in snapshot.upstreams],
        "certificate_not_after": material.leaf.not_after,
    }
    print(json.dumps(summary, indent=2))
    return 0
