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
policy on HTTP statuses (`_attempts`). Deadlines: the route's total timeout, min'd with a gRPC
caller's `grpc-timeout`, bounds the whole call; the upstream's `response_ms` bounds the wait
for the response head. When the proxy fails a gRPC call itself, the caller gets a
Trailers-Only answer (HTTP 200, grpc-status, grpc-message) it understands.

An endpoint whose sidecar did not agree to h2 (an older proxy) is sent the request as
HTTP/1.1 (`_h2_downgrade`).
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
from ._h2_session import H2Closed, H2Session, Headers, Inbox
from ._header_mods import apply_to_pairs
from ._http_exchange import _ids
from ._http_plan import Route
from ._mirror import should_mirror
from ._mirror_copy import in_flight
from ._route_match import RequestView
from ._timeout import PER_TRY, RESPONSE, TimeoutPolicy, attempt_deadline

if TYPE_CHECKING:
    from ._cluster import Cluster, Lease
    from ._h2_forward import H2Connection

RETRY = "retry"
_NO_TIMEOUTS = TimeoutPolicy()
_PER_TRY_TIMEOUT = "per_try_timeout"  # a `may_retry` kind: the route's retry policy decides
_GRPC_STATUS = "grpc_status"  # likewise, on the gRPC conditions (`_retry.GRPC_CONDITIONS`)
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
                outcome = await self._via_h2(lease)
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
        if kind == _PER_TRY_TIMEOUT:
            return self.attempts is not None and self.attempts.retry(timed_out=True)
        if kind == _GRPC_STATUS:
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

    async def _via_h2(self, lease: H2Lease) -> str | None:
        up = lease.session
        try:
            uid, uinbox = up.open_stream()
        except (h2.exceptions.ProtocolError, H2Closed):
            lease.done(ok=False, transport_failure=True)
            up.close(H2Closed("no new streams on this connection"))
            if self.may_retry(_retry.GOAWAY):
                return RETRY
            await self._no_answer(lease, "")
            return None
        finished = False
        try:
            only_head = self.complete and not self.body and not self.trailers
            held = sum(len(data) for data, _ in self.body)
            # The request goes out in one write when it is all here and the windows take it
            # (a unary call); otherwise its body is sent beside the wait for the answer, so
            # an upstream that answers without reading (an early error) is heard at once.
            at_once = only_head or (self.complete and held <= up.new_stream_window())
            headers = self.request_headers()
            await up.send_headers(uid, headers, end=only_head, flush=at_once)
            if at_once and not only_head:
                await self._send_held(up, uid)
            if self.attempt == 1 and self.rule is not None and self.rule.mirror is not None:
                self._mirror(headers)
            if not self.acked:
                self.acked = True
                await self.down.ack(self.stream_id, sum(n for _, n in self.body))
            if at_once:
                outcome = await self._relay(lease, uid, uinbox)
            else:
                try:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._pump, up, uid)
                        outcome = await self._relay(lease, uid, uinbox)
                        nursery.cancel_scope.cancel()
                except BaseExceptionGroup as group:
                    raise _single(group) from None
            finished = True
            return outcome
        except H2Closed as exc:
            finished = True
            if self.down.closed is not None or self.stream_id not in self.down.inboxes:
                lease.abandon()  # the caller went away: no verdict on the endpoint
                return None
            lease.done(ok=False, transport_failure=True)
            if self.head_sent:
                await self.down.reset(self.stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
                self.observe(0)
                return None
            if exc.unprocessed:
                kind = _retry.REFUSED if exc.code else _retry.GOAWAY
                if self.may_retry(kind):
                    return RETRY
            await self._no_answer(lease, str(exc))
            return None
        finally:
            if not finished:  # cancelled: the deadline passed (a failure) or the client left
                if trio.current_time() >= self.deadline:
                    lease.done(ok=False)
                else:
                    lease.abandon()
            if uid in up.inboxes:
                with trio.CancelScope(shield=True), trio.move_on_after(1):
                    await up.reset(uid)

    async def _no_answer(self, lease: H2Lease, why: str) -> None:
        cluster = lease.cluster
        cluster.metrics.add(cluster.metrics.upstream_failures, (cluster.name, "no_response"))
        await self._fail(
            502,
            f"upstream {cluster.name!r} endpoint {lease.endpoint.key} did not answer ({why})",
        )

    async def _send_held(self, up: H2Session, uid: int) -> None:
        for data, _ in self.body:
            await up.send_data(uid, data, flush=False)
        if self.complete:
            await up.end(uid, self.trailers, flush=False)
        await up.flush()

    async def _pump(self, up: H2Session, uid: int) -> None:
        """The held body, then the rest as it arrives, credit given back as it is written."""
        try:
            await self._send_held(up, uid)
            if not self.complete:
                await self._pump_body(up, uid)
        except H2Closed:
            pass  # the upstream ended or reset its stream: its answer tells the rest

    def _hold(self, data: bytes) -> None:
        """Keep a copy of a streamed body while it may still be replayed (up to the bound);
        past it the request is no longer replayable and nothing more is kept."""
        if self.held_bytes > _retry.MAX_REPLAY_BYTES:
            return
        self.held_bytes += len(data)
        if self.held_bytes > _retry.MAX_REPLAY_BYTES:
            self.body.clear()
        else:
            self.body.append((data, 0))  # its credit is given back as it is sent on

    async def _pump_body(self, up: H2Session, uid: int) -> None:
        sent_end = False
        while True:
            event = await self.inbox.get()
            if isinstance(event, h2.events.DataReceived):
                await up.send_data(uid, event.data)
                self.bytes_in += len(event.data)
                self._hold(event.data)
                await self.down.ack(self.stream_id, event.flow_controlled_length)
            elif isinstance(event, h2.events.TrailersReceived):
                self.trailers = list(event.headers)
                await up.end(uid, self.trailers)
                sent_end = True
            elif isinstance(event, h2.events.StreamEnded):
                if not sent_end:
                    await up.end(uid)
                self.complete = True
                return

    async def _relay(self, lease: H2Lease, uid: int, uinbox: Inbox) -> str | None:
        cluster, down, sid = lease.cluster, self.down, self.stream_id
        policy = self.rule.timeout if self.rule is not None else _NO_TIMEOUTS
        limit = attempt_deadline(
            policy, self.deadline, trio.current_time(), cluster.timeouts.response
        )
        event: Any = None
        with trio.move_on_at(limit.at):
            event = await uinbox.get()
            while isinstance(event, h2.events.InformationalResponseReceived):
                event = await uinbox.get()
        if event is None:
            lease.done(ok=False)
            cluster.metrics.add(cluster.metrics.upstream_failures, (cluster.name, "timeout"))
            if limit.kind == PER_TRY and self.may_retry(_PER_TRY_TIMEOUT):
                return RETRY  # this attempt's stream is reset on the way out
            if limit.kind == PER_TRY:
                assert policy.per_try is not None
                what = f"within the route's per-try limit of {policy.per_try:g}s"
            elif limit.kind == RESPONSE:
                what = f"within {cluster.timeouts.response:g}s"
            else:
                what = "before the call's deadline"
            await self._fail(
                504,
                f"upstream {cluster.name!r} endpoint {lease.endpoint.key} sent no response {what}",
                error="timeout",
            )
            return None
        headers = self.response_headers(list(event.headers))
        status = int(_get(headers, b":status") or b"0")
        ended = event.stream_ended is not None
        held: list[Any] = []
        if self.grpc:
            self.grpc_status = _grpc.status_of(headers) if ended else None
            if not ended and self.replayable and self.attempt < _retry.MAX_ATTEMPTS:
                # Look one event ahead: an UNAVAILABLE with no message may go elsewhere.
                nxt = await uinbox.get()
                held.append(nxt)
                if isinstance(nxt, h2.events.TrailersReceived):
                    self.grpc_status = _grpc.status_of(list(nxt.headers))
            no_message = not any(isinstance(e, h2.events.DataReceived) for e in held)
            if (
                no_message
                and self.grpc_status
                and self.attempts is not None
                and self.may_retry(_GRPC_STATUS, grpc_status=self.grpc_status)
            ):
                lease.done(ok=False)  # the route retries on this code
                return RETRY
            unavailable = self.grpc_status == _grpc.UNAVAILABLE and no_message
            if unavailable and self.may_retry(_retry.UNAVAILABLE):
                lease.done(ok=False)
                return RETRY
        if status >= 400 and self.attempts is not None and self.may_retry("status", status):
            lease.done(ok=False)
            return RETRY
        # Frames that are already here go out together, in one write each way.
        more = bool(held) or uinbox.ready()
        await down.send_headers(sid, headers, end=ended, flush=ended or not more)
        self.head_sent = True
        self.status = status
        self.down_ended = ended
        queue = iter(held)
        up = lease.session
        while not self.down_ended:
            event = next(queue, None) or await uinbox.get()
            more = uinbox.ready()
            if isinstance(event, h2.events.DataReceived):
                await down.send_data(sid, event.data, flush=not more)
                self.bytes_out += len(event.data)
                await up.ack(uid, event.flow_controlled_length, flush=not more)
            elif isinstance(event, h2.events.TrailersReceived):
                trailers = list(event.headers)
                if self.grpc:
                    self.grpc_status = _grpc.status_of(trailers)
                await down.end(sid, trailers)
                self.down_ended = True
            elif isinstance(event, h2.events.StreamEnded):
                await down.end(sid)
                self.down_ended = True
        await up.flush()  # credit acknowledged without a flush of its own
        failed = status >= 500 or (self.grpc and _grpc.is_failure(self.grpc_status))
        lease.done(ok=not failed)
        self.observe(status)
        if not self.complete:
            # The answer is complete and the client is still sending: tell it to stop.
            await down.reset(sid, h2.errors.ErrorCodes.NO_ERROR)
        return None

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


def _single(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one exception a two-task nursery raised (trio groups them), or the group."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    return leaves[0] if len(leaves) == 1 else group


def _get(headers: Headers, name: bytes) -> bytes | None:
    for n, v in headers:
        if n == name:
            return v
    return None
