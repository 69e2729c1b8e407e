"""Mutual TLS between two trio endpoints over real loopback sockets, as two proxies do it.

Each side loads its certificate chain and key from files, trusts a bundle, completes a TLS 1.3
handshake, checks the other's SPIFFE ID with `ca.verify_peer`, and exchanges a message. The
result says, per side, whom it saw or why it refused.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trio

from ca import PeerRejected, PeerRule, SpiffeId, explain_tls_failure, mesh_ssl_context, verify_peer


@dataclass(frozen=True)
class Workload:
    """What a proxy holds: its chain (leaf first), its key, and the bundle it trusts."""

    chain_pem: str
    key_pem: bytes
    bundle_pem: str
    trust_domain: str

    def context(self, directory: Path, *, server_side: bool) -> ssl.SSLContext:
        directory.mkdir(parents=True, exist_ok=True)
        cert, key = directory / "cert.pem", directory / "key.pem"
        cert.write_text(self.chain_pem)
        key.write_bytes(self.key_pem)
        key.chmod(0o600)
        context = mesh_ssl_context(server_side=server_side, bundle_pem=self.bundle_pem)
        context.load_cert_chain(cert, key)
        return context


@dataclass(frozen=True)
class Side:
    peer: SpiffeId | None = None
    error: PeerRejected | None = None

    @property
    def ok(self) -> bool:
        return self.peer is not None and self.error is None


@dataclass(frozen=True)
class Exchange:
    client: Side
    server: Side

    @property
    def ok(self) -> bool:
        return self.client.ok and self.server.ok


async def _run_side(
    stream: trio.SSLStream[trio.SocketStream],
    me: Workload,
    expect: SpiffeId | None,
    initiator: bool,
) -> Side:
    try:
        await stream.do_handshake()
        peer = verify_peer(stream.getpeercert(binary_form=True), me.trust_domain, expected=expect)
    except PeerRejected as exc:
        await trio.aclose_forcefully(stream)
        return Side(error=exc)
    except (trio.BrokenResourceError, ssl.SSLError) as exc:
        await trio.aclose_forcefully(stream)
        return Side(error=explain_tls_failure(exc))
    try:
        if initiator:
            await stream.send_all(b"ping")
            reply = await stream.receive_some(4)
        else:
            reply = await stream.receive_some(4)
            if reply:
                await stream.send_all(b"pong")
        await stream.aclose()
    except (trio.BrokenResourceError, ssl.SSLError) as exc:
        await trio.aclose_forcefully(stream)
        return Side(peer=peer, error=explain_tls_failure(exc))
    if not reply:
        return Side(
            peer=peer,
            error=PeerRejected("the peer closed the connection", PeerRule.REJECTED_BY_PEER),
        )
    return Side(peer=peer)


async def mtls_exchange(
    client: Workload,
    server: Workload,
    tmp: Path,
    *,
    client_expects: SpiffeId | None = None,
    server_expects: SpiffeId | None = None,
) -> Exchange:
    """Connect `client` to `server` over loopback with mutual TLS 1.3; report both sides."""
    server_ctx = server.context(tmp / "server", server_side=True)
    client_ctx = client.context(tmp / "client", server_side=False)
    results: dict[str, Side] = {}
    with trio.fail_after(10):
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:

            async def serve() -> None:
                transport = await listeners[0].accept()
                stream = trio.SSLStream(transport, server_ctx, server_side=True)
                results["server"] = await _run_side(stream, server, server_expects, False)

            async def connect() -> None:
                transport = await trio.open_tcp_stream("127.0.0.1", port)
                stream = trio.SSLStream(transport, client_ctx, server_hostname=None)
                results["client"] = await _run_side(stream, client, client_expects, True)

            nursery.start_soon(serve)
            nursery.start_soon(connect)
        for listener in listeners:
            await listener.aclose()
    return Exchange(client=results["client"], server=results["server"])
