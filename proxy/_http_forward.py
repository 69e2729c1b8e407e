"""The forward layer for HTTP/1.1: one downstream connection, request after request.

`HttpConnection.serve` reads a request head, asks the route layer where it goes (`router`:
authorization and upstream choice live there) and hands the request to an `Exchange`
(`_http_exchange`), which leases an upstream connection and moves both messages. Only heads
are parsed; bodies stream through. The connection's life follows `ConnState`.

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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from ._conn_state import ConnState, S
from ._errors import ClientGone, HttpError, StreamClosed
from ._h1 import Head, Limits, find_head, local_response, parse_request_head
from ._metrics import HttpStats, Metrics
from ._stream import Stream

if TYPE_CHECKING:
    from ._cluster import Cluster, Lease

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


@dataclass(slots=True)
class Route:
    """Where one request goes: produced by the route layer."""

    cluster: Cluster
    stats: HttpStats
    peer: str
    target: bytes | None = None
    add: list[tuple[bytes, bytes]] = field(default_factory=list)
    drop: frozenset[bytes] = frozenset()
    connect: bool = False  # a CONNECT tunnel (forward proxy)


@dataclass(slots=True)
class Reject:
    """A request the route layer answers itself (403, unknown upstream, ...)."""

    status: int
    reason: str
    stats: HttpStats | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    label: str = ""  # why, as a metric label (authorization refusals)


Router = Callable[[Head], "Route | Reject"]


class Observer:
    """Where request summaries go (the admin `/tap` stream, the access log) when anyone looks."""

    active = False

    def publish(self, summary: dict[str, Any]) -> None:  # pragma: no cover - interface
        pass


LINGER_SECONDS = 1.0
LINGER_BYTES = 1 << 20

# Phases a connection can time out in.
HEAD = "head"  # reading a request head (header_timeout)
IDLE = "idle"  # waiting for the next request (idle_timeout)
RESPONSE = "response"  # waiting for the upstream's answer (the upstream's response timeout)
BODY = "body"  # a body is streaming (body_timeout since the last bytes)
TUNNEL = "tunnel"  # upgraded or CONNECT: the splice's own idle timeout (tunnel_idle_timeout)
DRAIN = "drain"  # not a timeout: shutdown closing an idle connection


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
    ) -> None:
        self.down = down
        self.metrics = metrics
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
        from ._http_exchange import Exchange

        state = self.state
        first = True
        while True:
            got = await self._read_head(buf, first)
            if got is None:
                return
            first = False
            head, buf = got
            state.request(keep_alive=head.keep_alive)
            rest = await Exchange(self, head).run(buf)
            if rest is None or state.state != S.BUSY:
                return
            if state.response_done() == S.CLOSED:
                return
            buf = rest

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
                f"within {cluster.timeouts.response:g}s"
            )
            await self._send_final(504, detail, route.stats, head, started)
        elif phase == BODY:
            self.count_timeout(BODY)
            log.info("body stalled; connection closed", extra={"kv": {"direction": self.direction}})

    async def _send_final(
        self, status: int, reason: str, stats: HttpStats | None, head: Head | None, started: float
    ) -> None:
        """An error answer on a connection that closes right after (bounded: never blocks)."""
        with trio.move_on_after(1):
            await self.reply_error(status, reason, stats, close=True, head=head, started=started)

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
    ) -> None:
        if close:
            self.state.must_close(reason)
            self.linger = status >= 400
        data = local_response(
            status,
            f"weft-proxy: {reason}\n",
            close=not self.state.keep_alive,
            headers=headers,
            head_only=head is not None and head.method == b"HEAD",
        )
        try:
            await self.down.send_all(data)
        except StreamClosed:
            self.state.must_close("client gone")
        if stats is not None:
            elapsed = time.perf_counter() - started if started else 0.0
            stats.observe(status, elapsed, head.size if head else 0, len(data))
        if head is not None and self.observer.active:
            self.publish(head, status, started, None, reason)

    def publish(
        self, head: Head, status: int, started: float, lease: Lease | None, error: str = ""
    ) -> None:
        self.observer.publish(
            {
                "ts": time.time(),
                "direction": self.direction,
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
            }
        )
