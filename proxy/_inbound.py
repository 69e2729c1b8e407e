"""The inbound stack: accept → TLS → identity → detect protocol → authorize → forward to the app.

Other proxies connect here with mTLS. A client whose certificate the trust bundle does not
vouch for, or that has no SPIFFE ID of this trust domain, is refused right after the
handshake and counted in `weft_proxy_tls_handshake_failures_total{direction="inbound"}` by
reason.

What reaches the application depends only on the declared inbound protocol:
- `http`: HTTP/1.1 and nothing else. ALPN `http/1.1` goes straight to the HTTP layer; without
  ALPN the first bytes must be a strict request line (`_detect`) within `detect_timeout`, else
  the client gets 400 (or 408 when it was too slow) and the connection closes. Nothing is ever
  spliced raw, so every request the application parses went through the strict parser, and
  `x-weft-client-id` is always the verified caller: what the client sent under any identity
  header name is stripped (`_hop_by_hop.strip_identity`) and the proxy sets its own. Requests
  are authorized one by one (403 with `x-weft-denied`). CONNECT is refused (405): the inbound
  port serves an application, it is no proxy.
- `http2`/`grpc`: the application speaks h2c. ALPN offers `h2` then `http/1.1`; an `h2`
  connection (or, without ALPN, the HTTP/2 preface) is served by `H2Connection`, each stream
  authorized like an HTTP/1.1 request and forwarded to the application as h2c.
- `tcp`: authorized once (refused by closing), then spliced both ways with an idle timeout.
"""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING

import trio

from ca import SpiffeId

from ._authorize import InboundRouter, allow_connection
from ._detect import Protocol
from ._errors import HttpError, StreamClosed, TlsRefused, UpstreamError
from ._http_forward import HttpConnection
from ._outbound import serve_h2, sniff
from ._snapshot import H2_PROTOCOLS
from ._splice import Counter, splice
from ._stream import TlsStream
from ._tls import ALPN_H2, ALPN_HTTP1, peer_identity

if TYPE_CHECKING:
    from ._listener_host import ListenerHost

log = logging.getLogger("weft.proxy")

_NOT_HTTP = {
    Protocol.HTTP2: ("http2", "HTTP/2 is not served here (the inbound protocol is http/1.1)"),
    Protocol.TLS: ("tls", "a TLS handshake inside the mesh's mTLS is not HTTP/1.1"),
    Protocol.OPAQUE: (
        "not_http1",
        "not a strict HTTP/1.1 request line (method SP target SP HTTP/1.x CRLF)",
    ),
}


async def serve_inbound(runtime: ListenerHost, sock: socket.socket) -> None:
    config = runtime.config
    if config is None or config.snapshot.inbound is None:
        sock.close()
        return
    metrics = runtime.metrics
    h2_app = config.snapshot.inbound.protocol in H2_PROTOCOLS
    context = config.tls.server_h2 if h2_app and config.tls.server_h2 else config.tls.server
    try:
        tls_sock = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
    except OSError:
        sock.close()
        return
    stream = TlsStream(tls_sock)
    try:
        with trio.move_on_after(runtime.options.http.header_timeout) as scope:
            await stream.handshake()
        if scope.cancelled_caught:
            metrics.add(metrics.tls_failures, ("inbound", "handshake_timeout"))
            return
        identity, problem = peer_identity(
            tls_sock.getpeercert(), config.snapshot.identity.trust_domain
        )
        if identity is None:
            metrics.add(metrics.tls_failures, ("inbound", problem))
            log.info("inbound TLS refused", extra={"kv": {"reason": problem}})
            return
        metrics.add(
            metrics.handshakes, ("inbound", "resumed" if tls_sock.session_reused else "full")
        )
        await _after_handshake(runtime, stream, identity)
    except TlsRefused as exc:
        metrics.add(metrics.tls_failures, ("inbound", exc.reason))
        log.debug(
            "inbound TLS handshake failed", extra={"kv": {"reason": exc.reason, "error": str(exc)}}
        )
    except StreamClosed:
        pass
    finally:
        stream.close()


async def _after_handshake(runtime: ListenerHost, stream: TlsStream, identity: SpiffeId) -> None:
    config = runtime.config
    assert config is not None and config.snapshot.inbound is not None
    inbound = config.snapshot.inbound
    if inbound.protocol == "tcp":
        await _serve_opaque(runtime, stream, identity)
        return
    h2_app = inbound.protocol in H2_PROTOCOLS
    if stream.alpn == ALPN_H2 and h2_app:
        await _serve_h2(runtime, stream, identity, b"")
        return
    if stream.alpn == ALPN_HTTP1:
        await _serve_http(runtime, stream, identity, b"")
        return
    found, first = await sniff(stream, runtime.options.detect_timeout)
    if found is Protocol.HTTP1:
        await _serve_http(runtime, stream, identity, first)
        return
    if found is Protocol.HTTP2 and h2_app:
        await _serve_h2(runtime, stream, identity, first)
        return
    metrics = runtime.metrics
    if found is None:
        metrics.add(metrics.timeouts, ("inbound", "detect"))
    if not first:
        return  # silence, or gone without a word: nothing to answer
    if found is None:
        refusal = HttpError(
            408,
            f"no complete request line within {runtime.options.detect_timeout:g}s",
            label="detect_timeout",
        )
    else:
        label, reason = _NOT_HTTP[found]
        refusal = HttpError(400, reason, label=label)
    log.info(
        "inbound connection refused: not HTTP/1.1",
        extra={"kv": {"source": str(identity), "reason": refusal.label}},
    )
    await _serve_http(runtime, stream, identity, b"", refusal=refusal)


async def _serve_h2(
    runtime: ListenerHost, stream: TlsStream, identity: SpiffeId, preface: bytes
) -> None:
    router = InboundRouter(identity, runtime.metrics, lambda: runtime.config)
    await serve_h2(runtime, stream, router, "inbound", preface)


async def _serve_http(
    runtime: ListenerHost,
    stream: TlsStream,
    identity: SpiffeId,
    first: bytes,
    *,
    refusal: HttpError | None = None,
) -> None:
    metrics = runtime.metrics
    router = InboundRouter(identity, metrics, lambda: runtime.config)

    connection = HttpConnection(
        stream,
        router,
        direction="inbound",
        options=runtime.options.http,
        observer=runtime.tap,
        metrics=metrics,
        client_id=identity.uri,
    )
    metrics.opened("inbound", "http")
    runtime.connections.add(connection)
    try:
        if runtime.draining:
            connection.drain()
        await connection.serve(first, refusal=refusal)
    finally:
        runtime.connections.discard(connection)
        metrics.closed("inbound", "http")


async def _serve_opaque(runtime: ListenerHost, stream: TlsStream, identity: SpiffeId) -> None:
    config = runtime.config
    assert config is not None
    metrics = runtime.metrics
    peer = identity.service
    if not allow_connection(config, identity, metrics):
        return
    if config.app is None:
        return
    metrics.opened("inbound", "tcp")
    counter = Counter()
    try:
        try:
            lease = await config.app.acquire([], opaque=True)
        except UpstreamError as exc:
            log.warning("inbound application unreachable", extra={"kv": {"error": str(exc)}})
            return
        try:
            await splice(
                stream,
                lease.conn,
                counter=counter,
                idle_timeout=runtime.options.http.tunnel_idle_timeout,
            )
            if counter.timed_out:
                metrics.add(metrics.timeouts, ("inbound", "tcp_idle"))
            lease.done(ok=True, reusable=False)
        except BaseException:
            lease.abandon()
            raise
    finally:
        metrics.closed("inbound", "tcp")
        metrics.add(metrics.tcp_bytes, ("inbound", peer, "in"), counter.a_to_b)
        metrics.add(metrics.tcp_bytes, ("inbound", peer, "out"), counter.b_to_a)
