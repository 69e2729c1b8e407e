"""SIGHUP reloads `weft server`'s HTTPS certificate only when the new files load completely;
a broken pair leaves the old certificate serving, checked with real TLS handshakes."""

from __future__ import annotations

import signal
import socket
import ssl
from pathlib import Path

from cryptography import x509

from tests.harness import TestCA, wait_until


def _served_serial(address: str, bundle: Path) -> int:
    """The serial of the certificate a real TLS handshake with the server presents, after
    checking a request over that connection is answered."""
    host, port = address.rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=str(bundle))
    ctx.check_hostname = False
    request = b"GET /v1/status/leader HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    raw = socket.create_connection((host, int(port)), timeout=5)
    with ctx.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
        tls.sendall(request)
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200"), answer[:100]
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_sighup_with_a_mismatched_key_keeps_serving_the_old_certificate(
    start_server, tmp_path: Path
) -> None:
    pki = TestCA()
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(pki.bundle_pem)
    old, new = pki.issue("server-old"), pki.issue("server-new")
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    cert.write_bytes(old.chain_pem)
    key.write_bytes(old.key_pem)
    server = start_server("--tls-cert-file", str(cert), "--tls-key-file", str(key))
    assert server.url.startswith("https://")
    assert _served_serial(server.address, bundle) == old.cert.serial_number

    # The new certificate arrives before its key: the reload must refuse the pair.
    cert.write_bytes(new.chain_pem)
    server.proc.signal(signal.SIGHUP)
    wait_until(lambda: "TLS reload refused" in server.log(), timeout=10, what="refused reload")
    assert "is not the key of the certificate" in server.log()
    for _ in range(3):  # every new handshake still gets the old certificate
        assert _served_serial(server.address, bundle) == old.cert.serial_number

    # An unreadable key is refused the same way, naming the file.
    key.write_bytes(b"not a key\n")
    server.proc.signal(signal.SIGHUP)
    wait_until(
        lambda: server.log().count("TLS reload refused") >= 2, timeout=10, what="second refusal"
    )
    assert _served_serial(server.address, bundle) == old.cert.serial_number

    # Once the key matches, the next SIGHUP switches certificates.
    key.write_bytes(new.key_pem)
    server.proc.signal(signal.SIGHUP)
    wait_until(
        lambda: _served_serial(server.address, bundle) == new.cert.serial_number,
        timeout=10,
        what="the new certificate to be served",
    )
    assert "reloaded TLS certificate" in server.log()
    assert server.proc.alive()


def test_server_with_a_mismatched_pair_at_start_exits_64_naming_the_key(
    start_server, tmp_path: Path
) -> None:
    import subprocess

    from tests.harness._procs import weft_command

    pki = TestCA()
    one, two = pki.issue("a"), pki.issue("b")
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    cert.write_bytes(one.chain_pem)
    key.write_bytes(two.key_pem)
    result = subprocess.run(
        [
            *weft_command(),
            "server",
            "--listen",
            "127.0.0.1:0",
            "--etcd-endpoints",
            "http://127.0.0.1:1",
            "--tls-cert-file",
            str(cert),
            "--tls-key-file",
            str(key),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 64
    assert "tls_key_file" in result.stderr and "is not the key of the certificate" in result.stderr
