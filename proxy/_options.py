"""What `serve` needs of the process's settings, and the admin address format.

The settings themselves (a `weft._settings` dataclass: TOML file, WEFT_PROXY_* variables,
flags, exit 64 naming a bad field) live with the command line in `weft/cli/proxy.py`, since
`proxy` imports nothing of Weft but `ca`'s identity helpers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class ServeSettings(Protocol):
    snapshot: Path | None
    admin: str
    workers: int
    ready_file: Path | None
    drain_grace: float
    header_timeout: float
    idle_timeout: float
    body_timeout: float
    detect_timeout: float
    max_header_bytes: int
    max_headers: int
    watch_interval: float
    access_log: bool


def parse_address(text: str) -> tuple[str, int]:
    """'127.0.0.1:15000', '[::1]:15000' or ':15000' (all interfaces) to (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{text!r} is not host:port (example: 127.0.0.1:15000)")
    return host.strip("[]") or "0.0.0.0", int(port)
