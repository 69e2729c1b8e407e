"""The outbound stacks: the application's plain-text side of the mesh.

- An upstream's own listener (127.0.0.1:<port>): every connection is for that upstream; HTTP
  is balanced per request, opaque TCP per connection.
- The forward-proxy listener (`HTTP_PROXY`, default 127.0.0.1:15001): the request names the
  upstream (`http://billing/...`, `Host: billing`, or `CONNECT billing:443`).

Both: accept → route → balance (`Cluster.acquire`: endpoint, pooled mTLS connection, the
server's SPIFFE ID checked) → forward (`HttpConnection` or `splice`).

An `http2`/`grpc` upstream's own listener also takes h2c: the first bytes decide
(`_detect`), the HTTP/2 connection preface going to `H2Connection` (`_h2_forward`), where
each stream is balanced on its own; anything else is HTTP/1.1 as before. (The forward-proxy
listener is HTTP/1.1 only.)
"""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING, Any

import trio

from ._detect import Protocol, detect
from ._errors import HttpError, UpstreamError
from ._h1 import Head
from ._http_forward import HttpConnection, Reject, Route, Router
from ._route import route_forward
from ._snapshot import H2_PROTOCOLS
from ._splice import Counter, splice
from ._stream import Stream

if TYPE_CHECKING:
    from ._cluster import Cluster
    from ._listener_host import ListenerHost
    from ._metrics import HttpStats
    from ._snapshot import Upstream

log = logging.getLogger("weft.proxy")


async def _serve_http(runtime: ListenerHost, stream: Stream, router, first: bytes = b"") -> None:  # type: ignore[no-untyped-def]
    connection = HttpConnection(
        stream,
        router,
        direction="outbound",
        options=runtime.options.http,
        observer=runtime.tap,
        metrics=runtime.metrics,
    )
    runtime.metrics.opened("outbound", "http")
    runtime.connections.add(connection)
    try:
        if runtime.draining:
            connection.drain()
        await connection.serve(first)
    finally:
        runtime.connections.discard(connection)
        runtime.metrics.closed("outbound", "http")


def _routed(runtime: ListenerHost, upstream: Upstream, cluster: Cluster, stats: HttpStats) -> Route:
    """An HTTP upstream's route, with its route table when it has routes (schema v2)."""
    config = runtime.config
    assert config is not None
    if upstream.table.implicit:
        return Route(cluster=cluster, stats=stats, peer=upstream.name)
    return Route(
        cluster=cluster,
        stats=stats,
        peer=upstream.name,
        table=upstream.table,
        clusters=config.clusters,
        budget=runtime.budgets.get(upstream.name),
        metrics=runtime.metrics,
        background=runtime.background,
    )


async def serve_upstream(runtime: ListenerHost, sock: socket.socket, name: str) -> None:
    stream = Stream(sock)
    try:
        config = runtime.config
        upstream = config.snapshot.upstream(name) if config else None
        if config is None or upstream is None:
            return
        if upstream.protocol == "tcp":
            await _serve_tcp(runtime, stream, name)
            return
        metrics = runtime.metrics
        stats = metrics.http("outbound", name)

        decided: list[Any] = [None, None]  # (config, Route | Reject): once per snapshot

        def route(head: Head) -> Route | Reject:
            if head.method == b"CONNECT":
                raise HttpError(
                    405,
                    f"CONNECT is served by the forward-proxy listener, not upstream {name!r}'s",
                    label="connect_not_allowed",
                )
            current = runtime.config
            if decided[0] is current:
                cached: Route | Reject = decided[1]
                return cached
            cluster = current.clusters.get(name) if current else None
            upstream = current.snapshot.upstream(name) if current else None
            if cluster is None or upstream is None:
                result: Route | Reject = Reject(
                    502, f"upstream {name!r} is no longer in the snapshot", stats
                )
            else:
                result = _routed(runtime, upstream, cluster, stats)
            decided[0], decided[1] = current, result
            return result

        first = b""
        if upstream.protocol in H2_PROTOCOLS:
            found, first = await sniff(stream, runtime.options.detect_timeout)
            if found is Protocol.HTTP2:
                await serve_h2(runtime, stream, route, "outbound", first)
                return
        await _serve_http(runtime, stream, route, first)
    finally:
        stream.close()


async def serve_h2(
    runtime: ListenerHost, stream: Stream, router: Router, direction: str, preface: bytes
) -> None:
    """An HTTP/2 connection (h2c from the application, or h2 from another sidecar)."""
    from ._h2_forward import H2Connection  # h2 is loaded by the first HTTP/2 connection

    connection = H2Connection(
        stream,
        router,
        direction=direction,
        options=runtime.options.http,
        observer=runtime.tap,
        metrics=runtime.metrics,
        budget=runtime.budgets.get,
    )
    runtime.metrics.opened(direction, "h2")
    runtime.connections.add(connection)
    try:
        if runtime.draining:
            connection.drain()
        await connection.serve(preface)
    finally:
        runtime.connections.discard(connection)
        runtime.metrics.closed(direction, "h2")


async def sniff(stream: Stream, timeout: float) -> tuple[Protocol | None, bytes]:
    """The protocol the client's first bytes start (`_detect`), and those bytes; None if it
    did not say within `timeout`."""
    buf = b""
    with trio.move_on_after(timeout):
        while True:
            data = await stream.recv()
            if not data:  # the client is done sending: decide on what it sent
                return detect(buf) or Protocol.OPAQUE, buf
            buf += data
            found = detect(buf)
            if found is not None:
                return found, buf
    return None, buf


async def _serve_tcp(runtime: ListenerHost, stream: Stream, name: str) -> None:
    config = runtime.config
    cluster = config.clusters.get(name) if config else None
    if cluster is None:
        return
    metrics = runtime.metrics
    metrics.opened("outbound", "tcp")
    counter = Counter()
    try:
        try:
            lease = await cluster.acquire([], opaque=True)
        except UpstreamError as exc:
            metrics.add(metrics.upstream_failures, (name, exc.reason))
            log.warning("upstream unreachable", extra={"kv": {"upstream": name, "error": str(exc)}})
            return
        try:
            await splice(
                stream,
                lease.conn,
                counter=counter,
                idle_timeout=runtime.options.http.tunnel_idle_timeout,
            )
            if counter.timed_out:
                metrics.add(metrics.timeouts, ("outbound", "tcp_idle"))
            lease.done(ok=True, reusable=False)
        except BaseException:
            lease.abandon()
            raise
    finally:
        metrics.closed("outbound", "tcp")
        metrics.add(metrics.tcp_bytes, ("outbound", name, "in"), counter.a_to_b)
        metrics.add(metrics.tcp_bytes, ("outbound", name, "out"), counter.b_to_a)


async def serve_forward_proxy(runtime: ListenerHost, sock: socket.socket) -> None:
    stream = Stream(sock)
    metrics = runtime.metrics

    def route(head: Head) -> Route | Reject:
        target = route_forward(head)  # HttpError (400) for a malformed target
        current = runtime.config
        upstream = current.snapshot.upstream(target.upstream) if current else None
        if current is not None and upstream is None:
            # Not a mesh service: a declared external host, a refusal or a passthrough.
            decided = runtime.egress.resolve(current, target.upstream, head)
            if isinstance(decided, Route | Reject):
                if isinstance(decided, Route) and not target.connect:
                    decided.target = target.target or None
                return decided
            upstream = decided
        cluster = current.clusters.get(upstream.name) if current and upstream else None
        if current is None or upstream is None or cluster is None:
            known = ", ".join(u.name for u in current.snapshot.upstreams) if current else ""
            version = current.snapshot.version if current else "none"
            return Reject(
                502,
                f"no upstream named {target.upstream!r} in snapshot version {version}"
                f" (known: {known or 'none'})",
                metrics.http("outbound", "unknown"),
            )
        stats = metrics.http("outbound", upstream.name)
        if upstream.protocol == "tcp" and not target.connect:
            return Reject(
                400, f"upstream {upstream.name!r} is opaque TCP: use CONNECT to reach it", stats
            )
        if target.connect:
            return Route(cluster=cluster, stats=stats, peer=upstream.name, connect=True)
        route = _routed(runtime, upstream, cluster, stats)
        route.target = target.target or None
        return route

    try:
        await _serve_http(runtime, stream, route)
    finally:
        stream.close()
