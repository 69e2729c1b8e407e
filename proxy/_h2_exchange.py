"""One HTTP/2 request stream: route table → balance (per stream) → forward, with retries.

The request body is taken as it is: what already arrived with the head (a unary gRPC call's
whole message, usually) is held, so the request can be sent again if it ends within
`_retry.MAX_REPLAY_BYTES`; a body still streaming is pumped to the upstream as it comes, and
each DATA frame's credit is given back to the client only once it was written to the
upstream (`H2Session.ack`). The response flows the same way back.

Tried again on another endpoint, when the request is held whole and attempts are left
(`_retry.MAX_ATTEMPTS`): a stream the upstream refused (REFUSED_STREAM) or left unprocessed
under GOAWAY (nothing was processed: always safe); a gRPC answer of UNAVAILABLE with no
message, paid from the upstream's retry budget (`_retry_budget`); and the route's own retry
policy on HTTP statuses, gRPC codes and per-try timeouts (`_attempts`). Deadlines: the route's
total timeout, min'd with a gRPC caller's `grpc-timeout`, bounds the whole call; the route's
per-try timeout and the upstream's `response_ms` bound the wait for each response head. A
route's fault is injected before anything is sent, its mirror gets a copy (`_h2_mirror`), its
response header changes are made to the answer. When the proxy fails a gRPC call itself, the
caller gets a Trailers-Only answer (HTTP 200, grpc-status, grpc-message) it understands.

The attempt itself is `_h2_relay.via_h2`; an endpoint whose sidecar did not agree to h2 (an
older proxy) is sent the request as HTTP/1.1 (`_h2_downgrade.via_http1`).
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import h2.errors
import h2.events
import h2.exceptions
import trio

from . import _fault, _grpc, _retry
from ._attempts import Attempts, rng
from ._errors import StreamClosed, UpstreamError
from ._h1 import NO_BODY, Head
from ._h2_downgrade import via_http1
from ._h2_mirror import send_h2_copy
from ._h2_pool import H2Lease
from ._h2_relay import GRPC_STATUS, PER_TRY_TIMEOUT, RETRY, via_h2
from ._h2_session import H2Closed, H2Session, Headers, Inbox
from ._header_mods import apply_to_pairs
from ._http_exchange import _ids
from ._http_plan import Route
from ._mirror import should_mirror
from ._mirror_copy import in_flight
from ._route_match import RequestView

if TYPE_CHECKING:
    from ._cluster import Cluster, Lease
    from ._h2_forward import H2Connection

_REQUEST_ID = b"x-request-id"
_NOT_FORWARDED = frozenset({b"host"})  # :authority says it in HTTP/2


class StreamExchange:
    def __init__(
        self, conn: H2Connection, stream_id: int, head: Head, grpc: bool, started: float
    ) -> None:
        self.conn = conn
        self.down: H2Session = conn.session
        self.stream_id = stream_id
        self.head = head
        self.grpc = grpc
        self.started = started
        self.inbox: Inbox = conn.session.inbox(stream_id)
        self.body: list[tuple[bytes, int]] = []  # held for a replay: (data, flow length)
        self.held_bytes = 0
        self.complete = head.framing == NO_BODY
        self.trailers: Headers | None = None
        self.acked = False
        self.head_sent = False
        self.down_ended = False
        self.status = 0
        self.grpc_status: int | None = None
        self.bytes_in = 0
        self.bytes_out = 0
        self.attempt = 0
        self.attempts: Attempts | None = None
        self.deadline = math.inf
        self.rule: Any = None
        self.route: Route

    # -- the route layer ------------------------------------------------------------------

    async def run(self, route: Route) -> None:
        conn, head = self.conn, self.head
        if route.table is not None:
            rule = route.table.find(RequestView(head, route.target))
            if rule is None:
                stats = route.stats_for("")
                stats.requests += 1
                method = head.method.decode("latin-1")
                await self._fail(
                    404,
                    f"no route of upstream {route.peer!r} takes {method} {head.target[:200]!r}",
                    stats=stats,
                    error="no_route",
                    peer=route.peer,
                )
                return
            placed = route.placed.get(rule.name)
            if placed is None:
                mods = rule.request_headers
                placed = route.placed[rule.name] = replace(
                    route,
                    stats=route.stats_for(rule.name),
                    add=[*route.add, *mods.added] if mods.add or mods.set else route.add,
                    drop=route.drop | mods.dropped if not mods.empty else route.drop,
                )
            route = placed
            self.rule = rule
        self.route = route
        route.stats.requests += 1
        if self.rule is not None and self.rule.fault is not None and await self._inject():
            return
        await self._prefetch()
        total = None
        if self.rule is not None and self.rule.timeout.total is not None:
            total = self.rule.timeout.total
        if self.grpc:
            wanted = _grpc.timeout_seconds(head.get(b"grpc-timeout"))
            if wanted is not None:
                total = wanted if total is None else min(total, wanted)
        now = trio.current_time()
        if total is not None:
            self.deadline = now + total
        if self.rule is not None:
            assert route.metrics is not None
            self.attempts = Attempts(
                self.rule,
                route.peer,
                route.clusters,
                route.budget,
                route.metrics,
                started=now,
                idempotent=head.idempotent or self.grpc,
                body_bytes=self.held_bytes if self.replayable else None,
            )
        else:
            budget = conn.budget(route.peer)
            if budget is not None:
                budget.deposit(now)
        with trio.move_on_at(self.deadline) as scope:
            await self._attempts()
        if scope.cancelled_caught:
            await self._timed_out(total or 0.0)

    async def _inject(self) -> bool:
        """The route's fault, when drawn: its delay first, then its abort, answered here (a
        gRPC caller gets the status's gRPC code) and never forwarded nor retried. True when
        the request was answered."""
        rule, route = self.rule, self.route
        decision = _fault.decide(rule.fault, rng)
        metrics = route.metrics
        assert metrics is not None
        if decision.delay:
            metrics.add(metrics.faults, (route.peer, rule.name, "delay"))
            await trio.sleep(decision.delay)
        if decision.abort:
            metrics.add(metrics.faults, (route.peer, rule.name, "abort"))
            await self._fail(
                decision.abort,
                f"fault injected by route {rule.name!r} of upstream {route.peer!r}",
                error="fault",
                grpc_code=decision.grpc,
            )
            return True
        return False

    def _mirror(self, headers: Headers) -> None:
        """Start a fire-and-forget copy (`_h2_mirror`) if the route mirrors this request and
        it is held whole."""
        rule, route = self.rule, self.route
        metrics = route.metrics
        if route.background is None or metrics is None or not (self.complete and self.replayable):
            return
        why = should_mirror(rule.mirror, rng, in_flight())
        cluster = route.clusters.get(rule.mirror.cluster_key)
        if why or cluster is None:
            if why == "overloaded":
                metrics.add(metrics.mirrors, (rule.mirror.cluster_key, "skipped_overloaded"))
            return
        body = [data for data, _ in self.body]
        route.background(send_h2_copy, cluster, list(headers), body, self.trailers, metrics)

    def response_headers(self, headers: Headers) -> Headers:
        """The response head with the route's response header changes made."""
        rule = self.rule
        if rule is None or rule.response_headers.empty:
            return headers
        return apply_to_pairs(headers, rule.response_headers)

    @property
    def replayable(self) -> bool:
        return self.complete and self.held_bytes <= _retry.MAX_REPLAY_BYTES

    async def _prefetch(self) -> None:
        """Take what of the body already arrived, without waiting for more."""
        inbox = self.inbox
        while not self.complete and inbox.ready() and self.held_bytes <= _retry.MAX_REPLAY_BYTES:
            event = await inbox.get()
            if isinstance(event, h2.events.DataReceived):
                self.body.append((event.data, event.flow_controlled_length))
                self.held_bytes += len(event.data)
                self.bytes_in += len(event.data)
            elif isinstance(event, h2.events.TrailersReceived):
                self.trailers = list(event.headers)
            elif isinstance(event, h2.events.StreamEnded):
                self.complete = True

    # -- balance and retry ----------------------------------------------------------------

    async def _attempts(self) -> None:
        route = self.route
        tried: list[Any] = []
        while True:
            self.attempt += 1
            cluster: Cluster | None = route.cluster
            if self.attempts is not None:
                cluster = self.attempts.cluster()
                if cluster is None:
                    await self._fail(503, "the route's backend has no cluster")
                    return
            assert cluster is not None
            try:
                if cluster.h2_upstream:
                    lease: H2Lease | Lease = await cluster.acquire_h2(tried)
                else:
                    lease = await cluster.acquire(tried)
            except (UpstreamError, H2Closed) as exc:
                status = exc.status if isinstance(exc, UpstreamError) else 502
                await self._fail(status, str(exc))
                return
            if isinstance(lease, H2Lease):
                outcome = await via_h2(self, lease)
            else:
                outcome = await via_http1(self, lease)
            if outcome != RETRY:
                return
            tried = [] if self.attempts is not None else tried

    def may_retry(self, kind: str, status: int = 0, grpc_status: int = 0) -> bool:
        """May this request go out again after `kind` of failure? Counts the retry if so."""
        route = self.route
        metrics = route.cluster.metrics
        if not self.replayable or self.attempt >= _retry.MAX_ATTEMPTS or self.down_ended:
            return False
        if trio.current_time() >= self.deadline:
            return False
        name = self.rule.name if self.rule is not None else "default"
        if kind in (_retry.REFUSED, _retry.GOAWAY):
            metrics.add(metrics.retries, (route.peer, name, kind))
            return True
        if kind == PER_TRY_TIMEOUT:
            return self.attempts is not None and self.attempts.retry(timed_out=True)
        if kind == GRPC_STATUS:
            return self.attempts is not None and self.attempts.retry(grpc_status=grpc_status)
        if kind == _retry.UNAVAILABLE:
            budget = route.budget or self.conn.budget(route.peer)
            if budget is not None and not budget.withdraw(trio.current_time()):
                metrics.add(metrics.budget_exhausted, (route.peer, name))
                return False
            metrics.add(metrics.retries, (route.peer, name, kind))
            return True
        return self.attempts is not None and self.attempts.retry(status=status)

    # -- forwarding over HTTP/2 -----------------------------------------------------------

    def request_headers(self) -> Headers:
        head, route = self.head, self.route
        out: Headers = [
            (b":method", head.method),
            (b":scheme", b"http"),
            (b":path", route.target or head.target),
            (b":authority", head.host),
        ]
        drop = route.drop
        for name, _, value in head.headers:
            if name not in drop and name not in _NOT_FORWARDED:
                out.append((name, value))
        out.extend(route.add)
        if head.request_id is None:
            head.request_id = b"%024x" % _ids.getrandbits(96)
            out.append((_REQUEST_ID, head.request_id))
        return out

    # -- outcomes -------------------------------------------------------------------------

    def observe(self, status: int) -> None:
        route = self.route
        elapsed = time.perf_counter() - self.started
        route.stats.observe(status, elapsed, self.bytes_in, self.bytes_out)
        if self.grpc:
            code = str(self.grpc_status) if self.grpc_status is not None else "none"
            self.conn.count_grpc(route.peer, self.head, code)
        conn = self.conn
        if conn.observer.active:
            head = self.head
            conn.observer.publish(
                {
                    "ts": time.time(),
                    "direction": conn.direction,
                    "protocol": "h2",
                    "method": head.method.decode("latin-1"),
                    "authority": head.host.decode("latin-1"),
                    "path": head.target.decode("latin-1")[:512],
                    "status": status,
                    "grpc_status": self.grpc_status,
                    "latency_ms": round(elapsed * 1000, 3),
                    "upstream": route.cluster.name,
                    "request_id": (head.request_id or b"").decode("latin-1"),
                    "route": self.rule.name if self.rule is not None else None,
                    "attempt": self.attempt,
                }
            )

    async def _fail(
        self,
        status: int,
        reason: str,
        *,
        stats: Any = None,
        error: str = "",
        peer: str = "",
        grpc_code: int = 0,
    ) -> None:
        """Answer the caller here; a gRPC caller gets `grpc_code`, or the status's gRPC code."""
        if self.head_sent:
            await self.down.reset(self.stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
            return
        route = getattr(self, "route", None)
        stats = stats or (route.stats if route is not None else None)
        self.head_sent = True
        if self.grpc:
            self.grpc_status = grpc_code or _grpc.from_http(status)
        await self.conn.reply_error(
            self.stream_id,
            status,
            reason,
            stats,
            self.grpc,
            self.started,
            self.head,
            error=error,
            peer=peer or (route.peer if route is not None else ""),
            grpc_code=grpc_code,
        )

    async def _timed_out(self, total: float) -> None:
        what = f"the call's deadline ({total:g}s: route timeout or grpc-timeout) passed"
        metrics = self.route.cluster.metrics
        metrics.add(metrics.upstream_failures, (self.route.cluster.name, "timeout"))
        if not self.head_sent:
            await self._fail(504, what, error="timeout")
            return
        if self.down_ended:
            return
        try:
            if self.grpc:
                self.grpc_status = _grpc.DEADLINE_EXCEEDED
                await self.down.end(
                    self.stream_id,
                    [(b"grpc-status", b"4"), (b"grpc-message", b"weft-proxy: deadline exceeded")],
                )
            else:
                await self.down.reset(self.stream_id, h2.errors.ErrorCodes.CANCEL)
        except (H2Closed, StreamClosed, h2.exceptions.ProtocolError):
            pass
        self.observe(self.status)
