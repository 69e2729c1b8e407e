"""A mirrored copy of an HTTP/2 (gRPC) request: the HTTP/2 side of `_mirror_copy`.

The copy is the request as sent to the real backend (its headers, its held body, its
trailers) on a stream of its own to the mirror's cluster, started once the original went out,
in the background and bounded by `COPY_TIMEOUT`. Its response head is read (so the mirror
really served it), then the stream is reset; every outcome is counted in
`weft_proxy_mirrored_requests_total{upstream,result}` as for HTTP/1.1. Only requests held
whole are copied (`_h2_exchange`); an endpoint whose sidecar speaks only HTTP/1.1 gets no copy
(`result="error"`): the original's path to such a sidecar (`_h2_downgrade`) is the exception.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import h2.events
import trio

from ._errors import ProxyError
from ._h2_pool import H2Lease
from ._h2_session import H2Closed, Headers
from ._mirror import COPY_TIMEOUT
from ._mirror_copy import copies

if TYPE_CHECKING:
    from ._cluster import Cluster
    from ._metrics import Metrics


async def send_h2_copy(
    cluster: Cluster,
    headers: Headers,
    body: list[bytes],
    trailers: Headers | None,
    metrics: Metrics,
) -> None:
    with copies() as outcome:
        try:
            with trio.move_on_after(COPY_TIMEOUT) as scope:
                lease = await cluster.acquire_h2([])
                if not isinstance(lease, H2Lease):
                    lease.abandon()  # an HTTP/1.1-only sidecar: no copy
                    return
                outcome.result = await _exchange(lease, headers, body, trailers)
            if scope.cancelled_caught:
                outcome.result = "timeout"
        except (ProxyError, H2Closed):
            outcome.result = "error"
        finally:
            metrics.add(metrics.mirrors, (cluster.name, outcome.result))


async def _exchange(
    lease: H2Lease, headers: Headers, body: list[bytes], trailers: Headers | None
) -> str:
    up = lease.session
    uid = 0
    try:
        uid, inbox = up.open_stream()
        only_head = not body and not trailers
        await up.send_headers(uid, headers, end=only_head, flush=only_head)
        if not only_head:
            for data in body:
                await up.send_data(uid, data, flush=False)
            await up.end(uid, trailers, flush=False)
            await up.flush()
        event = await inbox.get()
        while isinstance(event, h2.events.InformationalResponseReceived):
            event = await inbox.get()
        if not isinstance(event, h2.events.ResponseReceived):
            lease.done(ok=False, transport_failure=True)
            return "error"
        status = int(dict(event.headers).get(b":status", b"0"))
        lease.done(ok=status < 500)
        return f"{status // 100}xx"
    except H2Closed:
        lease.done(ok=False, transport_failure=True)
        return "error"
    except BaseException:
        lease.done(ok=False)
        raise
    finally:
        if uid and uid in up.inboxes:
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await up.reset(uid)
