"""verify_peer: the rules a TLS-verified peer certificate must also meet to be a mesh peer."""

from __future__ import annotations

import re
import ssl
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ca import (
    PeerRejected,
    PeerRule,
    SpiffeId,
    explain_tls_failure,
    generate_material,
    make_key_and_csr,
    verify_peer,
)
from ca._signer import Signer

NOW = datetime(2030, 1, 1, tzinfo=UTC)
TD = "weft.local"
WEB = SpiffeId(TD, "default", "web")
DB = SpiffeId(TD, "default", "db")


@pytest.fixture(scope="module")
def signer() -> Signer:
    m = generate_material(TD, NOW)
    return Signer(TD, m.root_id, m.root, m.chain, m.issuer())


def _der(signer: Signer, identity: SpiffeId, lifetime: timedelta = timedelta(hours=1)) -> bytes:
    issued = signer.issue_leaf(
        x509.load_pem_x509_csr(make_key_and_csr(identity).csr_pem).public_key(),  # type: ignore[arg-type]
        identity,
        NOW,
        lifetime,
    )
    cert = x509.load_pem_x509_certificate(issued.certificate_pem.encode())
    return cert.public_bytes(serialization.Encoding.DER)


def _custom(sans: list[x509.GeneralName] | None, ca: bool = False) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), True)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), False)
    return builder.sign(key, hashes.SHA256())


def _rule(certificate, **kw) -> PeerRule:
    with pytest.raises(PeerRejected) as caught:
        verify_peer(certificate, kw.pop("trust_domain", TD), **kw)
    return caught.value.rule


def test_a_mesh_leaf_yields_its_spiffe_id(signer: Signer) -> None:
    assert verify_peer(_der(signer, WEB), TD) == WEB
    assert verify_peer(_der(signer, WEB), TD, expected=WEB) == WEB
    assert verify_peer(_der(signer, WEB), TD, expected=[DB, WEB]) == WEB


def test_a_peer_of_another_trust_domain_is_refused_naming_both(signer: Signer) -> None:
    with pytest.raises(
        PeerRejected, match=r"trust domain 'weft\.local'.*expected.*'other\.example'"
    ):
        verify_peer(_der(signer, WEB), "other.example")
    assert _rule(_der(signer, WEB), trust_domain="other.example") is PeerRule.TRUST_DOMAIN


def test_a_peer_that_is_not_the_expected_service_is_refused(signer: Signer) -> None:
    with pytest.raises(
        PeerRejected,
        match=re.escape(f"peer is {WEB.uri}; expected {DB.uri}"),
    ):
        verify_peer(_der(signer, WEB), TD, expected=DB)
    assert _rule(_der(signer, WEB), expected=[DB]) is PeerRule.IDENTITY


def test_validity_is_checked_when_a_time_is_given(signer: Signer) -> None:
    der = _der(signer, WEB, timedelta(hours=1))
    assert verify_peer(der, TD, now=NOW + timedelta(minutes=59)) == WEB
    assert _rule(der, now=NOW + timedelta(hours=1)) is PeerRule.EXPIRED
    assert _rule(der, now=NOW - timedelta(minutes=2)) is PeerRule.NOT_YET_VALID


@pytest.mark.parametrize(
    ("sans", "ca", "rule"),
    [
        (None, False, PeerRule.NO_SPIFFE_ID),
        ([x509.DNSName("web.example")], False, PeerRule.NO_SPIFFE_ID),
        ([x509.UniformResourceIdentifier("https://web.example/")], False, PeerRule.NO_SPIFFE_ID),
        (
            [x509.UniformResourceIdentifier(WEB.uri), x509.UniformResourceIdentifier(DB.uri)],
            False,
            PeerRule.SEVERAL_URIS,
        ),
        ([x509.UniformResourceIdentifier(WEB.uri)], True, PeerRule.IS_CA),
    ],
)
def test_certificates_that_are_no_mesh_leaf_are_refused(
    sans: list[x509.GeneralName] | None, ca: bool, rule: PeerRule
) -> None:
    assert _rule(_custom(sans, ca)) is rule


def test_no_certificate_and_garbage_are_refused() -> None:
    assert _rule(None) is PeerRule.NO_CERTIFICATE
    assert _rule(b"\x30\x03garbage") is PeerRule.MALFORMED


def _ssl_error(reason: str) -> ssl.SSLError:
    error = ssl.SSLError(1, f"[SSL: {reason}] ...")
    error.reason = reason  # what OpenSSL sets on a received alert
    return error


@pytest.mark.parametrize(
    ("reason", "text"),
    [
        ("SSLV3_ALERT_CERTIFICATE_EXPIRED", "it has expired"),
        ("TLSV1_ALERT_UNKNOWN_CA", "it is signed by a CA the peer does not trust"),
        ("TLSV13_ALERT_CERTIFICATE_REQUIRED", "none was sent, and the peer requires one"),
    ],
)
def test_alerts_from_the_peer_say_why_it_rejected_our_certificate(reason: str, text: str) -> None:
    wrapped = RuntimeError("broken")
    wrapped.__cause__ = _ssl_error(reason)
    explained = explain_tls_failure(wrapped)
    assert explained.rule is PeerRule.REJECTED_BY_PEER
    assert str(explained).startswith("the peer rejected our certificate: " + text)


def test_a_handshake_cut_short_is_reported_as_rejected_by_the_peer() -> None:
    explained = explain_tls_failure(ssl.SSLEOFError(8, "EOF occurred in violation of protocol"))
    assert explained.rule is PeerRule.REJECTED_BY_PEER and "closed the connection" in str(explained)


def test_other_failures_are_handshake_failures() -> None:
    assert explain_tls_failure(OSError("reset")).rule is PeerRule.HANDSHAKE
    assert explain_tls_failure(_ssl_error("WRONG_VERSION_NUMBER")).rule is PeerRule.HANDSHAKE
