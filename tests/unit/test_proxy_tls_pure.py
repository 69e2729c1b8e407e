"""What the proxy reads from certificates and handshake errors, without sockets."""

from __future__ import annotations

import datetime as dt
import ssl

import pytest
from cryptography.hazmat.primitives import serialization

from ca import SpiffeId
from proxy._stream import classify_handshake_error
from proxy._tls import certificate_info, peer_identity, pem_certificates
from tests.harness._pki import TestCA


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA("weft.test")


def test_validity_and_uri_sans_match_what_cryptography_reads(ca: TestCA) -> None:
    leaf = ca.issue("web", "shop")
    ders = pem_certificates(leaf.chain_pem.decode())
    assert len(ders) == 2
    info = certificate_info(ders[0])
    assert info.uris == ("spiffe://weft.test/ns/shop/svc/web",)
    assert info.not_after == leaf.cert.not_valid_after_utc.timestamp()
    assert info.not_before == leaf.cert.not_valid_before_utc.timestamp()
    assert certificate_info(ders[1]).uris == ()  # the intermediate has no SAN


def test_long_validity_uses_generalized_time(ca: TestCA) -> None:
    far = dt.datetime(2070, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    leaf = ca.issue("web", not_after=far)
    der = leaf.cert.public_bytes(serialization.Encoding.DER)
    assert certificate_info(der).not_after == far.timestamp()


def test_garbage_is_not_a_certificate() -> None:
    with pytest.raises(ValueError, match=r"X\.509"):
        certificate_info(b"\x30\x03\x02\x01")


def test_peer_identity_accepts_one_spiffe_id_of_the_trust_domain() -> None:
    uri = "spiffe://weft.test/ns/default/svc/a"
    assert peer_identity({"subjectAltName": (("URI", uri),)}, "weft.test") == (
        SpiffeId.parse(uri),
        "",
    )
    assert peer_identity({}, "weft.test") == (None, "no_client_certificate")
    assert peer_identity({"subjectAltName": (("DNS", "a"),)}, "weft.test")[1] == "no_spiffe_id"
    two = (("URI", uri), ("URI", "spiffe://weft.test/ns/default/svc/b"))
    assert peer_identity({"subjectAltName": two}, "weft.test")[1] == "several_spiffe_ids"
    assert peer_identity({"subjectAltName": (("URI", uri),)}, "other.test")[1] == (
        "foreign_trust_domain"
    )
    bad = (("URI", "spiffe://weft.test/ns/default/web"),)
    assert peer_identity({"subjectAltName": bad}, "weft.test")[1] == "invalid_spiffe_id"


def _ssl_error(reason: str) -> ssl.SSLError:
    exc = ssl.SSLError(1, reason)
    exc.reason = reason
    return exc


def _verify_error(code: int) -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(1, "certificate verify failed")
    exc.verify_code = code
    return exc


@pytest.mark.parametrize(
    ("exc", "label"),
    [
        (_ssl_error("PEER_DID_NOT_RETURN_A_CERTIFICATE"), "no_client_certificate"),
        (_verify_error(20), "unknown_ca"),
        (_verify_error(10), "expired_certificate"),
        (_verify_error(9), "certificate_not_yet_valid"),
        (_verify_error(26), "bad_certificate"),
        (_ssl_error("UNSUPPORTED_PROTOCOL"), "protocol_version"),
        (_ssl_error("HTTP_REQUEST"), "plaintext_http"),
        (_ssl_error("TLSV1_ALERT_UNKNOWN_CA"), "peer_refused_certificate"),
        (_ssl_error("TLSV13_ALERT_CERTIFICATE_REQUIRED"), "peer_requires_certificate"),
        (ssl.SSLEOFError(8, "eof"), "eof"),
        (ConnectionResetError(104, "reset"), "eof"),
        (_ssl_error("SOMETHING_ELSE"), "tls_error"),
    ],
)
def test_handshake_failures_get_stable_labels(exc: BaseException, label: str) -> None:
    assert classify_handshake_error(exc) == label
