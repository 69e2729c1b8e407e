"""What the CA puts in the certificates it makes: roots, intermediates, leaves, server certs."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from ca import (
    InvalidIdentity,
    InvalidLifetime,
    KeyType,
    SpiffeId,
    generate_material,
    make_key_and_csr,
)
from ca._signer import Signer

NOW = datetime(2030, 1, 1, tzinfo=UTC)
WEB = SpiffeId("weft.local", "default", "web")


def _signer(root_key_type: KeyType = KeyType.EC_P256) -> Signer:
    m = generate_material("weft.local", NOW, root_key_type)
    return Signer("weft.local", m.root_id, m.root, m.chain, m.issuer())


@pytest.fixture(scope="module")
def signer() -> Signer:
    return _signer()


def _leaf(signer: Signer, lifetime: timedelta = timedelta(hours=24)) -> x509.Certificate:
    issued = signer.sign_csr(make_key_and_csr(WEB).csr_pem, WEB, NOW, lifetime)
    return x509.load_pem_x509_certificate(issued.certificate_pem.encode())


def test_a_leaf_carries_the_spiffe_id_as_its_only_uri_san(signer: Signer) -> None:
    san = _leaf(signer).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert list(san.value) == [x509.UniformResourceIdentifier(WEB.uri)]


def test_a_leaf_is_for_signatures_and_both_tls_roles_and_is_no_ca(signer: Signer) -> None:
    leaf = _leaf(signer)
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature
    assert not (usage.value.key_encipherment or usage.value.key_cert_sign or usage.value.crl_sign)
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    constraints = leaf.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca is False


def test_a_leaf_starts_a_minute_early_and_lives_its_lifetime(signer: Signer) -> None:
    leaf = _leaf(signer, timedelta(hours=3))
    assert leaf.not_valid_before_utc == NOW - timedelta(minutes=1)
    assert leaf.not_valid_after_utc == NOW + timedelta(hours=3)


def test_a_leaf_chains_to_the_intermediate_and_the_intermediate_to_the_root() -> None:
    m = generate_material("weft.local", NOW)
    signer = Signer("weft.local", m.root_id, m.root, m.chain, m.issuer())
    leaf = _leaf(signer)
    leaf.verify_directly_issued_by(m.chain[0])
    m.chain[0].verify_directly_issued_by(m.root)
    constraints = m.chain[0].extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca and constraints.path_length == 0


def test_the_issued_chain_is_what_the_leaf_presents(signer: Signer) -> None:
    issued = signer.sign_csr(make_key_and_csr(WEB).csr_pem, WEB, NOW, timedelta(hours=1))
    assert issued.chain_pem == signer.chain_pem
    assert issued.full_chain_pem.startswith(issued.certificate_pem)
    assert issued.identity == WEB and issued.root_id == signer.root_id


@pytest.mark.parametrize(("key_type", "bits"), [(KeyType.RSA_2048, 2048), (KeyType.RSA_3072, 3072)])
def test_rsa_roots_are_selectable_while_the_intermediate_stays_p256(
    key_type: KeyType, bits: int
) -> None:
    m = generate_material("weft.local", NOW, key_type)
    root_key = m.root.public_key()
    assert isinstance(root_key, rsa.RSAPublicKey) and root_key.key_size == bits
    assert isinstance(m.chain[0].public_key(), ec.EllipticCurvePublicKey)
    m.chain[0].verify_directly_issued_by(m.root)


def test_the_default_root_is_ec_p256_and_self_signed() -> None:
    m = generate_material("weft.local", NOW)
    key = m.root.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    m.root.verify_directly_issued_by(m.root)


def test_a_leaf_never_outlives_the_intermediate() -> None:
    m = generate_material("weft.local", NOW)
    signer = Signer("weft.local", m.root_id, m.root, m.chain, m.issuer())
    late = m.chain[0].not_valid_after_utc - timedelta(hours=2)
    issued = signer.issue_leaf(m.root.public_key(), WEB, late, timedelta(hours=24))  # type: ignore[arg-type]
    assert issued.not_after == m.chain[0].not_valid_after_utc
    with pytest.raises(InvalidLifetime, match="rotate the CA"):
        signer.issue_leaf(m.root.public_key(), WEB, late + timedelta(hours=3), timedelta(hours=1))  # type: ignore[arg-type]


def test_the_signer_issues_only_in_its_trust_domain(signer: Signer) -> None:
    other = SpiffeId("other.example", "default", "web")
    with pytest.raises(InvalidIdentity, match=r"only for 'weft\.local'"):
        signer.sign_csr(make_key_and_csr(other).csr_pem, other, NOW, timedelta(hours=1))


def test_a_server_certificate_names_dns_and_ip_addresses(signer: Signer) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    issued = signer.issue_server_certificate(
        key.public_key(),
        ["weft.example.com", "localhost"],
        ["127.0.0.1", "::1"],
        NOW,
        timedelta(days=7),
    )
    assert issued.identity is None
    cert = x509.load_pem_x509_certificate(issued.certificate_pem.encode())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["weft.example.com", "localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == []


def test_an_rsa_server_certificate_also_allows_key_encipherment(signer: Signer) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    issued = signer.issue_server_certificate(key.public_key(), ["weft"], [], NOW, timedelta(days=1))
    cert = x509.load_pem_x509_certificate(issued.certificate_pem.encode())
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.key_encipherment


@pytest.mark.parametrize(
    ("dns", "ips", "complaint"),
    [
        (["bad name"], [], "not a DNS name"),
        (["-x.example"], [], "not a DNS name"),
        ([], ["300.1.1.1"], "not an IP address"),
        ([], [], "at least one"),
    ],
)
def test_bad_server_names_are_refused(
    signer: Signer, dns: list[str], ips: list[str], complaint: str
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(InvalidIdentity, match=complaint):
        signer.issue_server_certificate(key.public_key(), dns, ips, NOW, timedelta(days=1))


def test_every_generated_ca_has_a_distinct_name() -> None:
    a, b = generate_material("weft.local", NOW), generate_material("weft.local", NOW)
    assert a.root.subject != b.root.subject
    assert a.chain[0].subject != b.chain[0].subject
