"""The response side of an HTTP/1.1 exchange: what happens on the leased upstream connection
once the request's head is on it.

`Responder`, the base of `_http_exchange.Exchange`, reads the upstream's response head (1xx
interim responses are passed on) and sends the response downstream: a small body in the same
write as its head, a larger, chunked or close-delimited one as it arrives, a 101 upgrade
spliced both ways. A request whose body is still arriving has it pumped by a second task while
this one waits for the response, so an upstream that answers early (413, a 100-continue
refusal) is heard. A CONNECT through the forward proxy leases its route's cluster here and
is spliced as an opaque tunnel. Errors become 4xx/5xx answers (`_fail`) while no response has
started, and cut the connection after. Which endpoint an attempt leases, and whether to try
another, is the exchange's.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import trio

from ._attempts import Attempts
from ._cluster import Lease
from ._errors import (
    ClientGone,
    HttpError,
    SinkClosed,
    SourceClosed,
    StreamClosed,
    UpstreamError,
)
from ._framing import ChunkedScanner
from ._h1 import (
    CHUNKED,
    LENGTH,
    NO_BODY,
    Head,
    Limits,
    encode_response,
    find_head,
    parse_response_head,
)
from ._header_mods import apply_to
from ._http_body import BodyMover
from ._http_plan import BODY, RESPONSE, TUNNEL, Route
from ._route_table import RouteRule
from ._splice import splice
from ._stream import RECV_SIZE

if TYPE_CHECKING:
    from ._http_forward import HttpConnection

_RESPONSE_LIMITS = Limits(max_head_bytes=64 * 1024, max_headers=200)
JOIN_LIMIT = 16 * 1024  # bodies this small go out in the same write as their head


class _Streamed:
    """What became of a request whose body streamed while its response was awaited."""

    __slots__ = ("error", "extra", "gone", "result")

    def __init__(self) -> None:
        self.extra = b""  # bytes read past the request body (a pipelined request)
        self.result: tuple[bytes | None, bool, bool] | None = None  # from _respond
        self.error: BaseException | None = None
        self.gone: ClientGone | None = None


class Responder:
    """The exchange's response half. It holds no state of its own: `Exchange` owns the slots
    declared here (`route` is unset until the router has placed the request; `_fail` allows for
    that, nothing else runs before it)."""

    __slots__ = ()

    conn: HttpConnection
    head: Head
    route: Route  # set once the route layer has placed the request
    rule: RouteRule | None
    attempts: Attempts | None
    started: float

    async def _fail(self, status: int, reason: str, *, close: bool, error: str = "") -> None:
        stats = self.route.stats if hasattr(self, "route") else None
        await self.conn.reply_error(
            status, reason, stats, close=close, head=self.head, started=self.started, error=error
        )

    async def _response_head(self, lease: Lease) -> tuple[Head, bytes]:
        """The final (or 101) response head; 1xx interim responses are passed on."""
        conn, head = self.conn, self.head
        upstream = lease.conn
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
                            await conn.send_down(encode_response(resp, keep_alive=True))
                        continue
                    return resp, buf
            try:
                data = await upstream.recv_later()
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
        self, lease: Lease, resp: Head, rbuf: bytes, rest: bytes, *, request_complete: bool = True
    ) -> tuple[bytes | None, bool, bool]:
        """Send the response downstream: (unread bytes or None to close, ok, reusable).

        The caller reports the lease's outcome; ClientGone means the client left.
        """
        conn, head, route = self.conn, self.head, self.route
        state = conn.state
        if resp.status == 101:
            if not head.upgrade:
                raise HttpError(502, "101 Switching Protocols to a request that asked for none")
            await conn.send_down(encode_response(resp, keep_alive=True))
            state.upgraded()
            conn.enter(TUNNEL, float("inf"))
            route.stats.observe(101, time.perf_counter() - self.started, head.size, resp.size)
            if conn.observer.active or conn.span is not None:
                conn.publish(head, 101, self.started, lease)
            moved = await splice(
                conn.down,
                lease.conn,
                a_first=rest,
                b_first=rbuf,
                idle_timeout=conn.options.tunnel_idle_timeout,
            )
            if moved.timed_out:
                conn.count_timeout("tunnel_idle")
            return None, True, False
        if resp.framing not in (LENGTH, CHUNKED, NO_BODY):
            state.must_close("the response is delimited by the end of the connection")
        if not request_complete:
            state.must_close("the request body was not read to its end")
        rule = self.rule
        if rule is not None and not rule.response_headers.empty:
            resp.headers = apply_to(resp.headers, rule.response_headers)
        out = encode_response(resp, keep_alive=state.keep_alive, http10_client=head.http10)
        sent = len(out)
        framing = resp.framing
        reusable = resp.keep_alive and request_complete
        if framing == LENGTH and len(rbuf) < resp.length <= JOIN_LIMIT:
            # The head came alone and a small body follows (many servers write them
            # separately): wait for it and send both in one write downstream.
            conn.enter(BODY, conn.options.body_timeout)
            while len(rbuf) < resp.length:
                try:
                    data = await lease.conn.recv_later(RECV_SIZE)
                except StreamClosed:
                    data = b""
                if not data:
                    raise HttpError(502, "the connection closed inside the response body")
                rbuf += data
        try:
            if framing == NO_BODY:
                await conn.send_down(out)
                if rbuf:
                    reusable = False  # bytes after a bodiless response: out of step
            elif framing == LENGTH and len(rbuf) >= resp.length:
                if resp.length <= JOIN_LIMIT:
                    await conn.send_down(out + rbuf[: resp.length])
                else:
                    await conn.send_down(out)
                    await conn.send_down(rbuf[: resp.length])
                sent += resp.length
                if len(rbuf) > resp.length:
                    reusable = False
            else:
                await conn.send_down(out)
                scanner = ChunkedScanner(status=502) if framing == CHUNKED else None
                mover = BodyMover(framing, resp.length, scanner=scanner)
                conn.enter(BODY, conn.options.body_timeout)
                extra = await mover.run(lease.conn, conn.down, rbuf, conn.touch)
                sent += mover.moved
                if extra:
                    reusable = False
        except SinkClosed as exc:
            raise ClientGone("client went away during the response") from exc
        except (SourceClosed, HttpError) as exc:
            # The upstream broke mid-body: the client's copy is cut short, and so is its connection.
            state.must_close(str(exc))
            metrics = route.cluster.metrics
            metrics.add(metrics.upstream_failures, (route.cluster.name, "body_cut"))
            route.stats.observe(0, time.perf_counter() - self.started, head.size, sent)
            return None, False, False
        route.stats.observe(
            resp.status, time.perf_counter() - self.started, head.size + head.length, sent
        )
        if conn.observer.active or conn.span is not None:
            conn.publish(head, resp.status, self.started, lease)
        return rest, resp.status < 500, reusable

    async def _stream(self, lease: Lease, mover: BodyMover, pending: bytes) -> bytes | None:
        """A request whose body is still arriving: pump it while waiting for the response."""
        conn, head, route = self.conn, self.head, self.route
        cluster = lease.cluster  # the split may have chosen another backend than route.cluster
        attempts = self.attempts

        def response_limit() -> float:
            # A streamed request is not retried, but its route's timeout still bounds it (at
            # the sweeper's 100 ms granularity).
            limit = cluster.timeouts.response
            if attempts is not None and attempts.rule.timeout.total is not None:
                limit = max(0.001, min(limit, attempts.deadline - trio.current_time()))
            return limit

        out = _Streamed()
        reader = trio.CancelScope()  # cancelled if the pump fails on the client's side
        conn.enter(BODY, conn.options.body_timeout)

        async def pump() -> None:
            try:
                out.extra = await mover.run(conn.down, lease.conn, pending, conn.touch)
                conn.waiting = (head, route, lease, self.started)
                conn.enter(RESPONSE, response_limit())
            except SourceClosed as exc:
                out.error = ClientGone(str(exc))
                reader.cancel()
            except HttpError as exc:  # bad chunked framing from the client
                out.error = exc
                reader.cancel()
            except SinkClosed:
                pass  # the upstream stopped reading; what it answers tells the rest

        async with trio.open_nursery() as nursery:
            nursery.start_soon(pump)
            with reader:
                try:
                    resp, rbuf = await self._response_head(lease)
                except (StreamClosed, HttpError, ClientGone) as exc:
                    out.error = out.error or exc
                    nursery.cancel_scope.cancel()
            if out.error is None and not reader.cancelled_caught:
                conn.waiting = None
                try:
                    out.result = await self._respond(
                        lease, resp, rbuf, b"", request_complete=mover.done
                    )
                except ClientGone as exc:
                    out.gone = exc
                except HttpError as exc:
                    out.error = exc
            nursery.cancel_scope.cancel()
        conn.waiting = None
        if out.gone is not None:
            lease.abandon()
            raise out.gone
        if out.result is not None:
            result, ok, reusable = out.result
            if not mover.done:
                conn.state.must_close("the request body was not read to its end")
                lease.done(ok=ok, reusable=False)
                return None
            lease.done(ok=ok, reusable=reusable, transport_failure=not ok and result is None)
            return None if result is None else out.extra
        error = out.error
        if isinstance(error, ClientGone):
            lease.abandon()
            raise error
        if isinstance(error, HttpError) and error.status < 500:
            lease.abandon()
            conn.count_refusal(error.label)
            await self._fail(error.status, error.reason, close=True)
            return None
        lease.done(ok=False, reusable=False, transport_failure=True)
        cluster.metrics.add(cluster.metrics.upstream_failures, (cluster.name, "no_response"))
        detail = (
            error.reason if isinstance(error, HttpError) else f"closed the connection ({error})"
        )
        await self._fail(
            502, f"upstream {cluster.name!r} endpoint {lease.endpoint.key}: {detail}", close=True
        )
        return None

    async def _tunnel(self, buf: bytes) -> None:
        """CONNECT through the forward proxy: an opaque mTLS tunnel to the upstream."""
        conn, head, route = self.conn, self.head, self.route
        try:
            lease = await route.cluster.acquire([], opaque=True)
        except UpstreamError as exc:
            await self._fail(exc.status, str(exc), close=True)
            return
        try:
            await conn.send_down(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            route.stats.observe(200, time.perf_counter() - self.started, head.size, 0)
            conn.state.upgraded()
            conn.enter(TUNNEL, float("inf"))
            if conn.observer.active or conn.span is not None:
                conn.publish(head, 200, self.started, lease)
            moved = await splice(
                conn.down, lease.conn, a_first=buf, idle_timeout=conn.options.tunnel_idle_timeout
            )
            if moved.timed_out:
                conn.count_timeout("tunnel_idle")
            lease.done(ok=True, reusable=False)
        except BaseException:
            lease.abandon()
            raise
