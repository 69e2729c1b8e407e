"""Forwarding one HTTP/2 request stream to an upstream over HTTP/2: the request out (in one
write when it is all here, else its body pumped beside the wait for the answer), the answer
back (its head checked for a retry first: a retryable status or gRPC code, a per-try
timeout), credit given back only as data is written on. `_h2_exchange` decides routes,
attempts and outcomes; `_h2_downgrade` is the same step to an HTTP/1.1-only sidecar.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import h2.errors
import h2.events
import h2.exceptions
import trio

from . import _grpc, _retry
from ._h2_pool import H2Lease
from ._h2_session import H2Closed, H2Session, Headers, Inbox
from ._timeout import PER_TRY, RESPONSE, TimeoutPolicy, attempt_deadline

if TYPE_CHECKING:
    from ._h2_exchange import StreamExchange

RETRY = "retry"
_NO_TIMEOUTS = TimeoutPolicy()
# `StreamExchange.may_retry` kinds the route's retry policy decides
PER_TRY_TIMEOUT = "per_try_timeout"
GRPC_STATUS = "grpc_status"


async def via_h2(ex: StreamExchange, lease: H2Lease) -> str | None:
    up = lease.session
    try:
        uid, uinbox = up.open_stream()
    except (h2.exceptions.ProtocolError, H2Closed):
        lease.done(ok=False, transport_failure=True)
        up.close(H2Closed("no new streams on this connection"))
        if ex.may_retry(_retry.GOAWAY):
            return RETRY
        await _no_answer(ex, lease, "")
        return None
    finished = False
    try:
        only_head = ex.complete and not ex.body and not ex.trailers
        held = sum(len(data) for data, _ in ex.body)
        # The request goes out in one write when it is all here and the windows take it
        # (a unary call); otherwise its body is sent beside the wait for the answer, so
        # an upstream that answers without reading (an early error) is heard at once.
        at_once = only_head or (ex.complete and held <= up.new_stream_window())
        headers = ex.request_headers()
        await up.send_headers(uid, headers, end=only_head, flush=at_once)
        if at_once and not only_head:
            await _send_held(ex, up, uid)
        if ex.attempt == 1 and ex.rule is not None and ex.rule.mirror is not None:
            ex._mirror(headers)
        if not ex.acked:
            ex.acked = True
            await ex.down.ack(ex.stream_id, sum(n for _, n in ex.body))
        if at_once:
            outcome = await _relay(ex, lease, uid, uinbox)
        else:
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_pump, ex, up, uid)
                    outcome = await _relay(ex, lease, uid, uinbox)
                    nursery.cancel_scope.cancel()
            except BaseExceptionGroup as group:
                raise _single(group) from None
        finished = True
        return outcome
    except H2Closed as exc:
        finished = True
        if ex.down.closed is not None or ex.stream_id not in ex.down.inboxes:
            lease.abandon()  # the caller went away: no verdict on the endpoint
            return None
        lease.done(ok=False, transport_failure=True)
        if ex.head_sent:
            await ex.down.reset(ex.stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
            ex.observe(0)
            return None
        if exc.unprocessed:
            kind = _retry.REFUSED if exc.code else _retry.GOAWAY
            if ex.may_retry(kind):
                return RETRY
        await _no_answer(ex, lease, str(exc))
        return None
    finally:
        if not finished:  # cancelled: the deadline passed (a failure) or the client left
            if trio.current_time() >= ex.deadline:
                lease.done(ok=False)
            else:
                lease.abandon()
        if uid in up.inboxes:
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await up.reset(uid)


async def _no_answer(ex: StreamExchange, lease: H2Lease, why: str) -> None:
    cluster = lease.cluster
    cluster.metrics.add(cluster.metrics.upstream_failures, (cluster.name, "no_response"))
    await ex._fail(
        502,
        f"upstream {cluster.name!r} endpoint {lease.endpoint.key} did not answer ({why})",
    )


async def _send_held(ex: StreamExchange, up: H2Session, uid: int) -> None:
    for data, _ in ex.body:
        await up.send_data(uid, data, flush=False)
    if ex.complete:
        await up.end(uid, ex.trailers, flush=False)
    await up.flush()


async def _pump(ex: StreamExchange, up: H2Session, uid: int) -> None:
    """The held body, then the rest as it arrives, credit given back as it is written."""
    try:
        await _send_held(ex, up, uid)
        if not ex.complete:
            await _pump_body(ex, up, uid)
    except H2Closed:
        pass  # the upstream ended or reset its stream: its answer tells the rest


def _hold(ex: StreamExchange, data: bytes) -> None:
    """Keep a copy of a streamed body while it may still be replayed (up to the bound);
    past it the request is no longer replayable and nothing more is kept."""
    if ex.held_bytes > _retry.MAX_REPLAY_BYTES:
        return
    ex.held_bytes += len(data)
    if ex.held_bytes > _retry.MAX_REPLAY_BYTES:
        ex.body.clear()
    else:
        ex.body.append((data, 0))  # its credit is given back as it is sent on


async def _pump_body(ex: StreamExchange, up: H2Session, uid: int) -> None:
    sent_end = False
    while True:
        event = await ex.inbox.get()
        if isinstance(event, h2.events.DataReceived):
            await up.send_data(uid, event.data)
            ex.bytes_in += len(event.data)
            _hold(ex, event.data)
            await ex.down.ack(ex.stream_id, event.flow_controlled_length)
        elif isinstance(event, h2.events.TrailersReceived):
            ex.trailers = list(event.headers)
            await up.end(uid, ex.trailers)
            sent_end = True
        elif isinstance(event, h2.events.StreamEnded):
            if not sent_end:
                await up.end(uid)
            ex.complete = True
            return


async def _relay(ex: StreamExchange, lease: H2Lease, uid: int, uinbox: Inbox) -> str | None:
    cluster, down, sid = lease.cluster, ex.down, ex.stream_id
    policy = ex.rule.timeout if ex.rule is not None else _NO_TIMEOUTS
    limit = attempt_deadline(policy, ex.deadline, trio.current_time(), cluster.timeouts.response)
    event: Any = None
    with trio.move_on_at(limit.at):
        event = await uinbox.get()
        while isinstance(event, h2.events.InformationalResponseReceived):
            event = await uinbox.get()
    if event is None:
        lease.done(ok=False)
        cluster.metrics.add(cluster.metrics.upstream_failures, (cluster.name, "timeout"))
        if limit.kind == PER_TRY and ex.may_retry(PER_TRY_TIMEOUT):
            return RETRY  # this attempt's stream is reset on the way out
        if limit.kind == PER_TRY:
            assert policy.per_try is not None
            what = f"within the route's per-try limit of {policy.per_try:g}s"
        elif limit.kind == RESPONSE:
            what = f"within {cluster.timeouts.response:g}s"
        else:
            what = "before the call's deadline"
        await ex._fail(
            504,
            f"upstream {cluster.name!r} endpoint {lease.endpoint.key} sent no response {what}",
            error="timeout",
        )
        return None
    headers = ex.response_headers(list(event.headers))
    status = int(_get(headers, b":status") or b"0")
    ended = event.stream_ended is not None
    held: list[Any] = []
    if ex.grpc:
        ex.grpc_status = _grpc.status_of(headers) if ended else None
        if not ended and ex.replayable and ex.attempt < _retry.MAX_ATTEMPTS:
            # Look one event ahead: an UNAVAILABLE with no message may go elsewhere.
            nxt = await uinbox.get()
            held.append(nxt)
            if isinstance(nxt, h2.events.TrailersReceived):
                ex.grpc_status = _grpc.status_of(list(nxt.headers))
        no_message = not any(isinstance(e, h2.events.DataReceived) for e in held)
        if (
            no_message
            and ex.grpc_status
            and ex.attempts is not None
            and ex.may_retry(GRPC_STATUS, grpc_status=ex.grpc_status)
        ):
            lease.done(ok=False)  # the route retries on this code
            return RETRY
        unavailable = ex.grpc_status == _grpc.UNAVAILABLE and no_message
        if unavailable and ex.may_retry(_retry.UNAVAILABLE):
            lease.done(ok=False)
            return RETRY
    if status >= 400 and ex.attempts is not None and ex.may_retry("status", status):
        lease.done(ok=False)
        return RETRY
    # Frames that are already here go out together, in one write each way.
    more = bool(held) or uinbox.ready()
    await down.send_headers(sid, headers, end=ended, flush=ended or not more)
    ex.head_sent = True
    ex.status = status
    ex.down_ended = ended
    queue = iter(held)
    up = lease.session
    while not ex.down_ended:
        event = next(queue, None) or await uinbox.get()
        more = uinbox.ready()
        if isinstance(event, h2.events.DataReceived):
            await down.send_data(sid, event.data, flush=not more)
            ex.bytes_out += len(event.data)
            await up.ack(uid, event.flow_controlled_length, flush=not more)
        elif isinstance(event, h2.events.TrailersReceived):
            trailers = list(event.headers)
            if ex.grpc:
                ex.grpc_status = _grpc.status_of(trailers)
            await down.end(sid, trailers)
            ex.down_ended = True
        elif isinstance(event, h2.events.StreamEnded):
            await down.end(sid)
            ex.down_ended = True
    await up.flush()  # credit acknowledged without a flush of its own
    failed = status >= 500 or (ex.grpc and _grpc.is_failure(ex.grpc_status))
    lease.done(ok=not failed)
    ex.observe(status)
    if not ex.complete:
        # The answer is complete and the client is still sending: tell it to stop.
        await down.reset(sid, h2.errors.ErrorCodes.NO_ERROR)
    return None


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
