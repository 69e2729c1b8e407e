"""One line per check: what was checked, whether it passed, and what to do if it did not."""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from typing import Any, Literal

Status = Literal["ok", "warn", "fail"]

_MARKS = {"ok": "✔", "warn": "!", "fail": "✘"}
_ASCII = {"ok": "OK  ", "warn": "WARN", "fail": "FAIL"}


@dataclass(frozen=True)
class Line:
    check: str  # a stable name scripts can match: etcd, servers, clock, ...
    status: Status
    message: str
    fix: str = ""  # what to do; empty when it passed

    def text(self, *, ascii_only: bool = False) -> str:
        mark = _ASCII[self.status] if ascii_only else _MARKS[self.status]
        out = f"{mark} {self.check}: {self.message}"
        return f"{out} - {self.fix}" if self.fix else out


def ok(check: str, message: str) -> Line:
    return Line(check, "ok", message)


def warn(check: str, message: str, fix: str) -> Line:
    return Line(check, "warn", message, fix)


def fail(check: str, message: str, fix: str) -> Line:
    return Line(check, "fail", message, fix)


def exit_status(lines: list[Line], *, strict: bool) -> int:
    """0 when everything passed; 1 on any failure (or any warning with `strict`)."""
    bad = {"fail", "warn"} if strict else {"fail"}
    return 1 if any(line.status in bad for line in lines) else 0


def as_json(lines: list[Line], *, strict: bool) -> dict[str, object]:
    return {
        "ok": exit_status(lines, strict=strict) == 0,
        "checks": [asdict(line) for line in lines],
    }


def print_lines(lines: list[Line]) -> None:
    encoding = sys.stdout.encoding or "ascii"
    try:
        "✔✘".encode(encoding)
        ascii_only = False
    except (UnicodeEncodeError, LookupError):
        ascii_only = True
    for line in lines:
        print(line.text(ascii_only=ascii_only))


def duration(seconds: float) -> str:
    """A short human span: 45s, 12m, 5h 3m, 29d 4h."""
    seconds = abs(seconds)
    if seconds < 90:
        return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"
    minutes = seconds / 60
    if minutes < 90:
        return f"{minutes:.0f}m"
    hours = int(minutes // 60)
    if hours < 48:
        return f"{hours}h {int(minutes % 60)}m"
    return f"{hours // 24}d {hours % 24}h"


def count(items: Any, one: str, many: str = "") -> str:
    n = len(items)
    return f"{n} {one if n == 1 else (many or one + 's')}"
