"""The forward layer for HTTP/2: one downstream connection, its streams served concurrently.

Each request stream goes through the same layers as an HTTP/1.1 request: the listener's
router (authorization inbound, the upstream outbound), the route table, then
`_h2_exchange.StreamExchange` (balance per stream, forward, retries). This module owns the
connection: its session (`_h2_session`), a task per stream, stream resets, a cap on streams
in flight, graceful GOAWAY on drain and the idle timeout. Errors the proxy answers itself
go out as HTTP statuses, or as Trailers-Only responses to gRPC callers (`_grpc`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import h2.errors
import trio

from . import _grpc
from ._errors import HttpError, StreamClosed
from ._h1 import CHUNKED, NO_BODY, Head
from ._h2_exchange import StreamExchange
from ._h2_session import MAX_CONCURRENT_STREAMS, H2Closed, H2Session, Headers
from ._http_plan import Observer, Reject, Router
from ._metrics import HttpStats, Metrics
from ._stream import Stream

if TYPE_CHECKING:
    from ._http_forward import HttpOptions
    from ._retry_budget import RetryBudget

log = logging.getLogger("weft.proxy")

PROXY_ERROR = b"x-weft-proxy-error"
_ERRORS = {403: "denied", 404: "no_route", 405: "not_allowed", 502: "bad_gateway",
           503: "unavailable", 504: "timeout"}  # fmt: skip


def request_head(headers: Headers, ended: bool) -> Head:
    """An HTTP/2 request's headers as the `Head` the routers and route tables read."""
    pseudo: dict[bytes, bytes] = {}
    fields = []
    for name, value in headers:
        if name[:1] == b":":
            pseudo[name] = value
        else:
            fields.append((name, name, value))
    head = Head(
        headers=fields,
        http10=False,
        framing=NO_BODY if ended else CHUNKED,
        length=0,
        keep_alive=True,
        connection_tokens=frozenset(),
        method=pseudo.get(b":method", b""),
        target=pseudo.get(b":path", b""),
        host=pseudo.get(b":authority", b""),
    )
    head.request_id = head.get(b"x-request-id")
    if not head.host:
        head.host = head.get(b"host") or b""
    return head


class H2Connection:
    """Serves one downstream HTTP/2 connection; `serve` returns when it is closed."""

    def __init__(
        self,
        down: Stream,
        router: Router,
        *,
        direction: str,
        options: HttpOptions,
        observer: Observer,
        metrics: Metrics,
        budget: Callable[[str], RetryBudget | None],
    ) -> None:
        self.down = down
        self.router = router
        self.direction = direction
        self.options = options
        self.observer = observer
        self.metrics = metrics
        self.budget = budget
        self.session = H2Session(down, client=False, on_request=self._on_request)
        self.session.on_reset = self._on_reset
        self.scopes: dict[int, trio.CancelScope] = {}
        self.nursery: trio.Nursery | None = None
        self.draining = False
        self.deadline = math.inf  # idle: no stream for `idle_timeout`
        self.expired = ""

    # -- the runtime's view (same face as HttpConnection) ---------------------------------

    def expire(self, now: float) -> bool:
        if now < self.deadline or self.expired or self.scopes:
            return False
        self.expired = "idle"
        self.session.close(H2Closed("idle"))
        return True

    def drain(self) -> None:
        """GOAWAY now; streams in flight finish, then the connection closes."""
        if self.draining or self.nursery is None:
            return
        self.draining = True
        self.nursery.start_soon(self._goaway)

    async def _goaway(self) -> None:
        await self.session.goaway()
        if not self.scopes:
            self.session.close(H2Closed("drained"))

    # -- serving --------------------------------------------------------------------------

    async def serve(self, preface: bytes = b"") -> None:
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                self._idle()
                await self.session.start(preface)
                if self.draining:
                    nursery.start_soon(self._goaway)
                await self.session.run()
                nursery.cancel_scope.cancel()
        except (StreamClosed, H2Closed):
            pass
        finally:
            self.session.close(H2Closed("closed"))

    def _idle(self) -> None:
        self.deadline = trio.current_time() + self.options.idle_timeout

    def _on_request(self, stream_id: int, headers: Headers, ended: bool) -> None:
        assert self.nursery is not None
        if len(self.scopes) >= 2 * MAX_CONCURRENT_STREAMS or self.draining:
            # Streams the peer reset still finish their work here: bounded too (rapid reset).
            self.nursery.start_soon(
                self.session.reset, stream_id, h2.errors.ErrorCodes.REFUSED_STREAM
            )
            return
        scope = self.scopes[stream_id] = trio.CancelScope()
        self.deadline = math.inf
        self.nursery.start_soon(self._stream, stream_id, headers, ended, scope)

    def _on_reset(self, stream_id: int) -> None:
        scope = self.scopes.get(stream_id)
        if scope is not None:
            scope.cancel()

    async def _stream(
        self, stream_id: int, headers: Headers, ended: bool, scope: trio.CancelScope
    ) -> None:
        started = time.perf_counter()
        head = request_head(headers, ended)
        grpc = _grpc.is_grpc(head.get(b"content-type"))
        try:
            with scope:
                await self._exchange(stream_id, head, grpc, started)
        except (H2Closed, StreamClosed):
            pass
        finally:
            del self.scopes[stream_id]
            self.session.forget(stream_id)
            if not self.scopes:
                self._idle()
                if self.session.goaway_sent:
                    self.session.close(H2Closed("drained"))

    async def _exchange(self, stream_id: int, head: Head, grpc: bool, started: float) -> None:
        try:
            route = self.router(head)
        except HttpError as exc:
            self.metrics.add(self.metrics.refused, (self.direction, exc.label))
            await self.reply_error(stream_id, exc.status, exc.reason, None, grpc, started, head)
            return
        if isinstance(route, Reject):
            if route.stats is not None:
                route.stats.requests += 1
            await self.reply_error(
                stream_id, route.status, route.reason, route.stats, grpc, started, head,
                headers=route.headers,
            )  # fmt: skip
            return
        exchange = StreamExchange(self, stream_id, head, grpc, started)
        await exchange.run(route)

    # -- answers the proxy makes itself ---------------------------------------------------

    async def reply_error(
        self,
        stream_id: int,
        status: int,
        reason: str,
        stats: HttpStats | None,
        grpc: bool,
        started: float,
        head: Head | None,
        *,
        headers: list[tuple[bytes, bytes]] | None = None,
        error: str = "",
        peer: str = "",
        grpc_code: int = 0,
    ) -> None:
        label = error or _ERRORS.get(status, "proxy_error")
        self.metrics.add(self.metrics.proxy_errors, (self.direction, label))
        extra = [(PROXY_ERROR, label.encode()), *(headers or ())]
        body = b""
        if grpc:
            code = grpc_code or _grpc.from_http(status)
            out = _grpc.trailers_only(code, f"weft-proxy: {reason}", extra)
            if peer and head is not None:
                self.count_grpc(peer, head, str(code))
            sent_status = 200
        else:
            body = f"weft-proxy: {reason}\n".encode()
            out = [
                (b":status", str(status).encode()),
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                *extra,
            ]
            sent_status = status
        try:
            await self.session.send_headers(stream_id, out, end=not body)
            if body:
                await self.session.send_data(stream_id, body, end=True)
        except (H2Closed, StreamClosed):
            pass
        except Exception:  # the stream was already half-closed by the peer's reset, etc.
            log.debug("could not answer an HTTP/2 stream", exc_info=True)
        if stats is not None:
            stats.observe(sent_status, time.perf_counter() - started, 0, len(body))

    def count_grpc(self, peer: str, head: Head, code: str) -> None:
        """gRPC calls by method and status, beside the HTTP numbers."""
        method = self.metrics.grpc_method(self.direction, peer, _grpc.method_label(head.target))
        failure = not code.isdigit() or _grpc.is_failure(int(code))
        key = (self.direction, peer, method, code, "failure" if failure else "success")
        self.metrics.add(self.metrics.grpc, key)
