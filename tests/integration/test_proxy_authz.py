"""Authorization at B's sidecar: refused at TLS, refused by policy, counted by reason."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.harness import TestCA, TlsPaths

from .test_proxy_support import Background, HttpApp, LineEcho, Mesh, ProxyProc, proxies, status_of

pytestmark = pytest.mark.timeout(90)

POLICY = {
    "default": "deny",
    "rules": [
        {"name": "no-evil", "action": "deny", "sources": ["evil"]},
        {"name": "callers", "action": "allow", "sources": ["a", "ops/*"]},
    ],
}


@dataclass
class World:
    mesh: Mesh
    b: ProxyProc
    b_tcp: ProxyProc
    a: ProxyProc
    evil: ProxyProc
    stranger: ProxyProc
    root: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("authz")
    mesh = Mesh(root)
    with Background() as bg:
        app = HttpApp("b")
        bg.start(app.serve)
        echo = LineEcho()
        bg.start(echo.serve)
        b = ProxyProc(root, "b", mesh.snapshot("b", app_port=app.port, authorization=POLICY))
        b_tcp = ProxyProc(
            root,
            "b-tcp",
            mesh.snapshot("b", app_port=echo.port, protocol="tcp", authorization=POLICY),
        )
        with proxies(b, b_tcp):

            def client(name: str, identity: str | None = None) -> ProxyProc:
                ups = [
                    mesh.upstream("b", [b.inbound_port], identity=identity),
                    mesh.upstream(
                        "btcp", [b_tcp.inbound_port], protocol="tcp", identity=mesh.spiffe("b")
                    ),
                ]
                return ProxyProc(root, name, mesh.snapshot(name, upstreams=ups))

            a, evil = client("a"), client("evil")
            stranger = client("stranger")
            with proxies(a, evil, stranger):
                yield World(mesh, b, b_tcp, a, evil, stranger, root)


def get(proxy: ProxyProc, path: str = "/") -> httpx.Response:
    with httpx.Client(trust_env=False, timeout=10) as c:
        return c.get(f"http://127.0.0.1:{proxy.listener('upstream/b')}{path}")


def tcp_echo(proxy: ProxyProc) -> bytes:
    with socket.create_connection(("127.0.0.1", proxy.listener("upstream/btcp")), timeout=10) as s:
        try:
            s.sendall(b"ping\n")
            return s.recv(100)
        except ConnectionResetError:
            return b""


def test_allowed_sources_pass_and_denied_ones_get_403_with_the_reason(world: World) -> None:
    assert get(world.a).status_code == 200
    denied = get(world.evil)
    assert denied.status_code == 403
    assert "no-evil" in denied.headers["x-weft-denied"]
    assert "spiffe://weft.test/ns/default/svc/evil may not call b" in denied.text
    by_default = get(world.stranger)
    assert by_default.status_code == 403 and "default policy denies" in by_default.text
    b = world.b
    assert (
        b.metric(
            "weft_proxy_authz_denied_total", protocol="http", peer="evil", reason="rule:no-evil"
        )
        >= 1
    )
    assert (
        b.metric(
            "weft_proxy_authz_denied_total", protocol="http", peer="stranger", reason="default"
        )
        >= 1
    )
    assert b.metric("weft_proxy_authz_denied_total", peer="a") == 0


def test_denied_tcp_connections_are_closed(world: World) -> None:
    assert tcp_echo(world.a) == b"ping\n"
    assert tcp_echo(world.evil) == b""
    assert (
        world.b_tcp.metric(
            "weft_proxy_authz_denied_total", protocol="tcp", peer="evil", reason="rule:no-evil"
        )
        >= 1
    )


def _tls_attempt(port: int, client: TlsPaths | None, bundle: Path, *, tls12: bool = False) -> bytes:
    """Handshake with B's inbound as `client`, then try a request; returns what came back."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(bundle)
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if client is not None:
        ctx.load_cert_chain(client.cert, client.key)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        try:
            with ctx.wrap_socket(raw) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: b\r\n\r\n")
                return s.recv(1000)
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            return b""


def test_clients_without_an_acceptable_certificate_are_refused_at_tls(world: World) -> None:
    mesh, port = world.mesh, world.b.inbound_port
    bundle = mesh.tls("b").bundle
    foreign = TestCA("weft.test", name="Foreign")
    cases = {
        "no_client_certificate": None,
        "unknown_ca": foreign.issue("a").write(world.root / "foreign"),
        "expired_certificate": mesh.ca.issue_expired("a").write(world.root / "expired"),
        "no_spiffe_id": mesh.ca.issue(None).write(world.root / "no-id"),
        "foreign_trust_domain": mesh.ca.issue(
            "a", uri="spiffe://elsewhere.test/ns/default/svc/a"
        ).write(world.root / "other-domain"),
    }
    before = {
        reason: world.b.metric(
            "weft_proxy_tls_handshake_failures_total", direction="inbound", reason=reason
        )
        for reason in [*cases, "protocol_version", "plaintext_http"]
    }
    for reason, paths in cases.items():
        assert _tls_attempt(port, paths, bundle) == b"", reason
    # a correct certificate on TLS 1.2, and plain HTTP on the TLS port
    assert _tls_attempt(port, mesh.tls("a"), bundle, tls12=True) == b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: b\r\n\r\n")
        try:
            answer = s.recv(100)
        except ConnectionResetError:
            answer = b""
        assert status_of(answer) == 0
    # and the control: the mesh's own certificate for `a` is let through
    assert status_of(_tls_attempt(port, mesh.tls("a"), bundle)) == 200
    for reason in [*cases, "protocol_version", "plaintext_http"]:
        after = world.b.metric(
            "weft_proxy_tls_handshake_failures_total", direction="inbound", reason=reason
        )
        assert after == before[reason] + 1, reason


def test_a_server_with_the_wrong_identity_is_refused_by_the_client_side(world: World) -> None:
    # `a` expects b's sidecar to be `c`: the handshake succeeds but the SPIFFE ID does not match.
    mesh = world.mesh
    wrong = ProxyProc(
        world.root,
        "a-wrong",
        mesh.snapshot(
            "a",
            upstreams=[mesh.upstream("b", [world.b.inbound_port], identity=mesh.spiffe("c"))],
        ),
    )
    with proxies(wrong):
        resp = get(wrong)
        assert resp.status_code == 502
        assert "presented spiffe://weft.test/ns/default/svc/b" in resp.text
        assert "not the expected spiffe://weft.test/ns/default/svc/c" in resp.text
        assert (
            wrong.metric(
                "weft_proxy_tls_handshake_failures_total",
                direction="outbound",
                reason="wrong_identity",
            )
            >= 1
        )
        assert (
            wrong.metric(
                "weft_proxy_upstream_failures_total", upstream="b", reason="tls_wrong_identity"
            )
            >= 1
        )


def test_policy_changes_apply_to_the_next_request_on_open_connections(world: World) -> None:
    doc = world.mesh.snapshot(
        "b",
        version=2,
        app_port=world.b.config()["snapshot"]["inbound"]["app"]["port"],
        authorization={"default": "deny", "rules": [{"action": "allow", "sources": ["ops/*"]}]},
    )
    doc["inbound"]["port"] = world.b.inbound_port
    with httpx.Client(trust_env=False, timeout=10) as c:
        target = f"http://127.0.0.1:{world.a.listener('upstream/b')}/"
        assert c.get(target).status_code == 200
        world.b.write_snapshot(doc)
        world.b.wait_applied(2)
        assert c.get(target).status_code == 403
        doc["version"] = 3
        doc["authorization"] = POLICY
        world.b.write_snapshot(doc)
        world.b.wait_applied(3)
        assert c.get(target).status_code == 200
