"""Spans of sampled requests, and their export to an OTLP/HTTP collector.

A `Tracer` exists only when a collector is configured (`trace_collector`): without one the
connection holds None and no span, header or id is made. The request path only appends a
finished span to a bounded queue (`SpanExporter.add`: a full queue drops and counts); a
background task encodes batches (`_otlp_encode`) and POSTs them to `/v1/traces` with a
timeout, so a slow or absent collector never holds a request up.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import trio

from . import _otlp_encode as otlp
from ._h1 import Head
from ._trace_context import decide

if TYPE_CHECKING:
    from ._cluster import Lease

log = logging.getLogger("weft.proxy")

SCOPE = ("weft.proxy", "1")


class Span:
    """One request as one hop saw it; attributes follow OpenTelemetry's HTTP conventions."""

    __slots__ = (
        "attempt",
        "client_id",
        "end_ns",
        "error",
        "kind",
        "lease",
        "method",
        "parent_id",
        "route",
        "span_id",
        "start_ns",
        "status",
        "target",
        "trace_id",
    )

    def __init__(
        self,
        trace_id: bytes,
        span_id: bytes,
        parent_id: bytes | None,
        kind: int,
        head: Head,
        client_id: str | None,
    ) -> None:
        self.trace_id, self.span_id, self.parent_id = trace_id, span_id, parent_id
        self.kind = kind
        self.method = head.method.decode("latin-1")
        self.target = head.target[:512].decode("latin-1")
        self.client_id = client_id
        self.start_ns = time.time_ns()
        self.end_ns = 0
        self.status = 0  # 0: no response was sent
        self.error = ""
        self.lease: Lease | None = None
        self.route = ""
        self.attempt = 0

    def record(self, status: int, lease: Lease | None, error: str) -> None:
        self.status, self.lease, self.error = status, lease, error

    def encode(self) -> bytes:
        attrs: list[otlp.Attribute] = [
            ("http.request.method", self.method),
            ("url.path", self.target.partition("?")[0]),
        ]
        if self.status:
            attrs.append(("http.response.status_code", self.status))
        if self.route:
            attrs.append(("weft.route", self.route))
        if self.attempt > 1:
            attrs.append(("http.request.resend_count", self.attempt - 1))
        lease = self.lease
        if lease is not None:
            attrs.append(("weft.upstream", lease.cluster.name))
            host, _, port = lease.endpoint.key.rpartition(":")
            attrs += [("server.address", host.strip("[]")), ("server.port", int(port or 0))]
            address = lease.cluster.addresses.get(lease.endpoint.key)
            if address is not None and address.identity is not None:
                attrs.append(("weft.peer.identity", address.identity.uri))
        if self.client_id:  # inbound: the caller's verified SPIFFE ID
            attrs.append(("weft.peer.identity", self.client_id))
        failed = not self.status or self.status >= 500
        if self.error:  # the proxy answered itself: its reason label (no_route, timeout, ...)
            attrs.append(("error.type", self.error))
        elif failed:
            attrs.append(("error.type", str(self.status) if self.status else "no_response"))
        route = f" {self.route}" if self.route else ""
        return otlp.encode_span(
            trace_id=bytes.fromhex(self.trace_id.decode()),
            span_id=bytes.fromhex(self.span_id.decode()),
            parent_id=bytes.fromhex(self.parent_id.decode()) if self.parent_id else None,
            name=f"{self.method}{route}",
            kind=self.kind,
            start_ns=self.start_ns,
            end_ns=self.end_ns,
            attributes=attrs,
            status=otlp.STATUS_ERROR if failed else otlp.STATUS_UNSET,
        )


class SpanExporter:
    """Bounded queue → batches → POST /v1/traces (protobuf), off the request path."""

    def __init__(
        self,
        url: str,
        service: Callable[[], str],
        *,
        max_queue: int = 2048,
        batch: int = 512,
        interval: float = 1.0,
        timeout: float = 5.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r} is not an http(s):// collector URL")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.tls = parts.scheme == "https"
        self.path = parts.path if parts.path not in ("", "/") else "/v1/traces"
        self.service = service
        self.max_queue, self.batch, self.interval, self.timeout = (
            max_queue,
            batch,
            interval,
            timeout,
        )
        self.queue: deque[Span] = deque()
        # exported | dropped (the queue was full) | failed (the collector did not take them);
        # `serve` shares the proxy's metrics table here, so /metrics shows them.
        self.counts: dict[str, int] = {}
        self._wake = trio.Event()

    @property
    def exported(self) -> int:
        return self.counts.get("exported", 0)

    @property
    def dropped(self) -> int:
        return self.counts.get("dropped", 0)

    @property
    def failed(self) -> int:
        return self.counts.get("failed", 0)

    def _count(self, result: str, n: int) -> None:
        self.counts[result] = self.counts.get(result, 0) + n

    def add(self, span: Span) -> None:
        if len(self.queue) >= self.max_queue:
            self._count("dropped", 1)
            return
        self.queue.append(span)
        if len(self.queue) >= self.batch:
            self._wake.set()

    async def run(self) -> None:
        """Export until cancelled; what is queued then is sent by `flush`."""
        while True:
            with trio.move_on_after(self.interval):
                await self._wake.wait()
            self._wake = trio.Event()
            await self.flush()

    async def flush(self) -> None:
        while self.queue:
            spans = [self.queue.popleft() for _ in range(min(self.batch, len(self.queue)))]
            body = otlp.encode_export(
                [("service.name", self.service()), ("telemetry.sdk.name", "weft")],
                (span.encode() for span in spans),
                SCOPE,
            )
            ok = False
            with trio.move_on_after(self.timeout):
                ok = await self._post(body)
            self._count("exported" if ok else "failed", len(spans))

    async def _post(self, body: bytes) -> bool:
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            "Content-Type: application/x-protobuf\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        try:
            stream: trio.abc.Stream = await trio.open_tcp_stream(self.host, self.port)
            if self.tls:
                stream = trio.SSLStream(
                    stream, ssl.create_default_context(), server_hostname=self.host
                )
            async with stream:
                await stream.send_all(head + body)
                reply = b""
                while b"\r\n" not in reply and len(reply) < 4096:
                    data = await stream.receive_some(4096)
                    if not data:
                        break
                    reply += data
        except (OSError, trio.BrokenResourceError, ssl.SSLError) as exc:
            log.warning(
                "span export failed", extra={"kv": {"collector": self.host, "error": str(exc)}}
            )
            return False
        status = reply.split(b" ", 2)[1:2]
        if not status or not status[0].startswith(b"2"):
            log.warning(
                "collector refused spans", extra={"kv": {"reply": reply[:100].decode("latin-1")}}
            )
            return False
        return True


class Tracer:
    """Per process: makes the spans of sampled requests and hands them to the exporter."""

    def __init__(self, exporter: SpanExporter, rate: float) -> None:
        self.exporter = exporter
        self.rate = rate

    def begin(self, head: Head, direction: str, client_id: str | None) -> Span | None:
        """At a request's head: rewrite its trace headers; a span if it is sampled."""
        outbound = direction == "outbound"
        decision = decide(head, start=outbound, rate=self.rate)
        if decision is None or not decision.sampled:
            return None
        kind = otlp.KIND_CLIENT if outbound else otlp.KIND_SERVER
        return Span(decision.trace_id, decision.span_id, decision.parent_id, kind, head, client_id)

    def end(self, span: Span, route: str, attempt: int) -> None:
        span.end_ns = time.time_ns()
        span.route, span.attempt = route, attempt
        self.exporter.add(span)
