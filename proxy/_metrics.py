"""Golden metrics, cheap to record and rendered by prometheus-client only when scraped.

A `prometheus_client.Histogram.observe` takes a lock per bucket step and a counter `inc` a
lock too: several microseconds per request. Here the hot path adds to plain ints on a
per-(direction, peer) object fetched once per connection or route, and a custom collector
turns them into Prometheus families at scrape time. `dump()` gives the same numbers as plain
data, so the parent of `--workers N` processes can add up its workers' numbers (`merge`).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

# Sub-millisecond to seconds: a sidecar hop costs ~0.1-1 ms; slow upstreams take seconds.
BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
_NB = len(BUCKETS) + 1  # the last slot is +Inf
CLASSES = ("error", "1xx", "2xx", "3xx", "4xx", "5xx")  # index = status // 100; 0: no response


MAX_GRPC_METHODS = 200  # per (direction, peer)


class HttpStats:
    """Request/response numbers of one (direction, peer, route); touched on every request.

    `route` is the route's name from the snapshot (bounded: never the raw path), `default`
    for traffic no route configuration names."""

    __slots__ = ("bytes_in", "bytes_out", "counts", "requests", "responses", "sums")

    def __init__(self) -> None:
        self.requests = 0
        self.responses = [0] * 6
        self.counts = [[0] * _NB for _ in range(6)]
        self.sums = [0.0] * 6
        self.bytes_in = 0  # from the downstream (request bytes)
        self.bytes_out = 0  # to the downstream (response bytes)

    def observe(self, status: int, seconds: float, bytes_in: int, bytes_out: int) -> None:
        cls = status // 100 if 100 <= status < 600 else 0
        self.responses[cls] += 1
        self.counts[cls][bisect.bisect_left(BUCKETS, seconds)] += 1
        self.sums[cls] += seconds
        self.bytes_in += bytes_in
        self.bytes_out += bytes_out


class Metrics:
    def __init__(self) -> None:
        self._http: dict[tuple[str, str, str], HttpStats] = {}
        self.tcp_bytes: dict[tuple[str, str, str], int] = {}  # (direction, peer, in|out)
        self.connections: dict[tuple[str, str], int] = {}  # (direction, protocol) total
        self.open: dict[tuple[str, str], int] = {}  # (direction, protocol) now
        self.tls_failures: dict[tuple[str, str], int] = {}  # (direction, reason)
        self.handshakes: dict[tuple[str, str], int] = {}  # (direction, full|resumed)
        self.authz_denied: dict[tuple[str, str, str], int] = {}  # (protocol, peer, reason)
        self.upstream_failures: dict[tuple[str, str], int] = {}  # (upstream, reason)
        self.refused: dict[tuple[str, str], int] = {}  # (direction, reason): bad client input
        self.timeouts: dict[tuple[str, str], int] = {}  # (direction, phase)
        self.ejections: dict[str, int] = {}  # upstream
        self.retries: dict[tuple[str, str, str], int] = {}  # (upstream, route, reason)
        self.budget_exhausted: dict[tuple[str, str], int] = {}  # (upstream, route)
        self.proxy_errors: dict[tuple[str, str], int] = {}  # (direction, reason): own answers
        self.faults: dict[tuple[str, str, str], int] = {}  # (upstream, route, delay|abort)
        self.mirrors: dict[tuple[str, str], int] = {}  # (mirror upstream, result)
        # gRPC calls by (direction, peer, method, grpc_status, classification); the method
        # label is bounded per peer (`grpc_method`).
        self.grpc: dict[tuple[str, str, str, str, str], int] = {}
        self._grpc_methods: dict[tuple[str, str], set[str]] = {}
        self.snapshots: dict[str, int] = {"applied": 0, "rejected": 0}
        # host -> refusals in registry-only mode; _egress caps the distinct hosts it names.
        self.egress_refused: dict[str, int] = {}
        self.spans: dict[str, int] = {}  # exported | dropped (queue full) | failed (collector)
        # (direction, peer service) -> the SPIFFE ID it presented: what an edge view shows
        # as the caller's verified identity (one entry per calling service, so bounded).
        self.peer_ids: dict[tuple[str, str], str] = {}
        self.gauges: Callable[[], dict[str, Any]] = dict  # filled in by the runtime

    def total_requests(self) -> int:
        return sum(stats.requests for stats in self._http.values())

    def http(self, direction: str, peer: str, route: str = "default") -> HttpStats:
        key = (direction, peer, route)
        stats = self._http.get(key)
        if stats is None:
            stats = self._http[key] = HttpStats()
        return stats

    def grpc_method(self, direction: str, peer: str, method: str) -> str:
        """`method` as a label, or `other` once a peer has shown `MAX_GRPC_METHODS`: a client
        inventing method names cannot grow the metrics without bound."""
        seen = self._grpc_methods.setdefault((direction, peer), set())
        if method in seen:
            return method
        if len(seen) >= MAX_GRPC_METHODS:
            return "other"
        seen.add(method)
        return method

    @staticmethod
    def add(table: dict[Any, int], key: Any, amount: int = 1) -> None:
        table[key] = table.get(key, 0) + amount

    def opened(self, direction: str, protocol: str) -> None:
        key = (direction, protocol)
        self.open[key] = self.open.get(key, 0) + 1
        self.connections[key] = self.connections.get(key, 0) + 1

    def closed(self, direction: str, protocol: str) -> None:
        key = (direction, protocol)
        self.open[key] = self.open.get(key, 0) - 1

    # -- export -----------------------------------------------------------------------

    def dump(self) -> dict[str, Any]:
        """Every number as plain JSON-able data."""
        http = [
            [d, p, r, s.requests, s.responses, s.counts, s.sums, s.bytes_in, s.bytes_out]
            for (d, p, r), s in self._http.items()
        ]
        return {
            "http": http,
            "tcp_bytes": [[*k, v] for k, v in self.tcp_bytes.items()],
            "connections": [[*k, v] for k, v in self.connections.items()],
            "open": [[*k, v] for k, v in self.open.items()],
            "tls_failures": [[*k, v] for k, v in self.tls_failures.items()],
            "handshakes": [[*k, v] for k, v in self.handshakes.items()],
            "authz_denied": [[*k, v] for k, v in self.authz_denied.items()],
            "upstream_failures": [[*k, v] for k, v in self.upstream_failures.items()],
            "refused": [[*k, v] for k, v in self.refused.items()],
            "timeouts": [[*k, v] for k, v in self.timeouts.items()],
            "ejections": [[k, v] for k, v in self.ejections.items()],
            "retries": [[*k, v] for k, v in self.retries.items()],
            "budget_exhausted": [[*k, v] for k, v in self.budget_exhausted.items()],
            "proxy_errors": [[*k, v] for k, v in self.proxy_errors.items()],
            "faults": [[*k, v] for k, v in self.faults.items()],
            "mirrors": [[*k, v] for k, v in self.mirrors.items()],
            "grpc": [[*k, v] for k, v in self.grpc.items()],
            "snapshots": [[k, v] for k, v in self.snapshots.items()],
            "egress_refused": [[k, v] for k, v in self.egress_refused.items()],
            "spans": [[k, v] for k, v in self.spans.items()],
            "peer_ids": [[*k, v, 1] for k, v in self.peer_ids.items()],
            "gauges": self.gauges(),
        }


def merge(dumps: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Add up the dumps of several worker processes (gauges: the first worker's)."""
    out: dict[str, Any] = {"gauges": {}}
    http: dict[tuple[str, str, str], list[Any]] = {}
    tables: dict[str, dict[tuple[Any, ...], int]] = {}
    for n, dump in enumerate(dumps):
        if n == 0:
            out["gauges"] = dump.get("gauges", {})
        for d, p, r, req, resp, counts, sums, b_in, b_out in dump.get("http", []):
            acc = http.get((d, p, r))
            if acc is None:
                http[(d, p, r)] = [
                    d,
                    p,
                    r,
                    req,
                    list(resp),
                    [list(c) for c in counts],
                    list(sums),
                    b_in,
                    b_out,
                ]
                continue
            acc[3] += req
            acc[4] = [a + b for a, b in zip(acc[4], resp, strict=True)]
            acc[5] = [
                [a + b for a, b in zip(x, y, strict=True)]
                for x, y in zip(acc[5], counts, strict=True)
            ]
            acc[6] = [a + b for a, b in zip(acc[6], sums, strict=True)]
            acc[7] += b_in
            acc[8] += b_out
        for name, rows in dump.items():
            if name in ("http", "gauges"):
                continue
            table = tables.setdefault(name, {})
            for *key, value in rows:
                table[tuple(key)] = table.get(tuple(key), 0) + value
    out["http"] = list(http.values())
    for name, table in tables.items():
        out[name] = [[*k, v] for k, v in table.items()]
    return out


class _DumpCollector(Collector):
    def __init__(self, source: Callable[[], dict[str, Any]]) -> None:
        self._source = source

    def collect(self) -> Iterable[Any]:
        dump = self._source()
        p = "weft_proxy_"
        requests = CounterMetricFamily(
            p + "requests", "HTTP requests received", labels=["direction", "peer", "route"]
        )
        responses = CounterMetricFamily(
            p + "responses",
            "HTTP responses sent, by status class ('error': none could be sent)",
            labels=["direction", "peer", "route", "status_class"],
        )
        latency = HistogramMetricFamily(
            p + "response_latency_seconds",
            "Time from a request's head to the end of its response",
            labels=["direction", "peer", "route", "status_class"],
        )
        http_bytes = CounterMetricFamily(
            p + "http_bytes",
            "HTTP bytes from (in) and to (out) the downstream",
            labels=["direction", "peer", "way"],
        )
        bytes_by_peer: dict[tuple[str, str], list[int]] = {}
        for d, peer, route, req, resp, counts, sums, b_in, b_out in dump["http"]:
            requests.add_metric([d, peer, route], req)
            for cls, n in enumerate(resp):
                if not n:
                    continue
                label = CLASSES[cls]
                responses.add_metric([d, peer, route, label], n)
                cumulative, buckets = 0, []
                for bound, count in zip((*BUCKETS, float("inf")), counts[cls], strict=True):
                    cumulative += count
                    buckets.append((_le(bound), cumulative))
                latency.add_metric([d, peer, route, label], buckets, sums[cls])
            acc = bytes_by_peer.setdefault((d, peer), [0, 0])
            acc[0] += b_in
            acc[1] += b_out
        for (d, peer), (b_in, b_out) in bytes_by_peer.items():
            http_bytes.add_metric([d, peer, "in"], b_in)
            http_bytes.add_metric([d, peer, "out"], b_out)
        yield from (requests, responses, latency, http_bytes)

        yield _family(
            CounterMetricFamily,
            p + "tcp_bytes",
            "Opaque TCP bytes from (in) and to (out) the downstream",
            ["direction", "peer", "way"],
            dump["tcp_bytes"],
        )
        yield _family(
            CounterMetricFamily,
            p + "connections",
            "Downstream connections accepted",
            ["direction", "protocol"],
            dump["connections"],
        )
        yield _family(
            GaugeMetricFamily,
            p + "open_connections",
            "Downstream connections open now",
            ["direction", "protocol"],
            dump["open"],
        )
        yield _family(
            CounterMetricFamily,
            p + "tls_handshake_failures",
            "TLS connections refused, by reason",
            ["direction", "reason"],
            dump["tls_failures"],
        )
        yield _family(
            CounterMetricFamily,
            p + "tls_handshakes",
            "TLS handshakes completed, full or resumed from a session ticket",
            ["direction", "kind"],
            dump["handshakes"],
        )
        yield _family(
            CounterMetricFamily,
            p + "authz_denied",
            "Inbound requests (http) or connections (tcp) refused by authorization",
            ["protocol", "peer", "reason"],
            dump["authz_denied"],
        )
        yield _family(
            CounterMetricFamily,
            p + "egress_refused",
            "Forward-proxy requests to undeclared hosts refused in registry-only mode "
            "(hosts past the first 64 are counted as 'other')",
            ["host"],
            dump.get("egress_refused", []),
        )
        yield _family(
            CounterMetricFamily,
            p + "upstream_failures",
            "Attempts to an upstream endpoint that failed",
            ["upstream", "reason"],
            dump["upstream_failures"],
        )
        yield _family(
            CounterMetricFamily,
            p + "http_refused",
            "Requests (or connections) refused for what the client sent, by reason",
            ["direction", "reason"],
            dump.get("refused", []),
        )
        yield _family(
            CounterMetricFamily,
            p + "timeouts",
            "Connections cut by a timeout, by phase (head, detect, tunnel_idle, tcp_idle, ...)",
            ["direction", "phase"],
            dump.get("timeouts", []),
        )
        yield _family(
            CounterMetricFamily,
            p + "endpoint_ejections",
            "Endpoints ejected by failure accrual",
            ["upstream"],
            dump["ejections"],
        )
        yield _family(
            CounterMetricFamily,
            p + "retries",
            "Requests tried again by a route's retry policy, by what failed",
            ["upstream", "route", "reason"],
            dump.get("retries", []),
        )
        yield _family(
            CounterMetricFamily,
            p + "retry_budget_exhausted",
            "Retries a route's policy allowed but the upstream's retry budget refused",
            ["upstream", "route"],
            dump.get("budget_exhausted", []),
        )
        yield _family(
            CounterMetricFamily,
            p + "proxy_errors",
            "Answers the proxy made itself (x-weft-proxy-error), by reason",
            ["direction", "reason"],
            dump.get("proxy_errors", []),
        )
        yield _family(
            CounterMetricFamily,
            p + "faults_injected",
            "Requests a route's fault injection delayed or aborted",
            ["upstream", "route", "fault"],
            dump.get("faults", []),
        )
        yield _family(
            CounterMetricFamily,
            p + "mirrored_requests",
            "Copies of requests sent to a mirror, by result",
            ["upstream", "result"],
            dump.get("mirrors", []),
        )
        yield _family(
            CounterMetricFamily,
            p + "grpc_responses",
            "gRPC calls by method and grpc-status (classification: success or failure)",
            ["direction", "peer", "method", "grpc_status", "classification"],
            dump.get("grpc", []),
        )
        yield _family(
            CounterMetricFamily,
            p + "spans",
            "Trace spans by result: exported, dropped (the export queue was full), failed "
            "(the collector did not take them)",
            ["result"],
            dump.get("spans", []),
        )
        yield _family(
            CounterMetricFamily,
            p + "snapshots",
            "Snapshot documents applied or rejected",
            ["result"],
            dump["snapshots"],
        )
        identities = GaugeMetricFamily(
            p + "peer_identity",
            "The SPIFFE ID each peer service presented (always 1)",
            labels=["direction", "peer", "identity"],
        )
        for d, peer, uri, _ in dump.get("peer_ids", []):
            identities.add_metric([d, peer, uri], 1)
        yield identities
        for name, (help_text, labels, rows) in dump["gauges"].items():
            yield _family(GaugeMetricFamily, p + name, help_text, labels, rows)


def _family(kind: Any, name: str, help_text: str, labels: list[str], rows: list[list[Any]]) -> Any:
    family = kind(name, help_text, labels=labels)
    for *values, value in rows:
        family.add_metric([str(v) for v in values], value)
    return family


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def render(source: Callable[[], dict[str, Any]]) -> bytes:
    """Prometheus text exposition of what `source` dumps, plus process metrics."""
    from prometheus_client import ProcessCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_DumpCollector(source))
    ProcessCollector(registry=registry)
    return generate_latest(registry)
