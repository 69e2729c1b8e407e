"""The CA mounted on a real `weft server`: init, sign with node-scoped tokens, rotate, limits."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from ca import KeyEncryptionKey, SpiffeId, make_key_and_csr
from registry.etcd import EtcdClient
from tests.harness import TestCA, WeftServer, assert_documented, wait_until

TD = "mesh.test"


@pytest.fixture
def kek_file(tmp_path: Path) -> Path:
    path = tmp_path / "kek"
    path.write_text(KeyEncryptionKey.generate().to_text())
    return path


@pytest.fixture
def ca_server(start_server, kek_file: Path) -> WeftServer:
    server = start_server("--ca-kek-file", str(kek_file))
    resp = httpx.post(
        server.url + "/v1/ca/init", json={"trust_domain": TD}, headers=server.headers()
    )
    resp.raise_for_status()
    return server


def token(server: WeftServer, **body: str) -> str:
    resp = httpx.post(server.url + "/v1/tokens", json=body, headers=server.headers())
    resp.raise_for_status()
    return resp.json()["secret"]


def sign(
    server: WeftServer, secret: str | None, service: str, csr: bytes | str, **extra: str
) -> httpx.Response:
    body = {"csr": csr.decode() if isinstance(csr, bytes) else csr, "service": service, **extra}
    return httpx.post(
        server.url + "/v1/ca/sign", json=body, headers={"X-Consul-Token": secret} if secret else {}
    )


def weft(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "weft", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=60,
    )


def test_cli_issue_and_openssl_verify(ca_server: WeftServer, tmp_path: Path) -> None:
    env = {"WEFT_ADDR": ca_server.url, "WEFT_TOKEN": ca_server.token or ""}
    issued = weft("ca", "issue", "billing", "--out", str(tmp_path), env=env)
    assert issued.returncode == 0, issued.stderr
    assert f"spiffe://{TD}/ns/default/svc/billing" in issued.stdout
    assert (tmp_path / "billing.key").stat().st_mode & 0o777 == 0o600
    chain = (tmp_path / "billing.crt").read_text()
    marker = "-----END CERTIFICATE-----\n"
    leaf, rest = chain.split(marker, 1)
    (tmp_path / "leaf.pem").write_text(leaf + marker)
    (tmp_path / "intermediate.pem").write_text(rest)
    verify = subprocess.run(
        [
            "openssl",
            "verify",
            "-CAfile",
            str(tmp_path / "bundle.pem"),
            "-untrusted",
            str(tmp_path / "intermediate.pem"),
            str(tmp_path / "leaf.pem"),
        ],
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0 and "OK" in verify.stdout, verify.stderr
    text = subprocess.run(
        ["openssl", "x509", "-in", str(tmp_path / "leaf.pem"), "-noout", "-text"],
        capture_output=True,
        text=True,
    ).stdout
    assert f"URI:spiffe://{TD}/ns/default/svc/billing" in text
    assert "Digital Signature" in text
    assert "TLS Web Server Authentication, TLS Web Client Authentication" in text
    status = weft("ca", "status", env=env)
    assert TD in status.stdout and "sha256 fingerprint" in status.stdout


def test_agent_token_gets_certificates_only_for_services_on_its_node(
    ca_server: WeftServer,
) -> None:
    agent_a = token(ca_server, role="agent", node="node-a")
    agent_b = token(ca_server, role="agent", node="node-b")
    httpx.put(
        ca_server.url + "/v1/registry/instances",
        headers={"X-Consul-Token": agent_b},
        json={"service": "payments", "port": 8443},
    ).raise_for_status()
    csr = make_key_and_csr(SpiffeId(TD, "default", "payments")).csr_pem
    denied = sign(ca_server, agent_a, "payments", csr)
    assert denied.status_code == 403
    assert "node-a" in denied.json()["error"]["message"]
    assert "certificate_pem" not in denied.text
    allowed = sign(ca_server, agent_b, "payments", csr)
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["spiffe_id"] == f"spiffe://{TD}/ns/default/svc/payments"
    reader = token(ca_server, role="read")
    assert sign(ca_server, reader, "payments", csr).status_code == 403
    assert sign(ca_server, None, "payments", csr).status_code == 403


def test_csr_asking_for_ca_and_extra_names_gets_a_plain_leaf(ca_server: WeftServer) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "evil")]))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.UniformResourceIdentifier(f"spiffe://{TD}/ns/default/svc/api"),
                    x509.DNSName("bank.example.com"),
                ]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    resp = sign(ca_server, ca_server.token, "api", csr.public_bytes(serialization.Encoding.PEM))
    assert resp.status_code == 200, resp.text
    leaf = x509.load_pem_x509_certificate(resp.json()["certificate_pem"].encode())
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == []
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        f"spiffe://{TD}/ns/default/svc/api"
    ]


@pytest.mark.parametrize(
    ("csr", "words"),
    [
        ("not a csr at all", "PEM"),
        ("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", "CSR"),
    ],
)
def test_garbage_csr_is_a_400_naming_the_problem(
    ca_server: WeftServer, csr: str, words: str
) -> None:
    resp = sign(ca_server, ca_server.token, "api", csr)
    assert resp.status_code == 400
    assert words in resp.json()["error"]["message"]


async def test_signing_key_is_not_readable_in_etcd(
    ca_server: WeftServer, etcd, prefix, kek_file: Path
) -> None:
    async with EtcdClient(etcd.endpoints) as client:
        stored = await client.range(prefix + "ca/", prefix=True)
    raw = b"".join(kv.value for kv in stored.kvs)
    assert raw, "the CA state should be in etcd"
    assert b"PRIVATE KEY" not in raw
    assert kek_file.read_text().strip().encode() not in raw
    assert b"BEGIN CERTIFICATE" in raw  # the bundle is stored in the clear


def test_wrong_key_encryption_key_refuses_to_start(
    ca_server: WeftServer, etcd, prefix, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong-kek"
    wrong.write_text(KeyEncryptionKey.generate().to_text())
    other = WeftServer(
        etcd.endpoints, prefix, tmp_path, args=["--ca-kek-file", str(wrong)], bootstrap=False
    )
    with pytest.raises(AssertionError, match="exited with 1"):
        other.start(timeout=20)
    assert "key-encryption key" in other.log()
    other.stop()
    bad = tmp_path / "bad-kek"
    bad.write_text("too short")
    result = weft(
        "server",
        "--etcd-endpoints",
        etcd.url,
        "--etcd-prefix",
        prefix,
        "--ca-kek-file",
        str(bad),
        env={},
    )
    assert result.returncode == 64 and "bad-kek" in result.stderr


def test_signing_is_rate_limited_with_a_clear_429(start_server, kek_file: Path) -> None:
    server = start_server(
        "--ca-kek-file", str(kek_file), "--ca-sign-rate", "0.5", "--ca-sign-burst", "2"
    )
    httpx.post(
        server.url + "/v1/ca/init", json={"trust_domain": TD}, headers=server.headers()
    ).raise_for_status()
    csr = make_key_and_csr(SpiffeId(TD, "default", "api")).csr_pem
    codes = [sign(server, server.token, "api", csr) for _ in range(3)]
    assert [c.status_code for c in codes] == [200, 200, 429]
    assert int(codes[2].headers["Retry-After"]) >= 1
    assert "retry" in codes[2].json()["error"]["message"].lower()


def test_consul_roots_shape(ca_server: WeftServer) -> None:
    resp = httpx.get(ca_server.url + "/v1/agent/connect/ca/roots")
    assert resp.status_code == 200 and int(resp.headers["X-Consul-Index"]) >= 1
    body = resp.json()
    assert body["TrustDomain"] == TD
    active = [r for r in body["Roots"] if r["Active"]]
    assert len(active) == 1 and active[0]["ID"] == body["ActiveRootID"]
    assert active[0]["RootCert"].startswith("-----BEGIN CERTIFICATE-----")


def test_ca_not_initialised_or_not_configured_is_503(start_server, kek_file: Path) -> None:
    bare = start_server()
    resp = httpx.get(bare.url + "/v1/ca/roots")
    assert resp.status_code == 503 and "key-encryption key" in resp.text
    fresh = start_server("--ca-kek-file", str(kek_file), prefix_="/weft-test-ca-fresh/")
    resp = httpx.get(fresh.url + "/v1/ca/roots")
    assert resp.status_code == 503 and "weft ca init" in resp.text


def test_rotation_keeps_the_old_root_until_its_leaves_expire(
    start_server, kek_file: Path, tmp_path: Path
) -> None:
    server = start_server(
        "--ca-kek-file", str(kek_file), "--ca-leaf-ttl", "30s", "--ca-allow-short-leaves"
    )
    env = {"WEFT_ADDR": server.url, "WEFT_TOKEN": server.token or ""}
    assert weft("ca", "init", "--trust-domain", TD, env=env).returncode == 0
    assert weft("ca", "issue", "web", "--out", str(tmp_path), env=env).returncode == 0
    old_root = httpx.get(server.url + "/v1/ca/roots").json()["active_root_id"]
    rotated = weft("ca", "rotate", env=env)
    assert rotated.returncode == 0, rotated.stderr
    bundle = httpx.get(server.url + "/v1/ca/roots").json()
    assert [r["id"] for r in bundle["roots"]][1] == old_root
    assert bundle["active_root_id"] != old_root
    # The leaf issued under the old root still verifies against the bundle in force...
    (tmp_path / "both.pem").write_text(bundle["bundle_pem"])
    verify = subprocess.run(
        [
            "openssl",
            "verify",
            "-CAfile",
            str(tmp_path / "both.pem"),
            "-untrusted",
            str(tmp_path / "web.crt"),
            str(tmp_path / "web.crt"),
        ],
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0, verify.stderr
    # ...and once every old-root leaf has expired, the old root leaves the bundle by itself.
    started = time.monotonic()
    wait_until(
        lambda: (
            [r["id"] for r in httpx.get(server.url + "/v1/ca/roots").json()["roots"]]
            == [bundle["active_root_id"]]
        ),
        timeout=150,
        interval=1,
        what="the retired root to be dropped",
    )
    assert time.monotonic() - started > 10


def _server_csr(key: object) -> str:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "weft-server")])
    )
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    csr = builder.sign(key, algorithm)  # type: ignore[arg-type]
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def test_server_certificates_are_for_operators_and_carry_the_names_asked(
    ca_server: WeftServer,
) -> None:
    body = {
        "csr": _server_csr(ec.generate_private_key(ec.SECP256R1())),
        "dns_names": ["weft.example"],
        "ip_addresses": ["127.0.0.1"],
    }
    url = ca_server.url + "/v1/ca/server-certificate"
    agent = token(ca_server, role="agent", node="vm-1")
    refused = httpx.post(url, json=body, headers={"X-Consul-Token": agent})
    assert refused.status_code == 403

    resp = httpx.post(url, json=body, headers=ca_server.headers())
    assert resp.status_code == 200, resp.text
    cert = x509.load_pem_x509_certificate(resp.json()["certificate_pem"].encode())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["weft.example"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]

    body["csr"] = _server_csr(ed25519.Ed25519PrivateKey.generate())
    resp = httpx.post(url, json=body, headers=ca_server.headers())
    assert resp.status_code == 400
    assert "EC P-256 or RSA" in resp.json()["error"]["message"]


def test_bring_your_own_ca_imports_an_existing_intermediate(
    start_server, kek_file: Path, tmp_path: Path
) -> None:
    server = start_server("--ca-kek-file", str(kek_file))
    env = {"WEFT_ADDR": server.url, "WEFT_TOKEN": server.token or ""}
    theirs = TestCA(TD, name="Corp PKI")
    root, cert, key = theirs.write_intermediate(tmp_path / "corp")

    half = weft("ca", "init", "--trust-domain", TD, "--root-cert", str(root), env=env)
    assert half.returncode == 64 and "--intermediate-key" in half.stderr

    init = weft(
        "ca", "init", "--trust-domain", TD, "--root-cert", str(root),
        "--intermediate-cert", str(cert), "--intermediate-key", str(key), env=env,
    )  # fmt: skip
    assert init.returncode == 0, init.stderr
    out = tmp_path / "leaf"
    issued = weft("ca", "issue", "billing", "--out", str(out), env=env)
    assert issued.returncode == 0, issued.stderr
    # The leaf chains to the imported root, and Weft made no root of its own.
    leaf = x509.load_pem_x509_certificate((out / "billing.crt").read_bytes())
    assert leaf.issuer == theirs.intermediate.subject
    assert (out / "bundle.pem").read_bytes().strip() == root.read_bytes().strip()
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", str(root), "-untrusted", str(cert),
         str(out / "billing.crt")],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stderr


def test_ca_answers_match_the_openapi_document(start_server, kek_file: Path) -> None:
    # The CA's answers were declared as "some object"; each is declared as it is now.
    server = start_server("--ca-kek-file", str(kek_file))
    doc = httpx.get(server.url + "/v1/openapi.json").json()
    with httpx.Client(base_url=server.url, headers=server.headers()) as http:

        def check(method: str, template: str, resp: httpx.Response) -> httpx.Response:
            assert resp.status_code == 200, resp.text
            assert_documented(doc, method, template, resp)
            return resp

        check("POST", "/v1/ca/init", http.post("/v1/ca/init", json={"trust_domain": TD}))
        check("POST", "/v1/ca/rotate", http.post("/v1/ca/rotate"))
        check("GET", "/v1/ca/roots", http.get("/v1/ca/roots"))
        check("GET", "/v1/agent/connect/ca/roots", http.get("/v1/agent/connect/ca/roots"))
        check("GET", "/v1/ca/status", http.get("/v1/ca/status"))
        csr = make_key_and_csr(SpiffeId(TD, "default", "payments")).csr_pem
        check("POST", "/v1/ca/sign", sign(server, server.token, "payments", csr))
