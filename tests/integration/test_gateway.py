"""`weft gateway` in front of a real mesh: a real server (CA, resources, intentions) on the
session's etcd, a real agent running the sidecars of `books` and `cart` and holding the
gateway's identity (`edge`, kind ingress-gateway), real apps, and the real curl binary on the
public side with operator certificates made by trustme, chosen by SNI."""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trustme

from ca import KeyEncryptionKey
from tests.harness import EtcdCluster, Proc, WeftAgent, WeftServer, free_port, spawn, wait_until
from tests.harness._procs import weft_command

from .test_cli_traffic import cli

pytestmark = pytest.mark.timeout(120)

TD = "mesh.test"
BOOKS, SHOP = "books.example.com", "shop.example.com"
PER_CLIENT = 16

RESOURCES = [
    {
        "apiVersion": "weft.dev/v1",
        "kind": "Gateway",
        "metadata": {"name": "public"},
        "spec": {"service": "edge", "hosts": [BOOKS, SHOP]},
    },
    {
        "apiVersion": "weft.dev/v1",
        "kind": "Route",
        "metadata": {"name": "books-site"},
        "spec": {
            "gateway": "public",
            "hosts": [BOOKS],
            "rules": [{"name": "all", "backends": [{"service": "books"}]}],
        },
    },
    {
        "apiVersion": "weft.dev/v1",
        "kind": "Route",
        "metadata": {"name": "shop-site"},
        "spec": {
            "gateway": "public",
            "hosts": [SHOP],
            "rules": [
                {
                    "name": "cart",
                    "match": [{"path": {"segmentPrefix": "/cart"}}],
                    "backends": [{"service": "cart"}],
                },
                {
                    "name": "books",
                    "match": [{"path": {"segmentPrefix": "/books"}}],
                    "backends": [{"service": "books"}],
                },
            ],
        },
    },
]


@dataclass
class Edge:
    server: WeftServer
    agent: WeftAgent
    gateway: Proc
    port: int  # the gateway's public port
    admin: str
    ca: trustme.CA
    ca_file: Path
    certs: dict[str, tuple[Path, Path]]  # host: (cert, key) files the gateway serves
    apps: dict[str, int]  # service: the app's own port

    def curl(self, host: str, path: str, *extra: str, timeout: float = 10) -> tuple[int, str]:
        """(HTTP status, body) through the gateway with the real curl; status 0 on failure."""
        done = subprocess.run(
            [
                "curl", "-sS", "--max-time", str(timeout),
                "--resolve", f"{host}:{self.port}:127.0.0.1",
                "--cacert", str(self.ca_file),
                "-w", "\n%{http_code}",
                *extra,
                f"https://{host}:{self.port}{path}",
            ],
            capture_output=True, text=True, timeout=timeout + 5,
        )  # fmt: skip
        body, _, code = done.stdout.rpartition("\n")
        return (int(code) if done.returncode == 0 else 0), body or done.stderr

    def served_certificate(self, server_name: str | None) -> bytes:
        """The DER certificate a fresh TLS handshake with this SNI gets."""
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        ctx.check_hostname = False
        with (
            socket.create_connection(("127.0.0.1", self.port), timeout=5) as raw,
            ctx.wrap_socket(raw, server_hostname=server_name) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return der


def _write_pair(ca: trustme.CA, host: str, directory: Path) -> tuple[Path, Path]:
    leaf = ca.issue_cert(host)
    cert, key = directory / f"{host}.pem", directory / f"{host}.key"
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())
    return cert, key


def _app(name: str, port: int, logs: Path) -> Proc:
    proc = spawn(
        [sys.executable, "-m", "tests.harness.edge_app", "--name", name, "--port", str(port)],
        log_path=logs / f"app-{name}.log",
    )
    wait_until(
        lambda: httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200,
        timeout=20,
        what=f"app {name}",
    )
    return proc


@pytest.fixture(scope="module")
def edge(etcd: EtcdCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    tmp = tmp_path_factory.mktemp("gateway")
    kek = tmp / "kek"
    kek.write_text(KeyEncryptionKey.generate().to_text())
    server = WeftServer(
        etcd.endpoints,
        f"/weft-test-{uuid.uuid4().hex[:12]}/",
        tmp,
        args=["--ca-kek-file", str(kek), "--ca-allow-short-leaves"],
    )
    procs: list[Proc] = []
    agent: WeftAgent | None = None
    try:
        server.start()
        headers = server.headers()
        httpx.post(
            server.url + "/v1/ca/init", json={"trust_domain": TD}, headers=headers
        ).raise_for_status()
        httpx.post(
            server.url + "/v1/resources", json={"resources": RESOURCES}, headers=headers
        ).raise_for_status()
        procs += [_app("books", books := free_port(), tmp), _app("cart", cart := free_port(), tmp)]
        token = httpx.post(
            server.url + "/v1/tokens", json={"role": "agent", "node": "vm-a"}, headers=headers
        ).json()["secret"]
        agent = WeftAgent(server.url, token, tmp, node="vm-a")
        public = free_port()
        for name, port in (("books", books), ("cart", cart)):
            agent.define(name, f'name = "{name}"\nport = {port}\n[sidecar]\nport = {free_port()}\n')
        agent.define("edge", f'name = "edge"\nkind = "ingress-gateway"\nport = {public}\n')
        agent.start()

        ca = trustme.CA()
        ca_file = tmp / "public-ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        certs = {host: _write_pair(ca, host, tmp) for host in (BOOKS, SHOP)}
        ready = tmp / "gateway-ready.json"
        gateway = spawn(
            [
                *weft_command(), "gateway",
                "--snapshot-url", f"http://{agent.address}/v1/agent/proxy/edge",
                "--listen", f"127.0.0.1:{public}",
                "--admin", "127.0.0.1:0",
                "--certificates", ",".join(f"{c}:{k}" for c, k in certs.values()),
                "--watch-interval", "0.2s",
                "--max-connections-per-client", str(PER_CLIENT),
                "--ready-file", str(ready),
            ],
            log_path=tmp / "gateway.log",
        )  # fmt: skip
        procs.append(gateway)
        info = gateway.wait_ready_file(ready, timeout=40)
        world = Edge(
            server, agent, gateway, public, info["admin"], ca, ca_file, certs,
            {"books": books, "cart": cart},
        )  # fmt: skip
        wait_until(
            lambda: world.curl(BOOKS, "/ping")[0] == 200,
            timeout=30,
            what="the gateway to reach books through its sidecar",
        )
        yield world
    finally:
        for proc in reversed(procs):
            proc.stop()
        if agent is not None:
            agent.stop()
        server.stop()


def test_curl_reaches_two_services_by_host_and_by_path_over_the_mesh(edge: Edge) -> None:
    status, body = edge.curl(BOOKS, "/anything/at/all")
    assert status == 200, body
    seen = json.loads(body)
    assert (seen["service"], seen["path"]) == ("books", "/anything/at/all")
    # The app is called by books' sidecar over mTLS from the gateway's own identity.
    assert seen["client_id"] == f"spiffe://{TD}/ns/default/svc/edge"
    assert seen["forwarded_proto"] == "https"
    assert seen["forwarded_for"] == "127.0.0.1"

    # The agent published the gateway's snapshot and the gateway acknowledged it.
    gateway = next(s for s in edge.agent.status()["services"] if s["name"] == "edge")["gateway"]
    assert gateway["identity"] == f"spiffe://{TD}/ns/default/svc/edge"
    assert gateway["applied_version"] == gateway["snapshot_version"] is not None

    status, body = edge.curl(SHOP, "/cart/items")
    assert (status, json.loads(body)["service"]) == (200, "cart")
    status, body = edge.curl(SHOP, "/books/17")
    assert (status, json.loads(body)["service"]) == (200, "books")
    status, body = edge.curl(SHOP, "/checkout")
    assert status == 404 and "no route" in body

    # A forged identity or forwarding header from the internet never reaches the app.
    status, body = edge.curl(
        BOOKS, "/x", "-H", "x-weft-client-id: spiffe://mesh.test/ns/default/svc/admin",
        "-H", "X-Forwarded-For: 10.9.9.9",
    )  # fmt: skip
    assert status == 200
    assert json.loads(body)["client_id"] == f"spiffe://{TD}/ns/default/svc/edge"
    assert json.loads(body)["forwarded_for"] == "127.0.0.1"


def test_sni_picks_each_hosts_certificate_and_a_host_of_another_connection_is_421(
    edge: Edge,
) -> None:
    from cryptography import x509

    def names(der: bytes) -> list[str]:
        cert = x509.load_der_x509_certificate(der)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        return san.value.get_values_for_type(x509.DNSName)

    assert names(edge.served_certificate(BOOKS)) == [BOOKS]
    assert names(edge.served_certificate(SHOP)) == [SHOP]
    assert names(edge.served_certificate(None)) == [BOOKS]  # the default: the first pair
    # curl checks the certificate against the name it asked for: both verify.
    assert edge.curl(BOOKS, "/")[0] == 200 and edge.curl(SHOP, "/books/")[0] == 200
    # A connection opened for books may not be used for shop (the certificate vouched for
    # books only): 421, the client must connect again.
    status, body = edge.curl(BOOKS, "/cart/x", "-H", f"Host: {SHOP}")
    assert status == 421 and "open a new connection" in body
    status, body = edge.curl(BOOKS, "/", "-H", "Host: unknown.example.com")
    assert status == 421
    config = httpx.get(f"http://{edge.admin}/config").json()["gateway"]
    assert sorted(h for v in config["virtual_hosts"] for h in v["hosts"]) == [BOOKS, SHOP]


def test_a_certificate_swap_on_sighup_keeps_a_long_download_and_new_connections_get_it(
    edge: Edge, tmp_path: Path
) -> None:
    before = edge.served_certificate(BOOKS)
    out = tmp_path / "download.bin"
    chunks = 10
    download = subprocess.Popen(
        [
            "curl", "-sS", "--max-time", "30",
            "--resolve", f"{BOOKS}:{edge.port}:127.0.0.1", "--cacert", str(edge.ca_file),
            "-o", str(out), "-w", "%{http_code} %{size_download}",
            f"https://{BOOKS}:{edge.port}/download?chunks={chunks}&delay=0.4",
        ],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_until(
            lambda: out.exists() and out.stat().st_size > 0, timeout=10, what="download started"
        )
        # The operator replaces the pair (a new certificate for the same name) and sends SIGHUP.
        cert, key = edge.certs[BOOKS]
        fresh = edge.ca.issue_cert(BOOKS)
        key.write_bytes(fresh.private_key_pem.bytes())
        cert.write_bytes(b"".join(blob.bytes() for blob in fresh.cert_chain_pems))
        edge.gateway.signal(signal.SIGHUP)
        wait_until(
            lambda: edge.served_certificate(BOOKS) != before,
            timeout=10,
            what="a new handshake to get the new certificate",
        )
        assert download.poll() is None, "the download should still be in progress"
        assert edge.served_certificate(None) == edge.served_certificate(BOOKS)  # the default
        stdout, stderr = download.communicate(timeout=30)
    finally:
        if download.poll() is None:
            download.kill()
            download.wait()
    assert download.returncode == 0, stderr
    assert stdout.split() == ["200", str(chunks * 65536)]
    assert out.stat().st_size == chunks * 65536
    assert edge.curl(BOOKS, "/after-swap")[0] == 200

    # A broken new pair (a key that is not the certificate's) keeps the current one serving.
    current = edge.served_certificate(BOOKS)
    other = edge.ca.issue_cert(BOOKS)
    cert.write_bytes(b"".join(blob.bytes() for blob in other.cert_chain_pems))
    edge.gateway.signal(signal.SIGHUP)
    wait_until(lambda: "new certificate refused" in edge.gateway.log(), timeout=10, what="refusal")
    assert edge.served_certificate(BOOKS) == current
    assert edge.curl(BOOKS, "/still")[0] == 200
    key.write_bytes(other.private_key_pem.bytes())  # the key arrives: the pair is whole again
    wait_until(
        lambda: edge.served_certificate(BOOKS) != current, timeout=10, what="the completed pair"
    )


def test_an_intention_denying_the_gateway_answers_403_at_the_service(edge: Edge) -> None:
    done = cli(edge.server, "intention", "create", "--deny", "edge", "books")
    assert done.returncode == 0, done.stderr
    try:
        wait_until(lambda: edge.curl(BOOKS, "/x")[0] == 403, timeout=10, what="403 for edge")
        status, body = edge.curl(BOOKS, "/x")
        assert status == 403
        assert f"spiffe://{TD}/ns/default/svc/edge may not call books" in body
        # cart has no such intention: the gateway still reaches it.
        assert edge.curl(SHOP, "/cart/1")[0] == 200
    finally:
        cli(edge.server, "intention", "delete", "edge", "books")


SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: books.example.com\r\n\r\n"
ATTACKS = {
    "content-length-and-chunked": (
        b"POST /a HTTP/1.1\r\nHost: books.example.com\r\nContent-Length: 44\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED
    ),
    "two-content-lengths": (
        b"POST /a HTTP/1.1\r\nHost: books.example.com\r\nContent-Length: 0\r\n"
        b"Content-Length: 44\r\n\r\n" + SMUGGLED
    ),
    "obfuscated-transfer-encoding": (
        b"POST /a HTTP/1.1\r\nHost: books.example.com\r\nTransfer-Encoding: chunked, identity"
        b"\r\n\r\n0\r\n\r\n" + SMUGGLED
    ),
    "obs-fold": (
        b"POST /a HTTP/1.1\r\nHost: books.example.com\r\nContent-Length: 0\r\nX-A: a\r\n"
        b" Transfer-Encoding: chunked\r\n\r\n" + SMUGGLED
    ),
    "bad-chunk-size": (
        b"POST /a HTTP/1.1\r\nHost: books.example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"1000000000000000000000001\r\nx\r\n0\r\n\r\n" + SMUGGLED
    ),
    "head-too-large": b"GET /a HTTP/1.1\r\nHost: books.example.com\r\nX-Big: "
    + b"a" * 70000
    + b"\r\n\r\n",
}


def _raw_exchange(edge: Edge, payload: bytes) -> bytes:
    """Send `payload` on a fresh TLS connection for books; everything the gateway answers
    until it closes the connection."""
    ctx = ssl.create_default_context(cafile=str(edge.ca_file))
    with (
        socket.create_connection(("127.0.0.1", edge.port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname=BOOKS) as tls,
    ):
        try:
            tls.sendall(payload)
        except OSError:
            pass  # the gateway may close before taking it all (a head too large)
        answer = b""
        try:
            while chunk := tls.recv(65536):
                answer += chunk
        except (OSError, ssl.SSLError):
            pass
    return answer


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_smuggling_at_the_public_port_is_refused_and_never_desyncs(edge: Edge, attack: str) -> None:
    answer = _raw_exchange(edge, ATTACKS[attack])
    assert answer.startswith((b"HTTP/1.1 400", b"HTTP/1.1 431")), answer[:200]
    assert answer.count(b"HTTP/1.1 ") == 1, answer  # one answer, then the connection closed
    assert b"x-weft-proxy-error" in answer
    seen = httpx.get(f"http://127.0.0.1:{edge.apps['books']}/seen").json()
    assert "/smuggled" not in seen and "/a" not in seen
    assert edge.curl(BOOKS, "/after")[0] == 200  # the gateway serves on


def test_connections_over_the_per_client_cap_are_closed_before_any_tls(edge: Edge) -> None:
    held = [
        socket.create_connection(("127.0.0.1", edge.port), timeout=5) for _ in range(PER_CLIENT)
    ]
    try:
        wait_until(lambda: _open_public(edge) >= PER_CLIENT, timeout=5, what="the held connections")
        with socket.create_connection(("127.0.0.1", edge.port), timeout=5) as extra:
            assert extra.recv(1024) == b""  # closed at once, before any TLS
        metrics = httpx.get(f"http://{edge.admin}/metrics").text
        assert 'direction="gateway",reason="connection_limit"' in metrics
    finally:
        for sock in held:
            sock.close()
    wait_until(lambda: edge.curl(BOOKS, "/again")[0] == 200, timeout=10, what="room again")


def _open_public(edge: Edge) -> int:
    config = httpx.get(f"http://{edge.admin}/config").json()
    return int(config["gateway"]["open_connections"])


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"listen": "nowhere"}, "listen"),
        ({"certificates": ["/nonexistent.pem:/nonexistent.key"]}, "certificates"),
        ({"certificates": ["only-one-path.pem"]}, "certificates"),
        ({"default_certificate": "/elsewhere.pem"}, "default_certificate"),
        ({"max_connections": 0}, "max_connections"),
        ({"header_timeout": "forever"}, "header_timeout"),
        ({"certificates": ["{junk}:{junk}"]}, "certificates"),  # files, but no certificate
    ],
)
def test_bad_gateway_configuration_exits_64_naming_the_field(
    tmp_path: Path, settings: dict[str, object], field: str
) -> None:
    ca = trustme.CA()
    cert, key = _write_pair(ca, BOOKS, tmp_path)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    values: dict[str, object] = {
        "snapshot_url": "http://127.0.0.1:9/v1/agent/proxy/edge",
        "listen": "127.0.0.1:0",
        "admin": "127.0.0.1:0",
        "certificates": [f"{cert}:{key}"],
        **settings,
    }
    text = "[gateway]\n" + "".join(
        f"{k} = {json.dumps(v).replace('{junk}', str(junk))}\n" for k, v in values.items()
    )
    config = tmp_path / "gateway.toml"
    config.write_text(text)
    done = subprocess.run(
        [*weft_command(), "gateway", "--config", str(config)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 64, done.stderr
    assert f"weft gateway: {field}" in done.stderr, done.stderr
