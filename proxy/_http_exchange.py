"""One HTTP/1.1 exchange: route the request, send it upstream, bring the response back.

`Exchange` runs the route layer (`_place`: the route that takes the request, its header changes
and faults), gets the request ready to send (a small body still on its way is waited for, so it
goes out with its head in one write and can be replayed) and drives the attempts: split,
balance, per-try and total timeouts, retries on another endpoint following `_retry`, mirrored
copies. What happens on a leased connection once the request's head is on it (the response,
a request body that streams, upgrade and CONNECT tunnels) is left to its base class,
`_http_respond.Responder`.
Errors become 4xx/5xx answers while no response has started, and cut the connection after.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import replace
from typing import TYPE_CHECKING

import trio

from . import _fault, _retry
from ._attempts import Attempts, rng
from ._balance import Endpoint
from ._errors import HttpError, StreamClosed, TlsRefused, UpstreamError
from ._framing import ChunkedScanner
from ._h1 import CHUNKED, LENGTH, NO_BODY, Head, encode_request
from ._http_body import BodyMover
from ._http_plan import BODY, FAULT, RESPONSE, Reject, Route
from ._http_respond import JOIN_LIMIT, Responder
from ._mirror import should_mirror
from ._mirror_copy import in_flight, send_copy
from ._route_match import RequestView
from ._route_table import RouteRule
from ._timeout import PER_TRY

if TYPE_CHECKING:
    from ._http_forward import HttpConnection

# Request ids need to be unique, not secret: a PRNG seeded from the OS, not a syscall each.
_ids = random.Random(os.urandom(16))


class Exchange(Responder):
    __slots__ = ("attempts", "conn", "head", "route", "rule", "started")  # typed in Responder

    def __init__(self, conn: HttpConnection, head: Head) -> None:
        self.conn = conn
        self.head = head
        self.started = time.perf_counter()
        self.rule: RouteRule | None = None
        self.attempts: Attempts | None = None
        conn.tap_route, conn.tap_attempt = "", 0

    async def _place(self, route: Route) -> Route | None:
        """The route layer: the first route that takes the request, its header changes and
        faults. None when the request was answered here (404 no_route, an injected abort)."""
        conn, head = self.conn, self.head
        assert route.table is not None
        rule = route.table.find(RequestView(head, route.target))
        close = head.framing != NO_BODY  # an unread body leaves the stream out of step
        if rule is None:
            self.route = replace(route, stats=route.stats_for(""))
            self.route.stats.requests += 1
            method = head.method.decode("latin-1")
            await self._fail(
                404,
                f"no route of upstream {route.peer!r} takes {method} {head.target[:200]!r}",
                close=close,
                error="no_route",
            )
            return None
        self.rule = rule
        conn.tap_route = rule.name
        placed = route.placed.get(rule.name)
        if placed is None:  # once per route and connection (and snapshot)
            mods = rule.request_headers
            placed = route.placed[rule.name] = replace(
                route,
                stats=route.stats_for(rule.name),
                add=[*route.add, *mods.added] if mods.add or mods.set else route.add,
                drop=route.drop | mods.dropped if not mods.empty else route.drop,
            )
        if rule.rewrite is not None:  # per request: the target is the request's
            placed = replace(placed, target=rule.rewrite.apply(route.target or head.target))
        self.route = placed
        placed.stats.requests += 1
        if rule.fault is not None:
            decision = _fault.decide(rule.fault, rng)
            metrics = route.metrics
            assert metrics is not None
            if decision.delay:
                metrics.add(metrics.faults, (route.peer, rule.name, "delay"))
                conn.enter(FAULT, decision.delay + 1)
                await trio.sleep(decision.delay)
            if decision.abort:
                metrics.add(metrics.faults, (route.peer, rule.name, "abort"))
                await self._fail(
                    decision.abort,
                    f"fault injected by route {rule.name!r} of upstream {route.peer!r}",
                    close=close,
                    error="fault",
                )
                return None
        return placed

    async def run(self, buf: bytes) -> bytes | None:
        """Forward the request; return bytes read past it, or None to close the connection."""
        conn, head = self.conn, self.head
        try:
            route = conn.router(head)
        except HttpError as exc:
            await conn.refuse(exc, head=head, started=self.started)
            return None
        if isinstance(route, Reject):
            if route.stats is not None:
                route.stats.requests += 1
            close = head.framing != NO_BODY  # its body was not read: the stream is out of step
            await conn.reply_error(
                route.status,
                route.reason,
                route.stats,
                close=close,
                head=head,
                started=self.started,
                headers=route.headers,
            )
            return None if close else buf
        self.route = route
        if route.table is not None:
            placed = await self._place(route)
            if placed is None:
                return None if head.framing != NO_BODY else buf
            route = placed
        else:
            route.stats.requests += 1
        if route.connect:
            await self._tunnel(buf)
            return None
        rule = self.rule

        # How much of the body is here already, checked?
        framing = head.framing
        scanner = None
        idempotent = head.idempotent or head.get(b"idempotency-key") is not None
        # A body a route may replay (a retry) must be held whole: up to 64 KiB are waited for.
        limit = (
            _retry.MAX_REPLAY_BYTES
            if rule is not None
            and (rule.retry is not None or rule.mirror is not None)
            and (idempotent or (rule.retry is not None and rule.retry.non_idempotent))
            else JOIN_LIMIT
        )
        if framing == NO_BODY:
            body_end, complete = 0, True
        elif framing == LENGTH:
            if len(buf) < head.length <= limit and not head.expect_continue:
                # A small body that is still on its way (many clients write the head and the
                # body separately): wait for it, so the request goes out whole, in one write,
                # and can be retried elsewhere if need be.
                whole = await self._read_rest(buf, head.length)
                if whole is None:
                    return None
                buf = whole
            complete = len(buf) >= head.length
            body_end = head.length if complete else len(buf)
        else:
            scanner = ChunkedScanner()
            try:
                body_end = scanner.scan(buf)
            except HttpError as exc:
                conn.count_refusal(exc.label)
                await self._fail(exc.status, exc.reason, close=True)
                return None
            complete = scanner.done
        add = route.add
        if head.request_id is None:
            head.request_id = b"%024x" % _ids.getrandbits(96)
            add = [*add, (b"x-request-id", head.request_id)]
        out = encode_request(head, target=route.target, add=add, drop=route.drop)
        if not body_end:
            first = [out]
        elif body_end <= JOIN_LIMIT:
            first = [out + buf[:body_end]]
        else:
            first = [out, buf[:body_end]]
        rest = buf[body_end:]
        mover = None
        pending = b""
        if not complete:
            mover = BodyMover(framing, head.length - body_end, scanner=scanner)
            if framing == CHUNKED:  # the scanner holds back an incomplete framing unit
                pending, rest = rest, b""
        if rule is not None:
            metrics = route.metrics
            assert metrics is not None
            self.attempts = Attempts(
                rule,
                route.peer,
                route.clusters,
                route.budget,
                metrics,
                started=trio.current_time() - (time.perf_counter() - self.started),
                idempotent=idempotent,
                body_bytes=body_end if complete else None,
            )
        return await self._dispatch(first, rest, mover, pending)

    def _mirror(self, first: list[bytes]) -> None:
        """Start a fire-and-forget copy if the route mirrors this request."""
        rule, route = self.rule, self.route
        if rule is None or rule.mirror is None or route.background is None:
            return
        metrics = route.metrics
        assert metrics is not None
        why = should_mirror(rule.mirror, rng, in_flight())
        cluster = route.clusters.get(rule.mirror.cluster_key)
        if why or cluster is None:
            if why == "overloaded":
                metrics.add(metrics.mirrors, (rule.mirror.cluster_key, "skipped_overloaded"))
            return
        route.background(send_copy, cluster, first, self.head.method, metrics)

    async def _read_rest(self, buf: bytes, length: int) -> bytes | None:
        """Read from the client until `buf` holds `length` bytes; None if it went away."""
        conn = self.conn
        conn.enter(BODY, conn.options.body_timeout)
        while len(buf) < length:
            try:
                data = await conn.down.recv_later(length - len(buf))
            except StreamClosed:
                data = b""
            if not data:
                conn.state.eof()
                return None
            buf += data
        return buf

    async def _dispatch(
        self, first: list[bytes], rest: bytes, mover: BodyMover | None, pending: bytes
    ) -> bytes | None:
        conn, head, route = self.conn, self.head, self.route
        attempts = self.attempts
        cluster = route.cluster
        tried: list[Endpoint] = []
        attempt = 0
        first_error: UpstreamError | None = None
        while True:
            attempt += 1
            if attempts is not None:
                # split: this attempt's backend (a subset, or another service)
                picked = attempts.cluster()
                if picked is None:
                    await self._fail(503, "the route's backend has no cluster", close=True)
                    return None
                cluster = picked
                conn.tap_attempt = attempts.made
            try:
                lease = await cluster.acquire(tried)
            except UpstreamError as exc:
                error = first_error or exc
                await self._fail(error.status, str(error), close=mover is not None)
                return None if mover is not None else rest
            try:
                for part in first:
                    await lease.conn.send_all(part)
                if attempt == 1 and self.rule is not None and mover is None:
                    self._mirror(first)
                if mover is not None:
                    return await self._stream(lease, mover, pending)
                conn.waiting = (head, route, lease, self.started)
                conn.enter(RESPONSE, cluster.timeouts.response)
                if attempts is not None and attempts.rule.timeout.active:
                    deadline = attempts.attempt_deadline(cluster.timeouts.response)
                    with trio.move_on_at(deadline.at) as scope:
                        resp, rbuf = await self._response_head(lease)
                    if scope.cancelled_caught:
                        # timeout: this attempt's (retried if the policy says so) or the total
                        conn.waiting = None
                        lease.done(ok=False, reusable=False)
                        metrics = cluster.metrics
                        metrics.add(metrics.upstream_failures, (cluster.name, "timeout"))
                        per_try = deadline.kind == PER_TRY
                        if per_try and attempts.retry(timed_out=True):
                            tried = []
                            continue
                        limit = self.rule.timeout.total if self.rule else None
                        what = (
                            f"route {attempts.rule.name!r} timed out after {limit:g}s"
                            if deadline.kind == "total" and limit is not None
                            else f"upstream {cluster.name!r} endpoint {lease.endpoint.key} "
                            f"sent no response in time ({deadline.kind} limit)"
                        )
                        await self._fail(504, what, close=False, error="timeout")
                        return rest
                else:
                    resp, rbuf = await self._response_head(lease)
                conn.waiting = None
                if (
                    attempts is not None
                    and resp.status >= 400
                    and attempts.retry(status=resp.status)
                ):
                    # a retryable answer: dropped with its connection, and tried again
                    lease.done(ok=False, reusable=False)
                    tried = []
                    continue
                result, ok, reusable = await self._respond(lease, resp, rbuf, rest)
                lease.done(ok=ok, reusable=reusable, transport_failure=not ok and result is None)
                return result
            except (StreamClosed, TlsRefused) as exc:
                # Nothing of a response came back (`_response_head` makes a partial one a 502).
                conn.waiting = None
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
                # (idempotent as `run` decided; only a transport failure needs it here)
                idempotent = head.idempotent or head.get(b"idempotency-key") is not None
                if mover is None and _retry.may_retry(
                    kind, attempt=attempt, idempotent=idempotent, replayable=True
                ):
                    continue
                await self._fail(502, str(error), close=mover is not None)
                return rest if mover is None else None
            except HttpError as exc:  # the upstream's response broke HTTP/1.1
                conn.waiting = None
                lease.done(ok=False, reusable=False)
                cluster.metrics.add(
                    cluster.metrics.upstream_failures, (cluster.name, "bad_response")
                )
                await self._fail(
                    502,
                    f"upstream {cluster.name!r} endpoint {lease.endpoint.key}: {exc.reason}",
                    close=True,
                )
                return None
            except BaseException:
                if conn.expired == RESPONSE:
                    lease.done(ok=False, reusable=False)  # a timeout counts against the endpoint
                else:
                    lease.abandon()
                raise
