"""`weft proxy` settings: TOML file ([proxy] section), then WEFT_PROXY_* variables, then flags.

The snapshot (identity, listeners, upstreams, policy) is data, not settings: it comes from a
snapshot source. These are the knobs of the process itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from weft._settings import SettingsError, parse_duration, setting

ENV_PREFIX = "WEFT_PROXY_"


def parse_address(text: str) -> tuple[str, int]:
    """'127.0.0.1:15000', '[::1]:15000' or ':15000' (all interfaces) to (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{text!r} is not host:port (example: 127.0.0.1:15000)")
    return host.strip("[]") or "0.0.0.0", int(port)


@dataclass(frozen=True)
class ProxySettings:
    snapshot: Path | None = setting(  # noqa: RUF009 - `setting` makes a dataclass field
        None, help="snapshot file (JSON, see docs/snapshot.md); reloaded on change and SIGHUP"
    )
    admin: str = setting(
        "127.0.0.1:15000", help="admin listener host:port (/ready /live /metrics /config /tap)"
    )
    workers: int = setting(1, help="processes sharing the listeners with SO_REUSEPORT")
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
        10.0, parse=parse_duration, help="wait this long for a client's first bytes to detect HTTP"
    )
    max_header_bytes: int = setting(65536, help="largest request head accepted (431 beyond)")
    max_headers: int = setting(100, help="most header fields in a request (431 beyond)")
    watch_interval: float = setting(
        1.0, parse=parse_duration, help="how often the snapshot and certificate files are checked"
    )
    access_log: bool = setting(False, help="write one JSON line per request to stdout")
    log_format: str = setting("text", help="log lines as 'text' or 'json'")
    log_level: str = setting("info", help="debug, info, warning or error")

    def validate(self) -> None:
        if self.snapshot is None:
            raise SettingsError("snapshot", "is required (a snapshot file, see docs/snapshot.md)")
        try:
            parse_address(self.admin)
        except ValueError as exc:
            raise SettingsError("admin", str(exc)) from None
        if not 1 <= self.workers <= 256:
            raise SettingsError("workers", f"{self.workers} is not between 1 and 256")
        for name in (
            "drain_grace",
            "header_timeout",
            "idle_timeout",
            "body_timeout",
            "detect_timeout",
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
        if self.log_format not in ("text", "json"):
            raise SettingsError("log_format", f"{self.log_format!r} is not 'text' or 'json'")
        if self.log_level.lower() not in ("debug", "info", "warning", "error"):
            raise SettingsError("log_level", f"{self.log_level!r} is not debug/info/warning/error")
