"""`weft dev`'s live table: `weft stat` for the demo's services, with the load generator's
own count under it. Redrawn in place on a terminal; on a pipe or a log file, a new table
every `plain_every` seconds (no escape codes)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from weft.cli._golden import stat_table
from weft.cli._output import format_table

WINDOW = "10s"


def fetch_stat(url: str) -> dict[str, Any] | None:
    """The servers' stat view over WINDOW (the demo's server allows anonymous reads)."""
    try:
        with urllib.request.urlopen(f"{url}/v1/metrics/stat?window={WINDOW}", timeout=3) as resp:
            doc: dict[str, Any] = json.loads(resp.read())
            return doc
    except (urllib.error.URLError, OSError, ValueError):
        return None


def last_load_report(path: Path) -> str:
    """The load generator's newest line ("load {"ok": .., "failed": ..}"), minus its prefix."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return ""
    return lines[-1].removeprefix("load ") if lines else ""


def render(doc: dict[str, Any] | None, load: str) -> list[str]:
    if doc is None:
        lines = ["(the server did not answer the stat view)"]
    elif not doc["rows"]:
        lines = [f"no traffic counted yet (window {WINDOW}; agents push every 2s)"]
    else:
        lines = format_table(*stat_table(doc))
    return [f"weft stat --window {WINDOW}", *lines, f"traffic {load}" if load else ""]


class LiveTable:
    """Draws tables to `write`: in place (cursor up, clear) when `tty`, else appended."""

    def __init__(self, write: Callable[[str], Any], *, tty: bool) -> None:
        self.write, self.tty = write, tty
        self.drawn = 0

    def draw(self, lines: list[str]) -> None:
        if self.tty and self.drawn:
            # Up over the previous table and clear to the end of the screen: no scrolling log.
            self.write(f"\x1b[{self.drawn}F\x1b[J")
        self.write("\n".join(lines) + "\n")
        self.drawn = len(lines)
