"""Egress through the whole mesh: server, etcd, agent, sidecar, app. An `ExternalService`
applied with `weft apply` reaches the caller's sidecar; the app speaks plain HTTP to its
sidecar's forward proxy and the sidecar opens verified TLS to the external HTTPS service (a
local server with a certificate from a test CA, reached by a name the resource maps to
127.0.0.1). A wrong CA is a 502 that says why; `outbound: registry-only` refuses undeclared
hosts on both the HTTP_PROXY path and CONNECT, and allow-any lets them through."""

from __future__ import annotations

import http.server
import socket
import ssl
import threading
from pathlib import Path

import httpx
import pytest
import trustme

from tests.harness import free_port, wait_until

from .test_agent_mesh import Mesh, mesh  # noqa: F401 - the fixture
from .test_cli_traffic import cli

pytestmark = pytest.mark.timeout(90)


class _Echo(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"{self.server.name} {self.path} host={self.headers['Host']}".encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def serve(name: str, context: ssl.SSLContext | None = None) -> tuple[http.server.HTTPServer, int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    server.name = name  # type: ignore[attr-defined]
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def external(name: str, host: str, port: int, ca_pem: str) -> str:
    bundle = "\n".join("      " + line for line in ca_pem.strip().splitlines())
    return f"""\
apiVersion: weft.dev/v1
kind: ExternalService
metadata: {{name: {name}}}
spec:
  hosts: [{host}]
  ports: [{{port: {port}, protocol: https}}]
  resolution: static
  addresses: [127.0.0.1]
  tls:
    caBundle: |
{bundle}
---
"""


def defaults(mode: str) -> str:
    return f"""\
apiVersion: weft.dev/v1
kind: ServiceDefaults
metadata: {{name: shop}}
spec: {{outbound: {mode}}}
"""


def connect_status(proxy_port: int, authority: str) -> tuple[int, bytes]:
    """The status line's code and the whole answer of a CONNECT through the forward proxy."""
    with socket.create_connection(("127.0.0.1", proxy_port), timeout=5) as sock:
        sock.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        if data.startswith(b"HTTP/1.1 200"):
            # a tunnel: speak plain HTTP through it to prove it reaches the server
            sock.sendall(b"GET /tunnel HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            while chunk := sock.recv(4096):
                data += chunk
        else:
            sock.settimeout(2)
            try:
                while chunk := sock.recv(4096):
                    data += chunk
                    if b"registry-only" in data:
                        break
            except TimeoutError:
                pass
    return int(data.split(b" ", 2)[1]), data


def test_an_app_calls_a_declared_https_service_through_its_sidecar_and_registry_only_refuses_others(
    mesh: Mesh,  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    ca = trustme.CA()
    partner_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("api.partner.test", "bad.partner.test").configure_cert(partner_ctx)
    partner, partner_port = serve("partner", partner_ctx)
    plain, plain_port = serve("undeclared")
    try:
        proxy_port = free_port()
        shop = mesh.agent("vm-a")
        shop.define(
            "shop",
            f'name = "shop"\nport = {mesh.app("shop")}\n'
            f"[sidecar]\nport = {free_port()}\nforward_proxy_port = {proxy_port}\n",
        )
        shop.start()
        wait_until(
            lambda: shop.status()["services"][0]["sidecar"]["proxy"].get("admin"),
            timeout=30,
            what="shop's sidecar",
        )
        admin = shop.status()["services"][0]["sidecar"]["proxy"]["admin"]

        def config() -> dict:
            return httpx.get(f"http://{admin}/config", timeout=5).json()["snapshot"]

        # A bad one is refused whole, naming the field; nothing is stored.
        broken = tmp_path / "broken.yaml"
        broken.write_text(
            external(
                "partner", "api.partner.test", partner_port, ca.cert_pem.bytes().decode()
            ).replace("protocol: https", "protocol: smtp")
        )
        refused_apply = cli(mesh.server, "apply", "-f", str(broken))
        assert refused_apply.returncode == 65
        assert "spec.ports[0].protocol: 'smtp'" in refused_apply.stderr, refused_apply.stderr
        bad_doc = {
            "apiVersion": "weft.dev/v1",
            "kind": "ExternalService",
            "metadata": {"name": "partner"},
            "spec": {
                "hosts": ["api.partner.test"],
                "ports": [{"port": 443, "protocol": "https"}],
                "resolution": "static",
            },
        }
        answer = httpx.post(
            mesh.server.url + "/v1/resources",
            json={"resources": [bad_doc]},
            headers=mesh.server.headers(),
        )
        assert answer.status_code == 400
        assert "spec.addresses: resolution static needs addresses" in answer.text, answer.text
        assert "partner" not in cli(mesh.server, "get", "ExternalService").stdout

        other_ca = trustme.CA()  # the wrong roots for bad.partner.test
        resources = tmp_path / "egress.yaml"
        resources.write_text(
            external("partner", "api.partner.test", partner_port, ca.cert_pem.bytes().decode())
            + external(
                "bad-partner", "bad.partner.test", partner_port, other_ca.cert_pem.bytes().decode()
            )
            + defaults("registry-only")
        )
        done = cli(mesh.server, "apply", "-f", str(resources))
        assert done.returncode == 0, done.stderr
        shown = cli(mesh.server, "get", "ExternalService")
        assert shown.returncode == 0 and "partner" in shown.stdout, shown.stderr
        wait_until(
            lambda: (
                config().get("outbound") == "registry-only"
                and {e["name"] for e in config().get("external", [])} == {"partner", "bad-partner"}
            ),
            timeout=10,
            interval=0.1,
            what="the external services in shop's sidecar",
        )

        app = httpx.Client(proxy=f"http://127.0.0.1:{proxy_port}", trust_env=False, timeout=10)
        with app:
            # Plain HTTP from the app; the sidecar speaks verified TLS (SNI api.partner.test).
            ok = app.get(f"http://api.partner.test:{partner_port}/orders")
            assert ok.status_code == 200, ok.text
            assert ok.text.startswith("partner /orders")
            # The wrong roots: the sidecar refuses the certificate and says so.
            bad = app.get(f"http://bad.partner.test:{partner_port}/orders")
            assert bad.status_code == 502
            assert "certificate verify failed" in bad.text, bad.text
            assert "bad.partner.test" in bad.text

            # registry-only: undeclared hosts are refused on HTTP_PROXY and CONNECT alike.
            refused = app.get(f"http://127.0.0.1:{plain_port}/x")
            assert refused.status_code == 403
            assert "registry-only" in refused.text and "ExternalService" in refused.text
            assert f"127.0.0.1:{plain_port}" in refused.text
            evil = app.get("http://evil.example.test/x")
            assert evil.status_code == 403 and "evil.example.test" in evil.text
            status, answer = connect_status(proxy_port, f"127.0.0.1:{plain_port}")
            assert status == 403 and b"registry-only" in answer, answer

            metrics = httpx.get(f"http://{admin}/metrics", timeout=5).text
            assert 'weft_proxy_egress_refused_total{host="127.0.0.1"} 2.0' in metrics
            assert 'weft_proxy_egress_refused_total{host="evil.example.test"} 1.0' in metrics
            assert 'weft_proxy_requests_total{direction="outbound",peer="partner"' in metrics
            assert 'upstream_failures_total{reason="tls_unknown_ca",upstream="bad-partner"}' in (
                metrics
            ), [line for line in metrics.splitlines() if "failures" in line]

            # allow-any (the default): the same undeclared calls go through.
            resources.write_text(defaults("allow-any"))
            done = cli(mesh.server, "apply", "-f", str(resources))
            assert done.returncode == 0, done.stderr
            wait_until(
                lambda: config().get("outbound", "allow-any") == "allow-any",
                timeout=10,
                interval=0.1,
                what="allow-any in shop's sidecar",
            )
            passed = app.get(f"http://127.0.0.1:{plain_port}/x")
            assert passed.status_code == 200 and passed.text.startswith("undeclared /x")
            status, answer = connect_status(proxy_port, f"127.0.0.1:{plain_port}")
            assert status == 200 and b"undeclared /tunnel" in answer, answer
    finally:
        partner.shutdown()
        plain.shutdown()
        partner.server_close()
        plain.server_close()
