"""`weft top`'s table: the busiest paths seen in tap summaries. Pure: events in, rows out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAX_PATHS = 10_000  # distinct (direction, from, to, method, path); later ones are not tracked


@dataclass
class PathStats:
    count: int = 0
    successes: int = 0
    best: float = float("inf")
    worst: float = 0.0
    last: float = 0.0


class Top:
    def __init__(self) -> None:
        self.paths: dict[tuple[str, str, str, str, str], PathStats] = {}
        self.untracked = 0

    def add(self, event: dict[str, Any]) -> None:
        direction = str(event.get("direction", ""))
        if direction == "inbound":
            source = str(event.get("client_id") or "?").rpartition("/")[2]
            destination = str(event.get("service", "?"))
        else:
            source = str(event.get("service", "?"))
            destination = str(event.get("upstream") or "?")
        path = str(event.get("path", "")).partition("?")[0]
        key = (direction, source, destination, str(event.get("method", "")), path)
        stats = self.paths.get(key)
        if stats is None:
            if len(self.paths) >= MAX_PATHS:
                self.untracked += 1
                return
            stats = self.paths[key] = PathStats()
        latency = float(event.get("latency_ms") or 0.0)
        status = event.get("status")
        stats.count += 1
        if isinstance(status, int) and status < 500 and not event.get("error"):
            stats.successes += 1
        stats.best = min(stats.best, latency)
        stats.worst = max(stats.worst, latency)
        stats.last = latency

    def rows(self, limit: int) -> list[dict[str, Any]]:
        busiest = sorted(self.paths.items(), key=lambda kv: (-kv[1].count, kv[0]))[:limit]
        return [
            {
                "direction": d,
                "from": src,
                "to": dst,
                "method": method,
                "path": path,
                "count": s.count,
                "success_rate": round(s.successes / s.count, 5),
                "best_ms": round(s.best, 3),
                "worst_ms": round(s.worst, 3),
                "last_ms": round(s.last, 3),
            }
            for (d, src, dst, method, path), s in busiest
        ]
