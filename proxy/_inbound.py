"""The inbound stack: accept → TLS → identity → detect protocol → authorize → forward to the app.

Other proxies connect here with mTLS. A client whose certificate the trust bundle does not
vouch for, or that has no SPIFFE ID of this trust domain, is refused right after the
handshake and counted in `weft_proxy_tls_handshake_failures_total{direction="inbound"}` by
reason. HTTP/1.1 (ALPN `http/1.1`, or detected from the first bytes) is authorized per request
and refused with 403 and an `x-weft-denied` header; anything else is authorized once and
refused by closing the connection, then spliced to the local application.
"""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING, Any

import trio

from ca import SpiffeId

from ._detect import Protocol, detect
from ._errors import HttpError, StreamClosed, TlsRefused, UpstreamError
from ._h1 import Head
from ._http_forward import HttpConnection, Reject, Route
from ._splice import Counter, splice
from ._stream import TlsStream
from ._tls import ALPN_HTTP1, peer_identity

if TYPE_CHECKING:
    from ._runtime import Runtime

log = logging.getLogger("weft.proxy")

_CLIENT_ID = b"x-weft-client-id"


async def serve_inbound(runtime: Runtime, sock: socket.socket) -> None:
    config = runtime.config
    if config is None or config.snapshot.inbound is None:
        sock.close()
        return
    metrics = runtime.metrics
    try:
        tls_sock = config.tls.server.wrap_socket(
            sock, server_side=True, do_handshake_on_connect=False
        )
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


async def _after_handshake(runtime: Runtime, stream: TlsStream, identity: SpiffeId) -> None:
    config = runtime.config
    assert config is not None and config.snapshot.inbound is not None
    inbound = config.snapshot.inbound
    first = b""
    if inbound.protocol == "tcp":
        protocol = Protocol.OPAQUE
    elif stream.alpn == ALPN_HTTP1:
        protocol = Protocol.HTTP1
    else:
        protocol, first = await _sniff(runtime, stream)
    if protocol is Protocol.HTTP1:
        await _serve_http(runtime, stream, identity, first)
    else:
        await _serve_opaque(runtime, stream, identity, first)


async def _sniff(runtime: Runtime, stream: TlsStream) -> tuple[Protocol, bytes]:
    """Peek at the client's first bytes to tell HTTP/1 from anything else."""
    buf = b""
    with trio.move_on_after(runtime.options.detect_timeout):
        while True:
            data = await stream.recv()
            if not data:
                break
            buf += data
            found = detect(buf)
            if found is not None:
                return found, buf
    return Protocol.OPAQUE, buf  # nothing, or not enough, to tell: forward it as it is


async def _serve_http(
    runtime: Runtime, stream: TlsStream, identity: SpiffeId, first: bytes
) -> None:
    metrics = runtime.metrics
    peer = identity.service
    client_id = identity.uri.encode()

    stats = metrics.http("inbound", peer)
    decided: list[Any] = [None, None]  # (config, Route | Reject): decided once per snapshot

    def route(head: Head) -> Route | Reject:
        config = runtime.config
        if decided[0] is config and config is not None:
            cached: Route | Reject = decided[1]
            if isinstance(cached, Reject):
                metrics.add(metrics.authz_denied, ("http", peer, cached.label))
            return cached
        if config is None or config.app is None:
            raise HttpError(503, "this proxy has no inbound application configured")
        decision = config.authorizer.decide(identity)
        result: Route | Reject
        if not decision.allowed:
            result = Reject(
                403,
                f"{identity} may not call {config.snapshot.identity.service}: {decision.reason}",
                stats,
                headers=[(b"x-weft-denied", decision.reason.encode("ascii", "replace"))],
                label=decision.label,
            )
            metrics.add(metrics.authz_denied, ("http", peer, decision.label))
        else:
            result = Route(
                cluster=config.app,
                stats=stats,
                peer=peer,
                add=[(_CLIENT_ID, client_id)],
                drop=frozenset({_CLIENT_ID}),
            )
        decided[0], decided[1] = config, result
        return result

    connection = HttpConnection(
        stream,
        route,
        direction="inbound",
        options=runtime.options.http,
        observer=runtime.tap,
        metrics=metrics,
    )
    metrics.opened("inbound", "http")
    runtime.connections.add(connection)
    try:
        if runtime.draining:
            connection.drain()
        await connection.serve(first)
    finally:
        runtime.connections.discard(connection)
        metrics.closed("inbound", "http")


async def _serve_opaque(
    runtime: Runtime, stream: TlsStream, identity: SpiffeId, first: bytes
) -> None:
    config = runtime.config
    assert config is not None
    metrics = runtime.metrics
    peer = identity.service
    decision = config.authorizer.decide(identity)
    if not decision.allowed:
        metrics.add(metrics.authz_denied, ("tcp", peer, decision.label))
        log.info(
            "inbound connection refused",
            extra={"kv": {"source": str(identity), "reason": decision.reason}},
        )
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
            await splice(stream, lease.conn, a_first=first, counter=counter)
            lease.done(ok=True, reusable=False)
        except BaseException:
            lease.abandon()
            raise
    finally:
        metrics.closed("inbound", "tcp")
        metrics.add(metrics.tcp_bytes, ("inbound", peer, "in"), counter.a_to_b)
        metrics.add(metrics.tcp_bytes, ("inbound", peer, "out"), counter.b_to_a)
