"""What `serve` needs of the process's settings, and the admin address format.

The settings themselves (a `weft._settings` dataclass: TOML file, WEFT_PROXY_* variables,
flags, exit 64 naming a bad field) live with the command line in `weft/cli/proxy.py`, since
`proxy` imports nothing of Weft but `ca`'s identity helpers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class ServeSettings(Protocol):
    """Read-only: the CLI's frozen settings dataclass is one."""

    @property
    def snapshot(self) -> Path | None: ...

    @property
    def admin(self) -> str: ...

    @property
    def workers(self) -> int: ...

    @property
    def ready_file(self) -> Path | None: ...

    @property
    def drain_grace(self) -> float: ...

    @property
    def header_timeout(self) -> float: ...

    @property
    def idle_timeout(self) -> float: ...

    @property
    def body_timeout(self) -> float: ...

    @property
    def detect_timeout(self) -> float: ...

    @property
    def tunnel_idle_timeout(self) -> float: ...

    @property
    def max_header_bytes(self) -> int: ...

    @property
    def max_headers(self) -> int: ...

    @property
    def watch_interval(self) -> float: ...

    @property
    def access_log(self) -> bool: ...


def parse_address(text: str) -> tuple[str, int]:
    """'127.0.0.1:15000', '[::1]:15000' or ':15000' (all interfaces) to (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{text!r} is not host:port (example: 127.0.0.1:15000)")
    return host.strip("[]") or "0.0.0.0", int(port)
