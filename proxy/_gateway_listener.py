"""The gateway's public stack: accept → admit → TLS (SNI) → HTTP/1.1 → host → route → forward.

Built from the sidecar's layers, not beside them: the public TLS ends in the same
`HttpConnection` (the same strict parser, head and body limits and slow-client clocks as an
inbound sidecar), and a request goes on through the same route layer and balancer to the mesh,
over mTLS with the gateway's own identity. What is the gateway's own:

- admission: at most `max_connections` open public connections, `max_per_client` from one
  address; beyond that a connection is closed at once, before any TLS work, and counted
  (`weft_proxy_http_refused_total{direction="gateway",reason="connection_limit"}`);
- the certificate: chosen by SNI from the operator's pairs (`_gateway_certs`);
- the router: the Host header picks the virtual host (`_gateway_hosts`); a Host other than
  the TLS server name the client asked for is 421 (a connection is for one name); whatever
  the client sent as an identity or as `X-Forwarded-*` is dropped and the gateway's own
  `X-Forwarded-For`, `-Proto` and `-Host` are set.
"""

from __future__ import annotations

import logging
import socket
from collections import Counter
from typing import TYPE_CHECKING

import trio

from ._errors import HttpError, StreamClosed, TlsRefused
from ._gateway_hosts import VirtualHost, host_of
from ._h1 import Head
from ._hop_by_hop import strip_identity
from ._http_forward import HttpConnection
from ._http_plan import Reject, Route
from ._stream import TlsStream

if TYPE_CHECKING:
    from ._gateway_certs import CertStore
    from ._gateway_runtime import GatewayRuntime

log = logging.getLogger("weft.gateway")

DIRECTION = "gateway"
_FORWARDED = frozenset(
    {b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded"}
)


class Admission:
    """Connection caps: in total and per client address."""

    def __init__(self, total: int, per_client: int) -> None:
        self.total, self.per_client = total, per_client
        self.open = 0
        self.by_client: Counter[str] = Counter()

    def admit(self, client: str) -> bool:
        if self.open >= self.total or self.by_client[client] >= self.per_client:
            return False
        self.open += 1
        self.by_client[client] += 1
        return True

    def release(self, client: str) -> None:
        self.open -= 1
        self.by_client[client] -= 1
        if self.by_client[client] <= 0:
            del self.by_client[client]


class GatewayRouter:
    """A request head to the virtual host's route, or the gateway's own answer."""

    def __init__(self, runtime: GatewayRuntime, server_name: str | None, client: str) -> None:
        self.runtime = runtime
        self.server_name = server_name.lower().rstrip(".") if server_name else None
        self.client = client.encode()
        self._for: object = None
        self._routes: dict[str, Route] = {}

    def __call__(self, head: Head) -> Route | Reject:
        head.headers = strip_identity(head.headers)
        metrics = self.runtime.metrics
        if head.method == b"CONNECT":
            raise HttpError(
                405, "CONNECT is not served by the gateway", label="connect_not_allowed"
            )
        host = host_of(head.host)
        if host is None:
            raise HttpError(
                400,
                f"Host {head.host[:100]!r} names no DNS host this gateway could serve",
                label="bad_host",
            )
        if self.server_name is not None and host != self.server_name:
            return Reject(
                421,
                f"this connection's TLS server name is {self.server_name!r}, not {host!r}: "
                "open a new connection for that host",
                metrics.http(DIRECTION, "misdirected"),
            )
        runtime = self.runtime
        config, hosts = runtime.config, runtime.hosts
        if self._for is not hosts:  # a new snapshot: routes are made again, once each
            self._for, self._routes = hosts, {}
        vhost = hosts.find(host)
        if config is None or vhost is None:
            return Reject(
                404,
                f"no virtual host of this gateway serves {host!r}",
                metrics.http(DIRECTION, "unknown"),
            )
        route = self._routes.get(vhost.name)
        if route is None:
            made = self._route(vhost, host)
            if made is None:
                return Reject(
                    503,
                    f"virtual host {vhost.name!r} has no backend cluster yet",
                    metrics.http(DIRECTION, vhost.name),
                )
            route = self._routes[vhost.name] = made
        return route

    def _route(self, vhost: VirtualHost, host: str) -> Route | None:
        runtime = self.runtime
        config = runtime.config
        assert config is not None
        # The route layer draws each attempt's backend itself; this cluster is only the
        # Route's default (a subset with no endpoints has no cluster: then its upstream's).
        first = vhost.table.entries[0][1].backends.items[0]
        cluster = config.clusters.get(first.cluster_key) or config.clusters.get(first.upstream)
        if cluster is None:
            return None
        return Route(
            cluster=cluster,
            stats=runtime.metrics.http(DIRECTION, vhost.name),
            peer=vhost.name,
            add=[
                (b"X-Forwarded-For", self.client),
                (b"X-Forwarded-Proto", b"https"),
                (b"X-Forwarded-Host", host.encode()),
            ],
            drop=_FORWARDED,
            table=vhost.table,
            clusters=config.clusters,
            budget=runtime.host_budgets.get(vhost.name),
            metrics=runtime.metrics,
            direction=DIRECTION,
            background=runtime.background,
        )


async def serve_public(
    runtime: GatewayRuntime,
    certs: CertStore,
    admission: Admission,
    sock: socket.socket,
    client: str,
) -> None:
    """One public connection, from TLS handshake to close; releases its admission slot."""
    metrics = runtime.metrics
    stream: TlsStream | None = None
    try:
        tls_sock = certs.front.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        stream = TlsStream(tls_sock)
        with trio.move_on_after(runtime.options.http.header_timeout) as scope:
            await stream.handshake()
        if scope.cancelled_caught:
            metrics.add(metrics.tls_failures, (DIRECTION, "handshake_timeout"))
            return
        metrics.add(
            metrics.handshakes, (DIRECTION, "resumed" if tls_sock.session_reused else "full")
        )
        name = getattr(tls_sock, "weft_server_name", None)
        connection = HttpConnection(
            stream,
            GatewayRouter(runtime, name, client),
            direction=DIRECTION,
            options=runtime.options.http,
            observer=runtime.tap,
            metrics=metrics,
        )
        metrics.opened(DIRECTION, "http")
        runtime.connections.add(connection)
        try:
            if runtime.draining:
                connection.drain()
            await connection.serve()
        finally:
            runtime.connections.discard(connection)
            metrics.closed(DIRECTION, "http")
    except TlsRefused as exc:
        metrics.add(metrics.tls_failures, (DIRECTION, exc.reason))
    except (StreamClosed, OSError):
        pass
    finally:
        admission.release(client)
        if stream is not None:
            stream.close()
        elif sock.fileno() >= 0:
            sock.close()
