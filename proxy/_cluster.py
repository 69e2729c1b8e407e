"""The balance layer: pick an endpoint, lend a pooled (or new) connection, learn from the result.

A `Cluster` is one upstream (its endpoints' sidecars, reached with mTLS) or the inbound's
local application (one endpoint, plain TCP). `acquire` asks the balancer for an endpoint,
takes a connection from that endpoint's pool or opens one, and hands back a `Lease`; the
caller reports how the attempt went with `Lease.done`, which feeds the balancer's latency
estimate and failure accrual and returns the connection to the pool. Connect failures are
retried here on other endpoints (the `_retry` rules); other retries are the HTTP layer's.
"""

from __future__ import annotations

import logging
import random
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass

import trio

from ca import SpiffeId

from . import _retry
from ._accrual import AccrualPolicy
from ._balance import Balancer, Endpoint
from ._errors import ConnectFailed, NoEndpoint, TlsRefused
from ._h2_pool import H2Lease, H2Pool
from ._metrics import Metrics
from ._pool import Pool
from ._snapshot import PoolPolicy, Timeouts
from ._stream import Stream, TlsStream, connect
from ._tls import ALPN_H2, TlsMaterial, peer_identity

log = logging.getLogger("weft.proxy")


@dataclass(frozen=True, slots=True)
class EndpointAddress:
    host: str
    port: int
    identity: SpiffeId | None  # None: plain TCP (the local application)


class Lease:
    """One attempt's endpoint and connection."""

    __slots__ = ("cluster", "conn", "endpoint", "finished", "fresh", "pool", "started")

    def __init__(
        self, cluster: Cluster, endpoint: Endpoint, pool: Pool, conn: Stream, fresh: bool
    ) -> None:
        self.cluster = cluster
        self.endpoint = endpoint
        self.pool = pool
        self.conn = conn
        self.fresh = fresh
        self.started = trio.current_time()
        self.finished = False

    def done(self, *, ok: bool, reusable: bool, transport_failure: bool = False) -> None:
        """Report the outcome; `ok` false for 5xx answers and failed attempts. Once only."""
        if self.finished:
            return
        self.finished = True
        now = trio.current_time()
        cluster = self.cluster
        ejected = cluster.balancer.finish(
            self.endpoint, now, now - self.started, ok=ok, transport=transport_failure
        )
        if ejected:
            cluster.metrics.add(cluster.metrics.ejections, cluster.name)
            log.warning(
                "endpoint ejected",
                extra={"kv": {"upstream": cluster.name, "endpoint": self.endpoint.key}},
            )
        conn = self.conn
        if ok and self.fresh and isinstance(conn, TlsStream):
            # The session ticket came with the first answer: the next connection resumes.
            cluster.remember_session(self.endpoint.key, conn)
        self.pool.release(conn, reusable=reusable, now=now)

    def abandon(self) -> None:
        """The attempt ended without a verdict (the client left): no learning, no reuse."""
        if self.finished:
            return
        self.finished = True
        self.cluster.balancer.release(self.endpoint)
        self.pool.release(self.conn, reusable=False, now=trio.current_time())


class Cluster:
    def __init__(
        self,
        name: str,
        *,
        metrics: Metrics,
        tls: Callable[[], TlsMaterial | None] | None,
        opaque: bool = False,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self.metrics = metrics
        self._tls = tls
        self._opaque = opaque
        self.balancer = Balancer(rng=rng)
        self.addresses: dict[str, EndpointAddress] = {}
        self.pools: dict[str, Pool] = {}
        self.timeouts = Timeouts()
        self._pool_policy = PoolPolicy()
        self._sessions: dict[str, tuple[int, ssl.SSLSession]] = {}
        # HTTP/2 (`http2`/`grpc` upstreams, or an h2c application): multiplexed connections
        # per endpoint, their readers started with `spawn` (set by the runtime).
        self.h2 = H2Pool()
        self.h2_upstream = False  # its endpoints are spoken to in HTTP/2 (h2, or h2c)
        self.spawn: Callable[..., None] | None = None
        # An external https service: (client context, SNI) for TLS the proxy originates.
        self.origination: tuple[ssl.SSLContext, str] | None = None

    # -- configuration -------------------------------------------------------------------

    def configure(
        self,
        endpoints: list[tuple[EndpointAddress, int]],
        *,
        strategy: str,
        timeouts: Timeouts,
        pool: PoolPolicy,
        accrual: AccrualPolicy | None = None,
        opaque: bool | None = None,
    ) -> None:
        """Apply a snapshot's view of this cluster; state of kept endpoints survives.

        (A new balancing strategy or failure policy starts the estimates afresh.)
        """
        if strategy != self.balancer.strategy or (
            accrual is not None and accrual != self.balancer.accrual_policy
        ):
            old = self.balancer
            self.balancer = Balancer(
                strategy,
                rng=old.rng,
                accrual=accrual or old.accrual_policy,
            )
        if opaque is not None:
            self._opaque = opaque
        now = trio.current_time()
        self.timeouts = timeouts
        addresses = {}
        for address, _ in endpoints:
            host = f"[{address.host}]" if ":" in address.host else address.host
            addresses[f"{host}:{address.port}"] = address
        for key, old_pool in list(self.pools.items()):
            old_address = self.addresses.get(key)
            if key not in addresses or old_address != addresses[key] or pool != self._pool_policy:
                old_pool.close()
                del self.pools[key]
        self.addresses = addresses
        self._pool_policy = pool
        for key in addresses:
            if key not in self.pools:
                self.pools[key] = Pool(pool.max_connections, pool.idle_timeout)
        self.balancer.set_endpoints(
            [(key, weight) for (key, (_, weight)) in zip(addresses, endpoints, strict=True)], now
        )

    def close(self) -> None:
        for pool in self.pools.values():
            pool.close()
        self.h2.close()

    def reap(self, now: float) -> None:
        for pool in self.pools.values():
            pool.reap(now)
        self.h2.reap(now, self._pool_policy.idle_timeout)

    # -- connections ---------------------------------------------------------------------

    def remember_session(self, key: str, conn: TlsStream) -> None:
        session = conn.session
        if session is not None:
            self._sessions[key] = (id(conn.sock.context), session)

    async def _open(
        self, key: str, address: EndpointAddress, *, opaque: bool = False, h2: bool = False
    ) -> Stream:
        sock = await connect(address.host, address.port, timeout=self.timeouts.connect)
        if address.identity is None:
            if self.origination is not None and not opaque:  # CONNECT: the app's own TLS
                return await self._originate(key, sock, *self.origination)
            return Stream(sock)
        material = self._tls() if self._tls else None
        if material is None:
            sock.close()
            raise ConnectFailed("no TLS certificates are loaded", reason="no_certificate")
        if h2 and material.client_h2 is not None:
            ctx = material.client_h2
        else:
            ctx = material.client_tcp if (self._opaque or opaque) else material.client_http
        remembered = self._sessions.get(key)
        session = remembered[1] if remembered and remembered[0] == id(ctx) else None
        try:
            tls_sock = ctx.wrap_socket(sock, do_handshake_on_connect=False, session=session)
        except (ssl.SSLError, OSError, ValueError) as exc:
            sock.close()
            raise ConnectFailed(f"TLS setup failed: {exc}", reason="tls_error") from exc
        stream = TlsStream(tls_sock)
        try:
            with trio.move_on_after(self.timeouts.connect) as scope:
                await stream.handshake()
            if scope.cancelled_caught:
                raise TlsRefused(
                    f"no TLS handshake within {self.timeouts.connect:g}s", "handshake_timeout"
                )
            sid, problem = peer_identity(tls_sock.getpeercert(), address.identity.trust_domain)
            if sid != address.identity:
                got = str(sid) if sid else problem
                raise TlsRefused(
                    f"it presented {got}, not the expected {address.identity}", "wrong_identity"
                )
            kind = "resumed" if tls_sock.session_reused else "full"
            self.metrics.add(self.metrics.handshakes, ("outbound", kind))
        except TlsRefused as exc:
            stream.close()
            self.metrics.add(self.metrics.tls_failures, ("outbound", exc.reason))
            raise ConnectFailed(f"mTLS to {key} failed: {exc}", reason=f"tls_{exc.reason}") from exc
        except BaseException:
            stream.close()
            raise
        return stream

    async def _originate(
        self, key: str, sock: socket.socket, ctx: ssl.SSLContext, sni: str
    ) -> Stream:
        """TLS to a service outside the mesh, verified for `sni` (see _external.py)."""
        try:
            tls_sock = ctx.wrap_socket(sock, do_handshake_on_connect=False, server_hostname=sni)
        except (ssl.SSLError, OSError, ValueError) as exc:
            sock.close()
            raise ConnectFailed(f"TLS setup failed: {exc}", reason="tls_error") from exc
        stream = TlsStream(tls_sock)
        try:
            with trio.move_on_after(self.timeouts.connect) as scope:
                await stream.handshake()
            if scope.cancelled_caught:
                raise TlsRefused(
                    f"no TLS handshake within {self.timeouts.connect:g}s", "handshake_timeout"
                )
            self.metrics.add(self.metrics.handshakes, ("egress", "full"))
        except TlsRefused as exc:
            stream.close()
            self.metrics.add(self.metrics.tls_failures, ("egress", exc.reason))
            cause = exc.__cause__
            if isinstance(cause, ssl.SSLCertVerificationError):
                detail = (
                    f"certificate verify failed: {cause.verify_message} (the ExternalService's "
                    "spec.tls.caBundle, or the system's roots, must vouch for it)"
                )
            else:
                detail = str(exc)
            raise ConnectFailed(
                f"TLS to {sni} at {key} failed: {detail}", reason=f"tls_{exc.reason}"
            ) from exc
        except BaseException:
            stream.close()
            raise
        return stream

    async def acquire(self, tried: list[Endpoint], *, opaque: bool = False) -> Lease:
        """A connection to an endpoint not in `tried` (which grows with each pick).

        `opaque` asks for a new, unpooled connection without ALPN (for CONNECT tunnels).
        """
        last: ConnectFailed | None = None
        while True:
            now = trio.current_time()
            endpoint = self.balancer.pick(now, tried)
            if endpoint is None:
                raise self._exhausted(tried, last)
            tried.append(endpoint)
            pool = self.pools[endpoint.key]
            self.balancer.start(endpoint)
            if opaque:
                conn = None
                pool.active += 1
            else:
                conn = pool.take_idle(now)  # the common case, without awaiting anything
                if conn is None:
                    try:
                        conn = await pool.checkout(now)
                    except BaseException:
                        self.balancer.release(endpoint)
                        raise
            if conn is not None:
                return Lease(self, endpoint, pool, conn, fresh=False)
            started = trio.current_time()
            try:
                conn = await self._open(endpoint.key, self.addresses[endpoint.key], opaque=opaque)
            except ConnectFailed as exc:
                now = trio.current_time()
                pool.release(None, reusable=False, now=now)
                if self.balancer.finish(endpoint, now, now - started, ok=False, transport=True):
                    self.metrics.add(self.metrics.ejections, self.name)
                self.metrics.add(self.metrics.upstream_failures, (self.name, exc.reason))
                log.info(
                    "endpoint connect failed",
                    extra={
                        "kv": {"upstream": self.name, "endpoint": endpoint.key, "error": str(exc)}
                    },
                )
                last = exc
                if not _retry.may_retry(
                    _retry.CONNECT, attempt=len(tried), idempotent=True, replayable=True
                ):
                    raise self._exhausted(tried, last) from exc
                continue
            except BaseException:
                pool.release(None, reusable=False, now=trio.current_time())
                self.balancer.release(endpoint)
                raise
            return Lease(self, endpoint, pool, conn, fresh=True)

    async def acquire_h2(self, tried: list[Endpoint]) -> H2Lease | Lease:
        """A stream's endpoint and HTTP/2 connection (balanced per stream: each request picks
        its endpoint). An endpoint whose sidecar did not agree to `h2` in ALPN (an older one)
        gets an HTTP/1.1 `Lease` instead."""
        last: ConnectFailed | None = None
        while True:
            now = trio.current_time()
            endpoint = self.balancer.pick(now, tried)
            if endpoint is None:
                raise self._exhausted(tried, last)
            tried.append(endpoint)
            self.balancer.start(endpoint)
            session = self.h2.usable(endpoint.key)
            opening = self.h2.opening.get(endpoint.key)
            if session is None and opening is not None:
                # Another stream is connecting to this endpoint: share its connection rather
                # than start a handshake per stream (a burst of calls would open dozens).
                try:
                    await opening.wait()
                except BaseException:
                    self.balancer.release(endpoint)
                    raise
                session = self.h2.usable(endpoint.key)
            if session is not None:
                return H2Lease(self, endpoint, session)
            pool = self.pools[endpoint.key]
            opened = self.h2.opening[endpoint.key] = trio.Event()
            pool.active += 1  # a slot, while it is not known whether h2 or HTTP/1.1 follows
            reserved = True
            started = trio.current_time()
            try:
                conn = await self._open(endpoint.key, self.addresses[endpoint.key], h2=True)
                if isinstance(conn, TlsStream) and conn.alpn != ALPN_H2:
                    return Lease(self, endpoint, pool, conn, fresh=True)
                pool.release(None, reusable=False, now=trio.current_time())
                reserved = False
                session = await self.h2.open(endpoint.key, conn, self.spawn)
            except ConnectFailed as exc:
                now = trio.current_time()
                if reserved:
                    pool.release(None, reusable=False, now=now)
                if self.balancer.finish(endpoint, now, now - started, ok=False, transport=True):
                    self.metrics.add(self.metrics.ejections, self.name)
                self.metrics.add(self.metrics.upstream_failures, (self.name, exc.reason))
                last = exc
                if not _retry.may_retry(
                    _retry.CONNECT, attempt=len(tried), idempotent=True, replayable=True
                ):
                    raise self._exhausted(tried, last) from exc
                continue
            except BaseException:
                if reserved:
                    pool.release(None, reusable=False, now=trio.current_time())
                self.balancer.release(endpoint)
                raise
            finally:
                if self.h2.opening.get(endpoint.key) is opened:
                    del self.h2.opening[endpoint.key]
                opened.set()
            return H2Lease(self, endpoint, session)

    def _exhausted(self, tried: list[Endpoint], last: ConnectFailed | None) -> Exception:
        if last is not None:
            return ConnectFailed(
                f"upstream {self.name!r}: no endpoint could be reached "
                f"({len(tried)} tried; last: {last})",
                reason=last.reason,
            )
        if not self.balancer.endpoints:
            detail = "it has no endpoints in the snapshot"
        else:
            counts = self.balancer.counts(trio.current_time())
            detail = (
                f"{counts['ejected']} of {len(self.balancer.endpoints)} endpoints are ejected "
                "after consecutive failures"
            )
            if tried:
                detail += f", {len(tried)} already tried for this request"
        self.metrics.add(self.metrics.upstream_failures, (self.name, "no_endpoint"))
        return NoEndpoint(
            f"upstream {self.name!r} has no available endpoint: {detail}", reason="no_endpoint"
        )
