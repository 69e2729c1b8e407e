"""CSR checks: what the CA takes from a CSR (its key, a matching SPIFFE ID) and what it refuses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from ca import (
    IdentityMismatch,
    InvalidCSR,
    KeyType,
    SpiffeId,
    UnsupportedKey,
    check_csr,
    generate_material,
    make_csr,
    make_key_and_csr,
)
from ca._signer import Signer

WEB = SpiffeId("weft.local", "default", "web")
NOW = datetime(2030, 1, 1, tzinfo=UTC)


def _csr(key, *, sans: list[x509.GeneralName] | None = None, ca: bool = False) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "anything")])
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def signer() -> Signer:
    material = generate_material("weft.local", NOW)
    return Signer("weft.local", material.root_id, material.root, material.chain, material.issuer())


def test_a_csr_made_by_make_key_and_csr_is_accepted_for_its_identity() -> None:
    made = make_key_and_csr(WEB)
    checked = check_csr(made.csr_pem, WEB)
    assert checked.identity == WEB
    key = serialization.load_pem_private_key(made.key_pem, None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert checked.public_key.public_numbers() == key.public_key().public_numbers()


def test_a_csr_without_a_spiffe_id_is_accepted_for_the_requested_identity() -> None:
    assert check_csr(_csr(ec.generate_private_key(ec.SECP256R1())), WEB).identity == WEB


def test_rsa_csrs_of_2048_bits_and_more_are_accepted() -> None:
    made = make_key_and_csr(WEB, KeyType.RSA_2048)
    assert isinstance(check_csr(made.csr_pem, WEB).public_key, rsa.RSAPublicKey)


@pytest.mark.parametrize(
    ("data", "complaint"),
    [
        (b"", "not PEM"),
        (b"hello world", "not PEM"),
        (
            b"-----BEGIN CERTIFICATE REQUEST-----\nnot base64!!\n"
            b"-----END CERTIFICATE REQUEST-----\n",
            "could not be parsed",
        ),
        (
            b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
            "could not be parsed",
        ),
        (b"-----BEGIN CERTIFICATE REQUEST-----\n" + b"A" * 20000, "at most"),
    ],
)
def test_garbage_csrs_are_refused_naming_the_problem(data: bytes, complaint: str) -> None:
    with pytest.raises(InvalidCSR, match=complaint):
        check_csr(data, WEB)


def test_a_csr_whose_signature_does_not_verify_is_refused() -> None:
    good = x509.load_pem_x509_csr(_csr(ec.generate_private_key(ec.SECP256R1())))
    der = bytearray(good.public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01  # flip a bit of the signature
    tampered = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(InvalidCSR, match="signature does not verify"):
        check_csr(tampered, WEB)


@pytest.mark.parametrize(
    ("key", "complaint"),
    [
        (ec.generate_private_key(ec.SECP384R1()), "EC P-384"),
        (rsa.generate_private_key(public_exponent=65537, key_size=1024), "RSA 1024"),
        (ed25519.Ed25519PrivateKey.generate(), "Ed25519"),
    ],
)
def test_unsupported_keys_are_refused_naming_the_key_and_what_is_accepted(
    key: object, complaint: str
) -> None:
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    pem = builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM)  # type: ignore[arg-type]
    with pytest.raises(UnsupportedKey, match=complaint) as caught:
        check_csr(pem, WEB)
    assert "EC P-256 or RSA of 2048-8192 bits" in str(caught.value)


def test_a_csr_for_another_identity_is_refused() -> None:
    other = SpiffeId("weft.local", "default", "db")
    with pytest.raises(IdentityMismatch, match=r"asks for spiffe://weft\.local/ns/default/svc/db"):
        check_csr(make_key_and_csr(other).csr_pem, WEB)


def test_a_csr_with_a_second_spiffe_id_is_refused() -> None:
    sans: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(WEB.uri),
        x509.UniformResourceIdentifier("spiffe://weft.local/ns/default/svc/admin"),
    ]
    with pytest.raises(IdentityMismatch, match="svc/admin"):
        check_csr(_csr(ec.generate_private_key(ec.SECP256R1()), sans=sans), WEB)


def test_ca_true_and_extra_sans_in_a_csr_are_not_copied_into_the_leaf(signer: Signer) -> None:
    sans: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(WEB.uri),
        x509.UniformResourceIdentifier("https://evil.example/"),
        x509.DNSName("bank.example.com"),
        x509.RFC822Name("root@example.com"),
    ]
    pem = _csr(ec.generate_private_key(ec.SECP256R1()), sans=sans, ca=True)
    issued = signer.sign_csr(pem, WEB, NOW, timedelta(hours=24))
    leaf = x509.load_pem_x509_certificate(issued.certificate_pem.encode())
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(san) == [x509.UniformResourceIdentifier(WEB.uri)]
    assert leaf.subject == x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "web")])


def test_make_csr_carries_the_identity_as_its_uri_san() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.load_pem_x509_csr(make_csr(key, WEB))
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [WEB.uri]
