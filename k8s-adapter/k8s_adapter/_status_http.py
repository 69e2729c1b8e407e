"""A small HTTP endpoint for probes and operators: /healthz, /readyz, /status, /metrics.

    /healthz   200 while the process's loops run (liveness)
    /readyz    200 once every informer has listed and the registry token was accepted;
               a standby replica is ready too (it is warm and can take over at once)
    /status    JSON: leadership, informer and sync counters
    /metrics   the same counters in the Prometheus text format

Served by the same HTTP server as `weft server` and the agent's local API (`registry.web`);
`respond` is the pure part, one request in, one response out.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import trio
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from registry.web import HTTPServer, Request, Response

# {name: (type, help, value)}; counters are named with their `_total` suffix.
Samples = dict[str, tuple[str, str, float]]


class StatusServer:
    def __init__(
        self,
        *,
        ready: Callable[[], bool],
        status: Callable[[], dict[str, Any]],
        metrics: Callable[[], Samples],
    ) -> None:
        self.ready = ready
        self.status = status
        self.metrics = metrics
        self._pages: dict[str, Callable[[], Response]] = {
            "/healthz": lambda: Response.text("ok\n"),
            "/readyz": self._readyz,
            "/status": self._status,
            "/metrics": self._metrics,
        }

    def respond(self, method: str, path: str) -> Response:
        """The response to `method path` (pure apart from reading the callbacks)."""
        page = self._pages.get(path)
        if page is None:
            known = ", ".join(self._pages)
            return Response.text(f"no such endpoint: {path}; there are {known}\n", 404)
        if method not in ("GET", "HEAD"):
            refused = Response.text(f"{method} is not allowed on {path}; use GET\n", 405)
            refused.headers.append(("Allow", "GET, HEAD"))
            return refused
        return page()

    def _readyz(self) -> Response:
        ready = self.ready()
        return Response.text("ready\n" if ready else "not ready\n", 200 if ready else 503)

    def _status(self) -> Response:
        return Response(body=json.dumps(self.status(), indent=2, default=str).encode() + b"\n")

    def _metrics(self) -> Response:
        return Response(body=prometheus(self.metrics()), content_type="text/plain; version=0.0.4")

    async def __call__(self, request: Request) -> Response:
        return self.respond(request.method, request.path)

    async def serve(
        self,
        host: str,
        port: int,
        *,
        task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        await HTTPServer(self).serve(host, port, task_status=task_status)


class _Snapshot:
    """A prometheus_client collector over one reading of the samples."""

    def __init__(self, samples: Samples) -> None:
        self.samples = samples

    def collect(self) -> Iterator[Metric]:
        for name, (kind, help_text, value) in sorted(self.samples.items()):
            if kind == "counter":
                yield CounterMetricFamily(name.removesuffix("_total"), help_text, value=value)
            else:
                yield GaugeMetricFamily(name, help_text, value=value)


def prometheus(samples: Samples) -> bytes:
    """The Prometheus text exposition of `samples`."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(samples))
    return generate_latest(registry)
