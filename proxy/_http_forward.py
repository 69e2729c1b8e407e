"""The forward layer for HTTP/1.1: one downstream connection's requests, each sent upstream.

`HttpConnection.serve` reads a request head (under the header timeout), asks the route layer
where it goes (`router`: authorization and upstream choice live there), leases a connection
from the balance layer (`Cluster.acquire`), sends the rewritten head and the body as it
arrives, and sends the response back the same way. Only the head is ever parsed; bodies are
moved by `BodyMover` without being buffered. Retries follow `_retry`; the connection's life
follows `ConnState`.

Errors become responses while none has started: 400/431/408/501 for a bad request, 403 for a
refusal, 502 (naming the upstream, the endpoint and what happened), 503 when no endpoint is
available, 504 on timeout. After a response has started, a failure can only cut the stream.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from . import _retry
from ._cluster import Cluster, Lease
from ._conn_state import ConnState, S
from ._errors import HttpError, StreamClosed, UpstreamError, UpstreamTimeout
from ._framing import ChunkedScanner
from ._h1 import (
    CHUNKED,
    LENGTH,
    NO_BODY,
    Head,
    Limits,
    encode_request,
    encode_response,
    find_head,
    local_response,
    parse_request_head,
    parse_response_head,
)
from ._http_body import BodyMover, SinkClosed, SourceClosed
from ._metrics import HttpStats
from ._splice import splice
from ._stream import Stream, TlsRefused

log = logging.getLogger("weft.proxy")

_RESPONSE_LIMITS = Limits(max_head_bytes=64 * 1024, max_headers=200)
_JOIN_LIMIT = 16 * 1024  # bodies this small go out in the same write as the head


@dataclass(frozen=True, slots=True)
class HttpOptions:
    limits: Limits = Limits()  # noqa: RUF009 - frozen, so one shared default is fine
    header_timeout: float = 10.0
    idle_timeout: float = 60.0
    body_timeout: float = 60.0  # inactivity while a body streams


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


Router = Callable[[Head], "Route | Reject"]


class ClientGone(Exception):
    """The downstream went away; nothing more can be said to it."""


class Observer:
    """Where request summaries go (the admin `/tap` stream, the access log) when anyone looks."""

    active = False

    def publish(self, summary: dict) -> None:  # pragma: no cover - interface
        pass


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
    ) -> None:
        self.down = down
        self.router = router
        self.direction = direction
        self.options = options
        self.observer = observer
        self.state = ConnState()
        self._read_scope: trio.CancelScope | None = None

    def drain(self) -> None:
        """Shutdown: close now if idle, else after the current exchange."""
        if self.state.drain() and self._read_scope is not None:
            self._read_scope.cancel()

    # -- downstream I/O -------------------------------------------------------------------

    async def _send_down(self, data: bytes) -> None:
        try:
            await self.down.send_all(data)
        except StreamClosed as exc:
            raise ClientGone(str(exc)) from exc

    async def serve(self, initial: bytes = b"") -> None:
        buf = initial
        state = self.state
        deadline = trio.current_time() + self.options.header_timeout
        try:
            while True:
                got = await self._read_head(buf, deadline)
                if got is None:
                    return
                head, buf = got
                state.request(keep_alive=head.keep_alive)
                rest = await self._exchange(head, buf)
                if rest is None or state.state is not S.BUSY:
                    return
                if state.response_done() is S.CLOSED:
                    return
                buf = rest
                deadline = math.inf
        except ClientGone:
            state.eof()

    async def _read_head(self, buf: bytes, deadline: float) -> tuple[Head, bytes] | None:
        state = self.state
        options = self.options
        while True:
            if buf:
                try:
                    n = find_head(buf, options.limits)
                    if n > 0:
                        return parse_request_head(buf[:n], options.limits), buf[n:]
                except HttpError as exc:
                    state.error(exc.reason)
                    await self._reply_error(exc.status, exc.reason, None, close=True)
                    return None
                if state.state is S.IDLE:
                    state.head_bytes()
                    deadline = trio.current_time() + options.header_timeout
            if state.state is S.CLOSED:
                return None
            if deadline == math.inf:
                wait_until = trio.current_time() + options.idle_timeout
            else:
                wait_until = deadline
            with trio.CancelScope(deadline=wait_until) as scope:
                self._read_scope = scope
                try:
                    data = await self.down.recv()
                except StreamClosed:
                    data = b""
            self._read_scope = None
            if scope.cancelled_caught:
                if buf and state.state is S.HEAD:
                    await self._reply_error(
                        408,
                        f"request head not complete within {options.header_timeout:g}s",
                        None,
                        close=True,
                    )
                state.timeout()
                return None
            if not data:
                state.eof()
                return None
            buf = buf + data if buf else data

    async def _reply_error(
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
        body = f"weft-proxy: {reason}\n"
        if close:
            self.state.must_close(reason)
        data = local_response(
            status,
            body,
            close=not self.state.keep_alive,
            headers=headers,
            head_only=head is not None and head.method == b"HEAD",
        )
        try:
            await self.down.send_all(data)
        except StreamClosed:
            self.state.must_close("client gone")
        if stats is not None:
            stats.observe(
                status, time.perf_counter() - started, head.size if head else 0, len(data)
            )
        if head is not None and self.observer.active:
            self._publish(head, status, started, None, reason)

    def _publish(
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

    # -- one exchange ---------------------------------------------------------------------

    async def _exchange(self, head: Head, buf: bytes) -> bytes | None:
        """Forward one request and its response; returns unread bytes, or None to close."""
        started = time.perf_counter()
        try:
            route = self.router(head)
        except HttpError as exc:
            await self._reply_error(
                exc.status, exc.reason, None, close=True, head=head, started=started
            )
            return None
        if isinstance(route, Reject):
            if route.stats is not None:
                route.stats.requests += 1
            close = head.framing != NO_BODY  # its body was not read: the stream is out of step
            await self._reply_error(
                route.status,
                route.reason,
                route.stats,
                close=close,
                head=head,
                started=started,
                headers=route.headers,
            )
            return None if close else buf
        route.stats.requests += 1
        if route.connect:
            await self._tunnel(head, buf, route, started)
            return None

        # How much of the body is here already, checked?
        framing = head.framing
        scanner = None
        if framing == NO_BODY:
            body_end, complete = 0, True
        elif framing == LENGTH:
            complete = len(buf) >= head.length
            body_end = head.length if complete else len(buf)
        else:
            scanner = ChunkedScanner()
            try:
                body_end = scanner.scan(buf)
            except HttpError as exc:
                await self._reply_error(
                    exc.status, exc.reason, route.stats, close=True, head=head, started=started
                )
                return None
            complete = scanner.done
        add = route.add
        if head.request_id is None:
            head.request_id = os.urandom(12).hex().encode()
            add = [*add, (b"x-request-id", head.request_id)]
        out = encode_request(head, target=route.target, add=add, drop=route.drop)
        if body_end:
            if body_end <= _JOIN_LIMIT:
                out += buf[:body_end]
                first: list[bytes] = [out]
            else:
                first = [out, buf[:body_end]]
        else:
            first = [out]
        rest = buf[body_end:]
        mover = None if complete else BodyMover(framing, head.length - body_end, scanner=scanner)
        if not complete and framing == CHUNKED:
            pending, rest = rest, b""
        else:
            pending = b""

        tried: list = []
        attempt = 0
        first_error: UpstreamError | None = None
        cluster = route.cluster
        idempotent = head.idempotent or head.get(b"idempotency-key") is not None
        while True:
            attempt += 1
            try:
                lease = await cluster.acquire(tried)
            except UpstreamError as exc:
                error = first_error or exc
                await self._reply_error(
                    error.status,
                    str(error),
                    route.stats,
                    close=not complete,
                    head=head,
                    started=started,
                )
                return rest if complete else None
            try:
                for part in first:
                    await lease.conn.send_all(part)
                if mover is None:
                    with trio.move_on_after(cluster.timeouts.response) as scope:
                        resp, rbuf = await self._response_head(lease, head)
                    if scope.cancelled_caught:
                        raise UpstreamTimeout(
                            f"upstream {cluster.name!r} endpoint {lease.endpoint.key} sent no "
                            f"response within {cluster.timeouts.response:g}s",
                            reason="timeout",
                        )
                    result, ok, reusable = await self._respond(
                        head, route, lease, resp, rbuf, rest, started
                    )
                    lease.done(
                        ok=ok, reusable=reusable, transport_failure=not ok and result is None
                    )
                    return result
                return await self._stream_exchange(head, route, lease, mover, pending, started)
            except (StreamClosed, TlsRefused) as exc:
                # Nothing of a response came back (`_response_head` turns a partial one into 502).
                lease.done(ok=False, reusable=False, transport_failure=True)
                kind = (
                    _retry.TLS
                    if isinstance(exc, TlsRefused) and lease.fresh
                    else _retry.NO_RESPONSE
                )
                reason = f"tls_{exc.reason}" if isinstance(exc, TlsRefused) else "no_response"
                cluster.metrics.add(cluster.metrics.upstream_failures, (cluster.name, reason))
                error = UpstreamError(
                    f"upstream {cluster.name!r} endpoint {lease.endpoint.key} "
                    f"closed the connection before responding ({exc})",
                    reason=reason,
                )
                first_error = first_error or error
                if mover is None and _retry.may_retry(
                    kind, attempt=attempt, idempotent=idempotent, replayable=True
                ):
                    continue
                await self._reply_error(
                    502,
                    str(error),
                    route.stats,
                    close=mover is not None,
                    head=head,
                    started=started,
                )
                return rest if mover is None else None
            except UpstreamError as exc:
                lease.done(ok=False, reusable=False)
                cluster.metrics.add(cluster.metrics.upstream_failures, (cluster.name, exc.reason))
                await self._reply_error(
                    exc.status,
                    str(exc),
                    route.stats,
                    close=mover is not None,
                    head=head,
                    started=started,
                )
                return rest if mover is None else None
            except HttpError as exc:  # the upstream's response broke HTTP/1.1
                lease.done(ok=False, reusable=False)
                cluster.metrics.add(
                    cluster.metrics.upstream_failures, (cluster.name, "bad_response")
                )
                await self._reply_error(
                    502,
                    f"upstream {cluster.name!r} endpoint {lease.endpoint.key}: {exc.reason}",
                    route.stats,
                    close=True,
                    head=head,
                    started=started,
                )
                return None
            except BaseException:
                lease.abandon()
                raise

    async def _response_head(self, lease: Lease, head: Head) -> tuple[Head, bytes]:
        """The final (or 101) response head; 1xx interim responses are passed on."""
        conn = lease.conn
        buf = b""
        got_any = False
        while True:
            if buf:
                n = find_head(buf, _RESPONSE_LIMITS)
                if n > 0:
                    resp = parse_response_head(buf[:n], head.method, _RESPONSE_LIMITS)
                    buf = buf[n:]
                    if 100 <= resp.status < 200 and resp.status != 101:
                        if not head.http10:
                            await self._send_down(encode_response(resp, keep_alive=True))
                        continue
                    return resp, buf
            try:
                data = await conn.recv()
            except StreamClosed:
                if got_any:
                    raise HttpError(502, "the connection broke inside the response head") from None
                raise
            if not data:
                if got_any:
                    raise HttpError(502, "the connection closed inside the response head")
                raise StreamClosed("end of stream")
            got_any = True
            buf = buf + data if buf else data

    async def _respond(
        self,
        head: Head,
        route: Route,
        lease: Lease,
        resp: Head,
        rbuf: bytes,
        rest: bytes,
        started: float,
        *,
        request_complete: bool = True,
    ) -> tuple[bytes | None, bool, bool]:
        """Send the response downstream: (unread bytes or None to close, ok, reusable).

        The caller reports the lease's outcome; ClientGone means the client left.
        """
        state = self.state
        if resp.status == 101:
            if not head.upgrade:
                raise HttpError(502, "101 Switching Protocols to a request that asked for none")
            await self._send_down(encode_response(resp, keep_alive=True))
            state.upgraded()
            route.stats.observe(101, time.perf_counter() - started, head.size, resp.size)
            if self.observer.active:
                self._publish(head, 101, started, lease)
            await splice(self.down, lease.conn, a_first=rest, b_first=rbuf)
            return None, True, False
        if resp.framing not in (LENGTH, CHUNKED, NO_BODY):
            state.must_close("the response is delimited by the end of the connection")
        if not request_complete:
            state.must_close("the request body was not read to its end")
        out = encode_response(resp, keep_alive=state.keep_alive, http10_client=head.http10)
        sent = len(out)
        framing = resp.framing
        reusable = resp.keep_alive and request_complete
        try:
            if framing == NO_BODY:
                await self._send_down(out)
                if rbuf:
                    reusable = False  # bytes after a bodiless response: out of step
            elif framing == LENGTH and len(rbuf) >= resp.length:
                if resp.length <= _JOIN_LIMIT:
                    await self._send_down(out + rbuf[: resp.length])
                else:
                    await self._send_down(out)
                    await self._send_down(rbuf[: resp.length])
                sent += resp.length
                if len(rbuf) > resp.length:
                    reusable = False
            else:
                await self._send_down(out)
                scanner = ChunkedScanner(status=502) if framing == CHUNKED else None
                mover = BodyMover(framing, resp.length, scanner=scanner)
                timeout = self.options.body_timeout
                with trio.CancelScope(deadline=trio.current_time() + timeout) as scope:
                    mover.scope = scope
                    extra = await mover.run(lease.conn, self.down, rbuf, timeout)
                sent += mover.moved
                if not mover.done:
                    raise SourceClosed(f"the response body stalled for {timeout:g}s")
                if extra:
                    reusable = False
        except SinkClosed as exc:
            raise ClientGone("client went away during the response") from exc
        except (SourceClosed, HttpError) as exc:
            # The upstream broke mid-body: the client's copy is cut short, and so is its connection.
            state.must_close(str(exc))
            metrics = route.cluster.metrics
            metrics.add(metrics.upstream_failures, (route.cluster.name, "body_cut"))
            route.stats.observe(0, time.perf_counter() - started, head.size, sent)
            return None, False, False
        route.stats.observe(
            resp.status, time.perf_counter() - started, head.size + head.length, sent
        )
        if self.observer.active:
            self._publish(head, resp.status, started, lease)
        return rest, resp.status < 500, reusable

    async def _stream_exchange(
        self,
        head: Head,
        route: Route,
        lease: Lease,
        mover: BodyMover,
        pending: bytes,
        started: float,
    ) -> bytes | None:
        """A request whose body is still arriving: pump it while waiting for the response."""
        cluster = route.cluster
        outcome: dict[str, object] = {}
        reader = trio.CancelScope()  # no deadline until the body is all sent

        async def pump() -> None:
            try:
                with trio.CancelScope(
                    deadline=trio.current_time() + self.options.body_timeout
                ) as scope:
                    mover.scope = scope
                    outcome["extra"] = await mover.run(
                        self.down, lease.conn, pending, self.options.body_timeout
                    )
                if not mover.done:
                    outcome["error"] = ClientGone("request body stalled")
                    reader.cancel()
                    return
                reader.deadline = trio.current_time() + cluster.timeouts.response
            except SourceClosed as exc:
                outcome["error"] = ClientGone(str(exc))
                reader.cancel()
            except HttpError as exc:  # bad chunked framing from the client
                outcome["error"] = exc
                reader.cancel()
            except SinkClosed:
                pass  # the upstream stopped reading; what it answers tells the rest

        async with trio.open_nursery() as nursery:
            nursery.start_soon(pump)
            with reader:
                try:
                    resp, rbuf = await self._response_head(lease, head)
                except (StreamClosed, HttpError, ClientGone) as exc:
                    outcome.setdefault("error", exc)
                    nursery.cancel_scope.cancel()
            if "error" not in outcome and reader.cancelled_caught:
                outcome["error"] = UpstreamTimeout(
                    f"upstream {cluster.name!r} endpoint {lease.endpoint.key} sent no response "
                    f"within {cluster.timeouts.response:g}s",
                    reason="timeout",
                )
                nursery.cancel_scope.cancel()
            if "error" not in outcome:
                try:
                    outcome["result"] = await self._respond(
                        head,
                        route,
                        lease,
                        resp,
                        rbuf,
                        b"",
                        started,
                        request_complete=mover.done,
                    )
                except ClientGone as exc:
                    outcome["gone"] = exc
                except HttpError as exc:
                    outcome["error"] = exc
                nursery.cancel_scope.cancel()
        if "gone" in outcome:
            lease.abandon()
            raise ClientGone(str(outcome["gone"]))
        if "result" in outcome:
            result, ok, reusable = outcome["result"]  # type: ignore[misc]
            if not mover.done:
                self.state.must_close("the request body was not read to its end")
                lease.done(ok=ok, reusable=False)
                return None
            lease.done(ok=ok, reusable=reusable, transport_failure=not ok and result is None)
            if result is None:
                return None
            return outcome.get("extra") or b""  # type: ignore[return-value]
        error = outcome["error"]
        if isinstance(error, ClientGone):
            lease.abandon()
            raise error
        if isinstance(error, HttpError) and error.status < 500:
            lease.abandon()
            await self._reply_error(
                error.status, error.reason, route.stats, close=True, head=head, started=started
            )
            return None
        if isinstance(error, UpstreamError):
            lease.done(ok=False, reusable=False)
            cluster.metrics.add(cluster.metrics.upstream_failures, (cluster.name, error.reason))
            await self._reply_error(
                error.status, str(error), route.stats, close=True, head=head, started=started
            )
            return None
        lease.done(ok=False, reusable=False, transport_failure=True)
        cluster.metrics.add(cluster.metrics.upstream_failures, (cluster.name, "no_response"))
        detail = (
            error.reason if isinstance(error, HttpError) else f"closed the connection ({error})"
        )
        await self._reply_error(
            502,
            f"upstream {cluster.name!r} endpoint {lease.endpoint.key}: {detail}",
            route.stats,
            close=True,
            head=head,
            started=started,
        )
        return None

    async def _tunnel(self, head: Head, buf: bytes, route: Route, started: float) -> None:
        """CONNECT through the forward proxy: an opaque mTLS tunnel to the upstream."""
        try:
            lease = await route.cluster.acquire([], opaque=True)
        except UpstreamError as exc:
            await self._reply_error(
                exc.status, str(exc), route.stats, close=True, head=head, started=started
            )
            return
        try:
            await self._send_down(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            route.stats.observe(200, time.perf_counter() - started, head.size, 0)
            self.state.upgraded()
            if self.observer.active:
                self._publish(head, 200, started, lease)
            await splice(self.down, lease.conn, a_first=buf)
            lease.done(ok=True, reusable=False)
        except BaseException:
            lease.abandon()
            raise
