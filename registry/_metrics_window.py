"""Golden metrics over a window, from stored samples of cumulative counters. Pure.

Semantics (docs/observability.md):
- A window W is answered per node from two of its samples: the newest, and the newest one
  taken at least W before it (or the oldest held, for a node younger than W). A counter's
  increase is newest - base; its rate is that increase over the time between the two
  samples. This is Prometheus' `rate(x[W])` without its extrapolation to the window's edges,
  and never `irate` (the last two samples only), so a "1m" p99 covers a minute.
- A counter that went down (a proxy restarted), or a proxy whose start time changed, counts
  from zero: its increase is its newest value (Prometheus does the same on resets).
- Success rate = responses that were not 5xx and not `error` (no response could be sent)
  over all responses. 4xx is a success, as in Linkerd.
- Quantiles are interpolated linearly inside the bucket where the rank falls, exactly as
  PromQL's `histogram_quantile`; a rank in the +Inf bucket gives the highest finite bound.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from ._errors import InvalidInput
from ._numbers import parse_duration

if TYPE_CHECKING:
    from ._etcd_types import KeyValue

T = TypeVar("T")
MIN_WINDOW = 10.0
MAX_WINDOW = 3600.0
QUANTILES = (0.5, 0.95, 0.99)
FAILURE_CLASSES = frozenset(("5xx", "error"))


def parse_window(raw: str | None, default: float = 60.0) -> float:
    """Seconds from `?window=` ('1m', '30s', '90'): 10 s to 1 h, else 400 naming `window`."""
    if raw is None or raw == "":
        return default
    seconds = parse_duration(raw, "window")
    if not MIN_WINDOW <= seconds <= MAX_WINDOW:
        raise InvalidInput(
            f"window: {raw!r} is outside 10s-1h (examples: '10s', '1m', '1h')", field="window"
        )
    return seconds


def histogram_quantile(q: float, bounds: list[float], cumulative: list[float]) -> float | None:
    """PromQL's histogram_quantile over cumulative counts (one per bound, then +Inf)."""
    total = cumulative[-1] if cumulative else 0
    if total <= 0:
        return None
    rank = q * total
    b = next(i for i, c in enumerate(cumulative) if c >= rank)
    if b == len(bounds):
        return bounds[-1]
    start = bounds[b - 1] if b > 0 else 0.0
    prev = cumulative[b - 1] if b > 0 else 0.0
    inside = cumulative[b] - prev
    if inside <= 0:
        return bounds[b]
    return start + (bounds[b] - start) * ((rank - prev) / inside)


@dataclass
class Sample:
    ts: float
    proxies: list[dict[str, Any]]

    @classmethod
    def from_json(cls, raw: bytes) -> Sample:
        doc = json.loads(raw)
        return cls(float(doc["ts"]), list(doc["proxies"]))


def pick(
    samples: Iterable[tuple[float, T]], now: float, window: float, grace: float
) -> tuple[tuple[float, T], tuple[float, T]] | None:
    """(newest, base) of one node's (ts, sample) pairs for a window, or None when the node
    has nothing to say about it: fewer than two samples, or silent for longer than the
    window (plus `grace`). The base is the newest sample at least `window` older than the
    newest, else the oldest one inside the window (a node younger than the window). Samples
    more than `grace` before the window's start (left in the ring by a node that was away)
    are never used: the rate is over the window, not over the gap."""
    ordered = sorted(samples, key=lambda s: s[0])
    if len(ordered) < 2:
        return None
    newest = ordered[-1]
    if newest[0] < now - window - grace:
        return None
    start = newest[0] - window
    usable = [s for s in ordered[:-1] if s[0] >= start - grace]
    if not usable:
        return None
    before = [s for s in usable if s[0] <= start]
    return newest, (before[-1] if before else usable[0])


@dataclass
class Acc:
    """What one row adds up: increases, rates and bucket increases."""

    requests: float = 0.0
    failures: float = 0.0
    rps: float = 0.0
    bounds: list[float] | None = None
    buckets: list[float] = field(default_factory=list)
    open: int = 0
    proxies: set[tuple[str, str]] = field(default_factory=set)
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, cls: str, delta: list[float], span: float, bounds: list[float]) -> None:
        n = delta[-1]
        self.requests += n
        if cls in FAILURE_CLASSES:
            self.failures += n
        self.rps += n / span
        if self.bounds is None:
            self.bounds, self.buckets = list(bounds), [0.0] * len(delta)
        if bounds == self.bounds:  # one Weft version's buckets; a mixed fleet skips others
            self.buckets = [a + b for a, b in zip(self.buckets, delta, strict=True)]

    def row(self) -> dict[str, Any]:
        latency = None
        if self.bounds is not None and self.buckets and self.buckets[-1] > 0:
            latency = {
                f"p{round(q * 100)}": _ms(histogram_quantile(q, self.bounds, self.buckets))
                for q in QUANTILES
            }
        return {
            **self.extra,
            "requests": round(self.requests),
            "rps": round(self.rps, 3),
            "success_rate": round(1 - self.failures / self.requests, 5) if self.requests else None,
            "latency_ms": latency,
            "tcp_connections": self.open,
            "proxies": len(self.proxies),
        }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


Series = tuple[dict[str, Any], str, str, str, str]  # proxy, direction, peer, route, class
Grouper = Callable[[dict[str, Any], str, str, str], "tuple[Any, dict[str, Any]] | None"]


def increases(newest: Sample, base: Sample) -> Iterable[tuple[Series, list[float], float]]:
    """Every series' bucket increases between two samples of one node, with the span."""
    span = newest.ts - base.ts
    if span <= 0:
        return
    before = {(p["service"], p["instance"]): p for p in base.proxies}
    for proxy in newest.proxies:
        old = before.get((proxy["service"], proxy["instance"]))
        if old is None:
            # A proxy absent from the base sample counts from zero only if it started after
            # it; otherwise what it served before the window is unknown, and it sits out.
            if not proxy.get("started") or proxy["started"] < base.ts - 1:
                continue
            old_series: dict[tuple[str, ...], list[int]] = {}
        elif old.get("started") != proxy.get("started") or old.get("le") != proxy["le"]:
            old_series = {}  # restarted: everything it counts now is new
        else:
            old_series = {tuple(s[:4]): s[5] for s in old["http"]}
        for d, peer, route, cls, _sum, counts in proxy["http"]:
            prev = old_series.get((d, peer, route, cls))
            if (
                prev is None
                or len(prev) != len(counts)
                or any(b < a for a, b in zip(prev, counts, strict=True))
            ):
                delta = [float(c) for c in counts]
            else:
                delta = [float(b - a) for a, b in zip(prev, counts, strict=True)]
            if delta[-1] > 0:
                yield (proxy, d, peer, route, cls), delta, span


def aggregate(
    pairs: Iterable[tuple[Sample, Sample]],
    group: Grouper,
    open_of: Callable[[dict[str, Any]], tuple[Any, dict[str, Any], int] | None] | None = None,
) -> list[dict[str, Any]]:
    """Rows of `group(proxy, direction, peer, route) -> (key, labels) | None` (None: not
    counted), each with its golden metrics; `open_of(proxy) -> (key, labels, n)` adds a
    proxy's open connections to a row (making it, so an idle service still has one)."""
    rows: dict[Any, Acc] = {}
    for newest, base in pairs:
        try:
            counted = list(increases(newest, base))
        except (ValueError, TypeError, KeyError, IndexError):
            continue  # a sample this version cannot read (written by hand): that node sits out
        for (proxy, d, peer, route, cls), delta, span in counted:
            grouped = group(proxy, d, peer, route)
            if grouped is None:
                continue
            key, labels = grouped
            acc = rows.setdefault(key, Acc(extra=labels))
            acc.add(cls, delta, span, proxy["le"])
            acc.proxies.add((proxy["service"], proxy["instance"]))
        if open_of is not None:
            for proxy in newest.proxies:
                found = open_of(proxy)
                if found is not None:
                    acc = rows.setdefault(found[0], Acc(extra=found[1]))
                    acc.open += found[2]
                    acc.proxies.add((proxy["service"], proxy["instance"]))
    return [rows[k].row() for k in sorted(rows, key=_sort_key)]


def _sort_key(key: Any) -> tuple[str, ...]:
    return tuple(str(k) for k in key) if isinstance(key, tuple) else (str(key),)


def inbound_open(proxy: dict[str, Any]) -> int:
    return sum(n for d, n in proxy.get("open", []) if d == "inbound")


def newest_samples(
    held: Mapping[str, Mapping[str, KeyValue]],
) -> Iterator[tuple[str, Sample]]:
    """Each node's newest readable sample (by etcd revision), nodes in name order; a sample
    that no longer decodes is passed over."""
    for node, slots in sorted(held.items()):
        if not slots:
            continue
        newest = max(slots.values(), key=lambda kv: kv.mod_revision)
        try:
            yield node, Sample.from_json(newest.value)
        except (ValueError, KeyError, TypeError):
            continue
