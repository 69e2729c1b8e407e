"""An HTTP/2 request stream sent on as HTTP/1.1: to a sidecar that did not agree to `h2` in
ALPN (an older proxy), so that mixed versions keep working during a rollout.

h11 frames this path (it is the exception, not the hot path): the request goes out with its
Content-Length when the whole body is held, else chunked, its trailers as chunked trailers;
the response comes back as HEADERS, DATA and, if the upstream sent any, trailers. A gRPC call
needs trailers end to end, which an HTTP/1.1 hop may drop: gRPC services should run h2-capable
sidecars on both sides (docs/proxy.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import h2.events
import h11

from ._errors import StreamClosed
from ._hop_by_hop import HOP_BY_HOP

if TYPE_CHECKING:
    from ._cluster import Lease
    from ._h2_exchange import StreamExchange

_NOT_ON_HTTP1 = frozenset({b"te", b"content-length", b"transfer-encoding"})


async def via_http1(exchange: StreamExchange, lease: Lease) -> str | None:
    down, sid = exchange.down, exchange.stream_id
    head = exchange.head
    cluster = lease.cluster
    conn = lease.conn
    h1 = h11.Connection(h11.CLIENT)
    headers = [(b"host", head.host)]
    for name, value in exchange.request_headers():
        if name[:1] != b":" and name not in _NOT_ON_HTTP1:
            headers.append((name, value))
    held = b"".join(data for data, _ in exchange.body)
    if exchange.complete and not exchange.trailers:
        headers.append((b"content-length", str(len(held)).encode()))
    else:
        headers.append((b"transfer-encoding", b"chunked"))
    target = exchange.route.target or head.target
    try:
        out = h1.send(h11.Request(method=head.method, target=target, headers=headers))
        if held:
            out += h1.send(h11.Data(data=held))
        await conn.send_all(out)
        if not exchange.acked:
            exchange.acked = True
            await down.ack(sid, sum(n for _, n in exchange.body))
        while not exchange.complete:
            event = await exchange.inbox.get()
            if isinstance(event, h2.events.DataReceived):
                await conn.send_all(h1.send(h11.Data(data=event.data)))
                await down.ack(sid, event.flow_controlled_length)
            elif isinstance(event, h2.events.TrailersReceived):
                exchange.trailers = list(event.headers)
            elif isinstance(event, h2.events.StreamEnded):
                exchange.complete = True
        end = h11.EndOfMessage(headers=exchange.trailers or [])
        await conn.send_all(h1.send(end))
        status = 0
        while True:
            event = h1.next_event()
            if event is h11.NEED_DATA:
                data = await conn.recv_later()
                h1.receive_data(data)
                continue
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
                out_headers = [(b":status", str(status).encode())]
                out_headers += [
                    (name, value)
                    for name, value in event.headers
                    if name not in HOP_BY_HOP and name not in (b"transfer-encoding", b"host")
                ]
                await down.send_headers(sid, exchange.response_headers(out_headers))
                exchange.head_sent = True
                exchange.status = status
            elif isinstance(event, h11.Data):
                await down.send_data(sid, bytes(event.data))
                exchange.bytes_out += len(event.data)
            elif isinstance(event, h11.EndOfMessage):
                await down.end(sid, list(event.headers) or None)
                exchange.down_ended = True
                break
            else:  # ConnectionClosed before the end
                raise StreamClosed("the upstream closed the connection mid-response")
    except (StreamClosed, h11.ProtocolError) as exc:
        lease.done(ok=False, reusable=False, transport_failure=not exchange.head_sent)
        cluster.metrics.add(cluster.metrics.upstream_failures, (cluster.name, "no_response"))
        if exchange.head_sent:
            exchange.observe(0)
            await down.reset(sid)
            return None
        await exchange._fail(
            502, f"upstream {cluster.name!r} endpoint {lease.endpoint.key} (HTTP/1.1): {exc}"
        )
        return None
    except BaseException:
        lease.abandon()
        raise
    reusable = h1.our_state is h11.DONE and h1.their_state is h11.DONE and not h1.trailing_data[0]
    lease.done(ok=status < 500, reusable=reusable)
    exchange.observe(status)
    return None
