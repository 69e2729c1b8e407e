"""`weft proxy`: run the sidecar proxy from a snapshot file (or `--check` one)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from weft._settings import (
    EX_USAGE,
    MAX_WORKERS,
    SettingsError,
    add_arguments,
    load_settings,
    parse_duration,
    parse_workers,
    setting,
)

from ._output import CommandError

EX_DATAERR = 65
ENV_PREFIX = "WEFT_PROXY_"


@dataclass(frozen=True)
class ProxySettings:
    snapshot: Path | None = setting(  # noqa: RUF009 - `setting` makes a dataclass field
        None, help="snapshot file (JSON, see docs/snapshot.md); reloaded on change and SIGHUP"
    )
    snapshot_url: str = setting(
        "",
        help="stream snapshots from the host agent instead of a file: "
        "http://127.0.0.1:8501/v1/agent/proxy/<service-id> (set by the agent)",
    )
    admin: str = setting(
        "127.0.0.1:15000", help="admin listener host:port (/ready /live /metrics /config /tap)"
    )
    workers: int = setting(
        1,
        parse=parse_workers,
        help="processes sharing the listeners with SO_REUSEPORT (a number, or auto: one per "
        "core this process may run on)",
    )
    io_waits: str = setting(
        "trio",
        help="how connections wait for bytes: reactor (the proxy's own epoll: sockets stay "
        "registered between waits, no system call per wait) or trio (trio's IO manager, an "
        "epoll_ctl per wait; a diagnostic fallback)",
    )
    ready_file: Path | None = setting(  # noqa: RUF009
        None, help="write {address, pid, listeners} as JSON here once serving"
    )
    drain_grace: float = setting(
        10.0, parse=parse_duration, help="on SIGTERM, how long in-flight requests may finish"
    )
    header_timeout: float = setting(
        10.0, parse=parse_duration, help="time a client has to send a complete request head"
    )
    idle_timeout: float = setting(
        60.0, parse=parse_duration, help="keep-alive connections idle this long are closed"
    )
    body_timeout: float = setting(
        60.0, parse=parse_duration, help="a body that makes no progress this long is cut"
    )
    detect_timeout: float = setting(
        10.0,
        parse=parse_duration,
        help="an inbound client without ALPN must send a complete HTTP/1.1 request line "
        "within this (else 408 and close)",
    )
    tunnel_idle_timeout: float = setting(
        3600.0,
        parse=parse_duration,
        help="WebSocket/upgraded connections, CONNECT tunnels and opaque TCP with no byte "
        "either way this long are closed",
    )
    max_header_bytes: int = setting(65536, help="largest request head accepted (431 beyond)")
    max_headers: int = setting(100, help="most header fields in a request (431 beyond)")
    watch_interval: float = setting(
        1.0, parse=parse_duration, help="how often the snapshot and certificate files are checked"
    )
    trace_collector: str = setting(
        "",
        help="export spans (OTLP/HTTP protobuf) to this collector URL, e.g. "
        "http://127.0.0.1:4318/v1/traces; empty: no tracing at all (docs/tracing.md)",
    )
    trace_sampling: float = setting(
        0.01,
        help="share of new traces sampled (0 to 1) when a request comes with no trace "
        "context; a caller's sampled flag is always respected",
    )
    access_log: bool = setting(False, help="write one JSON line per request to stdout")
    log_format: str = setting("text", help="log lines as 'text' or 'json'")
    log_level: str = setting("info", help="debug, info, warning or error")

    def validate(self) -> None:
        if self.snapshot is None and not self.snapshot_url:
            raise SettingsError(
                "snapshot",
                "is required (a snapshot file, see docs/snapshot.md), or "
                "--snapshot-url to stream from the agent",
            )
        if self.snapshot is not None and self.snapshot_url:
            raise SettingsError("snapshot_url", "give a snapshot file or a URL, not both")
        if self.snapshot_url and self.workers > 1:
            raise SettingsError(
                "snapshot_url",
                "a streamed snapshot needs --workers 1; "
                "with more workers give the agent's snapshot file instead",
            )
        if self.snapshot_url and not self.snapshot_url.startswith("http://"):
            raise SettingsError("snapshot_url", f"{self.snapshot_url!r} is not an http:// URL")
        from proxy._options import parse_address

        try:
            parse_address(self.admin)
        except ValueError as exc:
            raise SettingsError("admin", str(exc)) from None
        if self.io_waits not in ("reactor", "trio"):
            raise SettingsError("io_waits", f"{self.io_waits!r} is not reactor or trio")
        if not 1 <= self.workers <= MAX_WORKERS:
            raise SettingsError("workers", f"{self.workers} is not between 1 and {MAX_WORKERS}")
        for name in (
            "drain_grace",
            "header_timeout",
            "idle_timeout",
            "body_timeout",
            "detect_timeout",
            "tunnel_idle_timeout",
        ):
            value = getattr(self, name)
            if not 0 < value <= 86400:
                raise SettingsError(name, f"{value}s is not between 0 and 24h")
        if not 0.01 <= self.watch_interval <= 3600:
            raise SettingsError(
                "watch_interval", f"{self.watch_interval}s is not between 10ms and 1h"
            )
        if not 1024 <= self.max_header_bytes <= 1 << 20:
            raise SettingsError("max_header_bytes", "must be between 1024 and 1048576")
        if not 1 <= self.max_headers <= 1000:
            raise SettingsError("max_headers", "must be between 1 and 1000")
        if self.trace_collector:
            from urllib.parse import urlsplit

            url = urlsplit(self.trace_collector)
            try:
                url.port  # noqa: B018 - raises on a port that is not a number below 65536
            except ValueError:
                url = urlsplit("")
            if url.scheme not in ("http", "https") or not url.hostname:
                raise SettingsError(
                    "trace_collector",
                    f"{self.trace_collector!r} is not an http(s):// URL "
                    "(example: http://127.0.0.1:4318/v1/traces)",
                )
        if not 0.0 <= self.trace_sampling <= 1.0:  # NaN fails both
            raise SettingsError("trace_sampling", f"{self.trace_sampling} is not between 0 and 1")
        if self.log_format not in ("text", "json"):
            raise SettingsError("log_format", f"{self.log_format!r} is not 'text' or 'json'")
        if self.log_level.lower() not in ("debug", "info", "warning", "error"):
            raise SettingsError("log_level", f"{self.log_level!r} is not debug/info/warning/error")


def register(subparsers: argparse._SubParsersAction) -> None:
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
    import trio

    from proxy import StartupError
    from proxy._server import main
    from proxy._workers import run_workers, worker_main

    try:
        if args.worker_of is not None:
            trio.run(worker_main, settings)
        elif settings.workers > 1:
            run_workers(settings, sys.argv)
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
