"""The golden-metrics views as PromQL, and Prometheus' answers turned into the same rows.

Pure: `plan()` says which instant queries a view needs and how their series map to rows;
`rows()` folds the answers (the `data.result` vectors of `/api/v1/query`) into the rows
`/v1/metrics/*` answers, so `weft stat --prometheus URL` prints exactly what `weft stat` does.

Rates use `rate(...[W])` over the user's window, never `irate` (which uses the last two
samples only, so Linkerd's "1m" quantiles are really 10-second ones). The scrape
configuration in docs/observability.md labels each proxy's series with `service` and
`instance_id` (from the Consul catalog); the queries rely on those two labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

RESPONSES = "weft_proxy_responses_total"
BUCKETS = "weft_proxy_response_latency_seconds_bucket"
OPEN = "weft_proxy_open_connections"
IDENTITY = "weft_proxy_peer_identity"
QUANTILES = (0.5, 0.95, 0.99)
FAILURES = "5xx|error"


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def selector(match: dict[str, str | None], regex: dict[str, str] | None = None) -> str:
    """`{a="x",b=~"y|z"}`: exact labels (None: left out) and regex ones, in a stable order."""
    parts = [f"{k}={_quote(v)}" for k, v in sorted(match.items()) if v is not None]
    parts += [f"{k}=~{_quote(v)}" for k, v in sorted((regex or {}).items())]
    return "{" + ",".join(parts) + "}"


def duration(seconds: float) -> str:
    """A PromQL range: whole seconds (the windows are 10 s to 1 h)."""
    return f"{max(1, round(seconds))}s"


@dataclass(frozen=True)
class Plan:
    """A view: its queries by name, the labels that make a row, and how they are shown."""

    queries: dict[str, str]
    by: tuple[str, ...]  # PromQL grouping labels
    shown: dict[str, str]  # PromQL label -> row field
    extra: dict[str, str]  # row fields with a fixed value


def plan(
    view: str,
    window: float,
    *,
    service: str | None = None,
    to: str | None = None,
    frm: str | None = None,
    by_instance: bool = False,
) -> Plan:
    """The queries for `stat` (optionally --to/--from/by instance), `edges` or `routes`."""
    w = duration(window)
    extra: dict[str, str] = {}
    by: tuple[str, ...]
    open_by: tuple[str, ...] | None = None
    if view == "routes":
        if service is None:
            raise ValueError("routes needs a service")
        match: dict[str, str | None] = {"direction": "outbound", "peer": service, "service": frm}
        by, shown = ("route",), {"route": "route"}
        extra = {"service": service}
    elif view == "edges":
        match = {"direction": "inbound"}
        by, shown = ("peer", "service"), {"peer": "from", "service": "to"}
    elif to is not None or frm is not None:
        # With --to the service named is a caller; with --from it is a callee.
        caller, callee = (service, to) if to is not None else (frm, service)
        if to is not None and frm is not None:
            caller, callee = frm, to
        match = {"direction": "outbound", "peer": callee, "service": caller}
        by, shown = ("service", "peer"), {"service": "from", "peer": "to"}
    else:
        match = {"direction": "inbound", "service": service}
        by = ("service", "instance_id") if by_instance else ("service",)
        shown = {"service": "service", "instance_id": "instance"}
        shown = {k: v for k, v in shown.items() if k in by}
        open_by = by
    group = ", ".join(by)
    queries = {
        "requests": f"sum by ({group}) (increase({RESPONSES}{selector(match)}[{w}]))",
        "rps": f"sum by ({group}) (rate({RESPONSES}{selector(match)}[{w}]))",
        "failures": (
            f"sum by ({group}) "
            f"(rate({RESPONSES}{selector(match, {'status_class': FAILURES})}[{w}]))"
        ),
    }
    for q in QUANTILES:
        queries[f"p{round(q * 100)}"] = (
            f"histogram_quantile({q}, sum by ({group}, le) (rate({BUCKETS}{selector(match)}[{w}])))"
        )
    if open_by is not None:
        open_match = {"direction": "inbound", "service": service}
        queries["open"] = f"sum by ({group}) ({OPEN}{selector(open_match)})"
    if view == "edges":
        queries["identity"] = f"max by (peer, service, identity) ({IDENTITY}{selector(match)})"
    return Plan(queries, by, shown, extra)


def _number(raw: Any) -> float | None:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def rows(p: Plan, answers: dict[str, list[dict[str, Any]]], window: float) -> list[dict[str, Any]]:
    """Rows shaped like `/v1/metrics/*`'s from each query's result vector."""
    table: dict[tuple[str, ...], dict[str, Any]] = {}

    def row(metric: dict[str, str]) -> dict[str, Any]:
        key = tuple(metric.get(label, "") for label in p.by)
        found = table.get(key)
        if found is None:
            found = table[key] = {
                **{field: metric.get(label, "") for label, field in p.shown.items()},
                **p.extra,
                "requests": 0,
                "rps": 0.0,
                "success_rate": None,
                "latency_ms": None,
                "tcp_connections": 0,
                "_failures": 0.0,
            }
        return found

    for name, result in answers.items():
        for series in result:
            metric = series.get("metric", {})
            value = _number(series.get("value", [0, "NaN"])[1])
            r = row(metric)
            if name == "identity":
                r["client_id"] = metric.get("identity")
            elif value is None:
                continue
            elif name == "requests":
                r["requests"] = round(value)
            elif name == "rps":
                r["rps"] = round(value, 3)
            elif name == "failures":
                r["_failures"] = value
            elif name == "open":
                r["tcp_connections"] = round(value)
            elif name.startswith("p"):
                latency = r["latency_ms"] or {"p50": None, "p95": None, "p99": None}
                latency[name] = round(value * 1000, 3)
                r["latency_ms"] = latency
    out = []
    for key in sorted(table):
        r = table[key]
        failures = r.pop("_failures")
        if r["rps"] > 0:
            r["success_rate"] = round(1 - failures / r["rps"], 5)
        out.append(r)
    return out
