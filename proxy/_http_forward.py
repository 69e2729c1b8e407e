"""The forward layer for HTTP/1.1: one downstream connection, request after request.

`HttpConnection.serve` reads a request head, asks the route layer where it goes (`router`:
authorization and upstream choice live there) and hands the request to an `Exchange`
(`_http_exchange`, its response side in `_http_respond`), which leases an upstream connection
and moves both messages. Only heads are parsed; bodies stream through. The connection's life
follows `ConnState`.

Timeouts cost nothing per request: a connection only records which phase it is in and when
that phase expires (`phase`, `deadline`), and the runtime's sweeper (`Runtime.sweep`, every
100 ms) cancels the connection's one long-lived cancel scope once a deadline has passed. The
connection then answers for the phase that expired: 408 for a head that never completed, 504
for an upstream that never answered, nothing for an idle keep-alive connection.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from ._conn_state import ConnState, S
from ._errors import ClientGone, HttpError, StreamClosed
from ._h1 import Head, Limits, find_head, local_response, parse_request_head
from ._http_exchange import Exchange
from ._http_plan import BODY as BODY
from ._http_plan import DRAIN as DRAIN
from ._http_plan import FAULT as FAULT
from ._http_plan import HEAD as HEAD
from ._http_plan import IDLE as IDLE
from ._http_plan import RESPONSE as RESPONSE
from ._http_plan import TUNNEL as TUNNEL
from ._http_plan import Observer as Observer
from ._http_plan import Reject as Reject
from ._http_plan import Route as Route
from ._http_plan import Router as Router
from ._metrics import HttpStats, Metrics
from ._stream import Stream

if TYPE_CHECKING:
    from ._cluster import Lease
    from ._span_export import Span, Tracer

log = logging.getLogger("weft.proxy")


@dataclass(frozen=True, slots=True)
class HttpOptions:
    limits: Limits = Limits()  # noqa: RUF009 - frozen, so one shared default is fine
    header_timeout: float = 10.0
    idle_timeout: float = 60.0
    body_timeout: float = 60.0  # inactivity while a body streams
    # Upgraded (WebSocket) connections, CONNECT tunnels and opaque TCP: closed after this long
    # with no byte either way.
    tunnel_idle_timeout: float = 3600.0
    # Set only when a collector is configured: None makes no span and touches no header.
    tracer: Tracer | None = None


LINGER_SECONDS = 1.0
LINGER_BYTES = 1 << 20


# What `x-weft-proxy-error` says on an answer the proxy made itself, when the caller gives no
# more precise reason: who answered is then never in doubt (Linkerd's l5d-proxy-error).
ERROR_REASONS = {
    400: "bad_request",
    403: "denied",
    404: "no_route",
    408: "request_timeout",
    413: "too_large",
    417: "expectation_failed",
    431: "head_too_large",
    501: "not_implemented",
    502: "bad_gateway",
    503: "unavailable",
    504: "timeout",
    505: "bad_version",
}
PROXY_ERROR = b"x-weft-proxy-error"


class HttpConnection:
    """Serves one downstream connection; `serve` returns when it should be closed."""

    def __init__(
        self,
        down: Stream,
        router: Router,
        *,
        direction: str,
        options: HttpOptions,
        observer: Observer,
        metrics: Metrics | None = None,
        client_id: str = "",
    ) -> None:
        self.down = down
        self.metrics = metrics
        # The caller's verified SPIFFE ID (inbound), so a tap can say who called.
        self.client_id = client_id or None
        self.tap_route = ""  # the route and attempt of the exchange in progress, for /tap
        self.tap_attempt = 0
        self.router = router
        self.direction = direction
        self.options = options
        self.observer = observer
        self.state = ConnState()
        self.scope = trio.CancelScope()
        self.phase = HEAD
        self.deadline = math.inf
        self.expired = ""
        self.linger = False  # set by an error answer that ends the connection
        # The exchange waiting for its response, for the 504 if it never comes.
        self.waiting: tuple[Head, Route, Lease, float] | None = None
        self.tracer = options.tracer
        self.span: Span | None = None  # the exchange in progress's, when sampled

    # -- timeouts and shutdown (called from the runtime) ------------------------------------

    def expire(self, now: float) -> bool:
        """Cancel the connection if its phase's deadline has passed."""
        if now < self.deadline or self.expired:
            return False
        self.expired = self.phase
        self.scope.cancel()
        return True

    def drain(self) -> None:
        """Shutdown: close now if idle, else after the current exchange."""
        if self.state.drain() and not self.expired:
            self.expired = DRAIN
            self.scope.cancel()

    def enter(self, phase: str, seconds: float) -> None:
        self.phase = phase
        self.deadline = trio.current_time() + seconds

    def touch(self) -> None:
        """Bytes of a body moved: its inactivity timeout starts again."""
        self.deadline = trio.current_time() + self.options.body_timeout

    # -- the request loop ---------------------------------------------------------------------

    async def serve(self, initial: bytes = b"", *, refusal: HttpError | None = None) -> None:
        """Serve requests; with `refusal`, answer that error at once and close instead (a
        connection the layer before decided not to serve, such as one that is not HTTP/1.1)."""
        try:
            with self.scope:
                if refusal is not None:
                    self.state.error(refusal.reason)
                    await self.refuse(refusal)
                else:
                    await self._loop(initial)
        except ClientGone:
            self.state.eof()
            return
        if self.expired:
            await self._after_expiry()
        if self.linger:
            await self._linger()

    async def _loop(self, buf: bytes) -> None:
        state = self.state
        first = True
        while True:
            got = await self._read_head(buf, first)
            if got is None:
                return
            first = False
            head, buf = got
            state.request(keep_alive=head.keep_alive)
            if self.tracer is None:
                rest = await Exchange(self, head).run(buf)
            else:
                rest = await self._traced(head, buf)
            if rest is None or state.state != S.BUSY:
                return
            if state.response_done() == S.CLOSED:
                return
            buf = rest

    async def _traced(self, head: Head, buf: bytes) -> bytes | None:
        """The exchange with its trace context handled and, if sampled, its span made."""
        tracer = self.tracer
        assert tracer is not None
        self.span = span = tracer.begin(head, self.direction, self.client_id)
        try:
            return await Exchange(self, head).run(buf)
        finally:
            if span is not None:
                self.span = None
                tracer.end(span, self.tap_route, self.tap_attempt)

    async def _linger(self) -> None:
        """After an error answer, stop sending and read (and drop) what the client still
        sends, for a moment: closing with unread bytes would reset the connection, and a
        reset can destroy the answer before the client has read it (nginx's lingering close).
        """
        self.down.shutdown_write()
        received = 0
        with trio.move_on_after(LINGER_SECONDS):
            while received < LINGER_BYTES:
                try:
                    data = await self.down.recv()
                except StreamClosed:
                    return
                if not data:
                    return
                received += len(data)

    async def _read_head(self, buf: bytes, first: bool) -> tuple[Head, bytes] | None:
        state = self.state
        options = self.options
        if first or buf:
            self.enter(HEAD, options.header_timeout)
        else:
            self.enter(IDLE, options.idle_timeout)
        while True:
            if buf:
                try:
                    n = find_head(buf, options.limits)
                    if n > 0:
                        return parse_request_head(buf[:n], options.limits), buf[n:]
                except HttpError as exc:
                    state.error(exc.reason)
                    await self.refuse(exc)
                    return None
                if state.state == S.IDLE:
                    state.head_bytes()
                    if self.phase is IDLE:
                        self.enter(HEAD, options.header_timeout)
            try:
                data = await (self.down.recv() if first and not buf else self.down.recv_later())
            except StreamClosed:
                data = b""
            if not data:
                state.eof()
                return None
            buf = buf + data if buf else data

    async def _after_expiry(self) -> None:
        phase = self.expired
        partial_head = self.state.state == S.HEAD
        self.state.timeout()
        if phase == HEAD and partial_head:
            detail = f"request head not complete within {self.options.header_timeout:g}s"
            self.count_refusal("head_timeout")
            self.count_timeout(HEAD)
            await self._send_final(408, detail, None, None, 0.0)
        elif phase == RESPONSE and self.waiting is not None:
            head, route, lease, started = self.waiting
            cluster = route.cluster
            cluster.metrics.add(cluster.metrics.upstream_failures, (cluster.name, "timeout"))
            detail = (
                f"upstream {cluster.name!r} endpoint {lease.endpoint.key} sent no response "
                f"within its limit ({cluster.timeouts.response:g}s, or its route's timeout)"
            )
            await self._send_final(504, detail, route.stats, head, started, "timeout")
        elif phase == BODY:
            self.count_timeout(BODY)
            log.info("body stalled; connection closed", extra={"kv": {"direction": self.direction}})

    async def _send_final(
        self,
        status: int,
        reason: str,
        stats: HttpStats | None,
        head: Head | None,
        started: float,
        error: str = "",
    ) -> None:
        """An error answer on a connection that closes right after (bounded: never blocks)."""
        with trio.move_on_after(1):
            await self.reply_error(
                status, reason, stats, close=True, head=head, started=started, error=error
            )

    # -- answers the proxy makes itself ----------------------------------------------------

    async def send_down(self, data: bytes) -> None:
        try:
            await self.down.send_all(data)
        except StreamClosed as exc:
            raise ClientGone(str(exc)) from exc

    def count_timeout(self, phase: str) -> None:
        metrics = self.metrics
        if metrics is not None:
            metrics.add(metrics.timeouts, (self.direction, phase))

    def count_refusal(self, label: str) -> None:
        metrics = self.metrics
        if metrics is not None:
            metrics.add(metrics.refused, (self.direction, label))

    async def refuse(
        self,
        exc: HttpError,
        stats: HttpStats | None = None,
        *,
        head: Head | None = None,
        started: float = 0.0,
    ) -> None:
        """Answer a request the client got wrong and close: nothing of it went anywhere."""
        self.count_refusal(exc.label)
        await self.reply_error(
            exc.status, exc.reason, stats, close=True, head=head, started=started
        )

    async def reply_error(
        self,
        status: int,
        reason: str,
        stats: HttpStats | None,
        *,
        close: bool,
        head: Head | None = None,
        started: float = 0.0,
        headers: list[tuple[bytes, bytes]] | None = None,
        error: str = "",
    ) -> None:
        if close:
            self.state.must_close(reason)
            self.linger = status >= 400
        label = error or ERROR_REASONS.get(status, "proxy_error")
        if self.metrics is not None:
            self.metrics.add(self.metrics.proxy_errors, (self.direction, label))
        data = local_response(
            status,
            f"weft-proxy: {reason}\n",
            close=not self.state.keep_alive,
            headers=[(PROXY_ERROR, label.encode()), *(headers or ())],
            head_only=head is not None and head.method == b"HEAD",
        )
        try:
            await self.down.send_all(data)
        except StreamClosed:
            self.state.must_close("client gone")
        if stats is not None:
            elapsed = time.perf_counter() - started if started else 0.0
            stats.observe(status, elapsed, head.size if head else 0, len(data))
        if head is not None and (self.observer.active or self.span is not None):
            self.publish(head, status, started, None, reason, label=label)

    def publish(
        self,
        head: Head,
        status: int,
        started: float,
        lease: Lease | None,
        error: str = "",
        *,
        label: str = "",
    ) -> None:
        if self.span is not None:
            self.span.record(status, lease, label)
            if not self.observer.active:
                return
        self.observer.publish(
            {
                "ts": time.time(),
                "direction": self.direction,
                "client_id": self.client_id,
                "method": head.method.decode("latin-1"),
                "authority": head.host.decode("latin-1"),
                "path": head.target.decode("latin-1")[:512],
                "status": status,
                "latency_ms": round((time.perf_counter() - started) * 1000, 3),
                "upstream": lease.cluster.name if lease else None,
                "endpoint": lease.endpoint.key if lease else None,
                "request_id": (head.request_id or b"").decode("latin-1"),
                "traceparent": (head.get(b"traceparent") or b"").decode("latin-1") or None,
                "error": error or None,
                "route": self.tap_route or None,
                "attempt": self.tap_attempt or None,
            }
        )
