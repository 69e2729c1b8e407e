"""A proxy's `/metrics` text reduced to what golden metrics need. Pure: text in, data out.

The agent reads the same Prometheus exposition a Prometheus server would scrape (so the two
paths can never disagree about what was counted) and keeps only the latency histogram per
(direction, peer, route, status_class) - its +Inf bucket is the response count - the open
connections per direction, the callers' SPIFFE IDs and the process start time (a restarted
proxy's counters start again from zero). The shape is `registry/_metrics_sample.py`'s.
"""

from __future__ import annotations

import math
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

LATENCY = "weft_proxy_response_latency_seconds"
OPEN = "weft_proxy_open_connections"
IDENTITY = "weft_proxy_peer_identity"
STARTED = "process_start_time_seconds"
MAX_SERIES = 512  # what the server accepts per proxy; the busiest are kept


def compact(text: str) -> dict[str, Any]:
    """{"le", "http", "open", "peer_ids", "started"} from one proxy's exposition text."""
    buckets: dict[tuple[str, str, str, str], dict[float, float]] = {}
    sums: dict[tuple[str, str, str, str], float] = {}
    opened: dict[str, int] = {}
    peer_ids: list[list[str]] = []
    started = 0.0
    for family in text_string_to_metric_families(text):
        if family.name == LATENCY:
            for s in family.samples:
                labels = s.labels
                key = (
                    labels.get("direction", ""),
                    labels.get("peer", ""),
                    labels.get("route", ""),
                    labels.get("status_class", ""),
                )
                if s.name.endswith("_bucket"):
                    bound = float(labels["le"])
                    buckets.setdefault(key, {})[bound] = s.value
                elif s.name.endswith("_sum"):
                    sums[key] = s.value
        elif family.name == OPEN:
            for s in family.samples:
                d = s.labels.get("direction", "")
                opened[d] = opened.get(d, 0) + max(0, int(s.value))
        elif family.name == IDENTITY:
            for s in family.samples:
                peer_ids.append(
                    [s.labels.get("direction", ""), s.labels.get("peer", ""), s.labels["identity"]]
                )
        elif family.name == STARTED:
            for s in family.samples:
                started = float(s.value)
    bounds: list[float] = []
    http: list[tuple[int, list[Any]]] = []
    for key, counts in buckets.items():
        finite = sorted(b for b in counts if math.isfinite(b))
        if not bounds:
            bounds = finite
        if finite != bounds or math.inf not in counts:
            continue  # one histogram layout per proxy; anything else is not ours
        cumulative = [int(counts[b]) for b in finite] + [int(counts[math.inf])]
        http.append((cumulative[-1], [*key, round(sums.get(key, 0.0), 6), cumulative]))
    # Over the cap, the series with the most responses are the ones worth keeping.
    http.sort(key=lambda pair: -pair[0])
    return {
        "le": bounds,
        "http": [row for _, row in http[:MAX_SERIES]],
        "open": [[d, n] for d, n in sorted(opened.items()) if d in ("inbound", "outbound")],
        "peer_ids": peer_ids[:MAX_SERIES],
        "started": started,
    }
