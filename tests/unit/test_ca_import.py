"""Bring your own CA: importing an existing PKI's root, intermediate(s) and intermediate key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ca import (
    CertificateAuthority,
    ImportedCA,
    InvalidCAMaterial,
    KeyEncryptionKey,
    MemoryCAStore,
    Operator,
    RootKeyRequired,
    SpiffeId,
    UnsupportedKey,
    import_material,
    make_key_and_csr,
)
from tests.harness import FakeClock

NOW = datetime(2030, 1, 1, tzinfo=UTC)
WEB = SpiffeId("weft.local", "default", "web")


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class PKI:
    """A company PKI made with plain `cryptography`, independent of the CA's own builders."""

    def __init__(self, name: str = "Corp", curve: ec.EllipticCurve | None = None) -> None:
        self.root_key = ec.generate_private_key(curve or ec.SECP384R1())
        self.root = self.cert(
            name + " Root",
            self.root_key.public_key(),
            name + " Root",
            self.root_key,
            ca=True,
            path_length=None,
        )

    @staticmethod
    def cert(
        subject,
        public_key,
        issuer,
        issuer_key,
        *,
        ca,
        path_length=0,
        start=NOW - timedelta(days=1),
        end=NOW + timedelta(days=365),
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(
                x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), True
            )
        )
        return builder.sign(issuer_key, hashes.SHA384())

    def intermediate(self, **kw) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        return self.cert(
            "Corp Mesh CA",
            key.public_key(),
            self.root.subject.rfc4514_string()[3:],
            self.root_key,
            ca=True,
            **kw,
        ), key


def test_a_matching_chain_imports_and_signs_leaves_that_chain_to_the_imported_root() -> None:
    pki = PKI()
    inter, key = pki.intermediate()
    material = import_material(_pem(pki.root), _pem(inter), _key_pem(key), NOW)
    assert material.root == pki.root and material.chain == (inter,) and material.root_key is None


async def test_an_imported_ca_serves_as_the_mesh_ca() -> None:
    pki = PKI()
    inter, key = pki.intermediate()
    clock = FakeClock(NOW)
    ca = CertificateAuthority(MemoryCAStore(), KeyEncryptionKey.generate(), clock=clock)
    result = await ca.import_ca(
        "weft.local", ImportedCA(_pem(pki.root), _pem(inter), _key_pem(key))
    )
    assert result.root_key_pem is None and ca.status().origin == "imported"
    assert result.bundle.active.certificate_pem.encode() == _pem(pki.root)
    issued = await ca.sign(make_key_and_csr(WEB).csr_pem, WEB, Operator())
    leaf = x509.load_pem_x509_certificate(issued.certificate_pem.encode())
    leaf.verify_directly_issued_by(inter)
    assert issued.not_after <= inter.not_valid_after_utc
    with pytest.raises(RootKeyRequired, match="imported"):
        await ca.rotate()  # a new root needs the imported root's key to cross-sign it


async def test_an_imported_ca_can_move_to_a_new_intermediate_of_the_same_root() -> None:
    pki = PKI()
    inter, key = pki.intermediate()
    ca = CertificateAuthority(MemoryCAStore(), KeyEncryptionKey.generate(), clock=FakeClock(NOW))
    await ca.import_ca("weft.local", ImportedCA(_pem(pki.root), _pem(inter), _key_pem(key)))
    inter2, key2 = pki.intermediate()
    rotated = await ca.rotate(replacement=ImportedCA(_pem(pki.root), _pem(inter2), _key_pem(key2)))
    assert rotated.previous_root_drop_after is None and len(rotated.bundle.roots) == 1
    issued = await ca.sign(make_key_and_csr(WEB).csr_pem, WEB, Operator())
    x509.load_pem_x509_certificate(issued.certificate_pem.encode()).verify_directly_issued_by(
        inter2
    )


def test_a_chain_of_two_intermediates_imports() -> None:
    pki = PKI()
    upper, upper_key = pki.intermediate(path_length=1)
    lower_key = ec.generate_private_key(ec.SECP256R1())
    lower = PKI.cert("Corp Team CA", lower_key.public_key(), "Corp Mesh CA", upper_key, ca=True)
    material = import_material(_pem(pki.root), _pem(lower) + _pem(upper), _key_pem(lower_key), NOW)
    assert material.chain == (lower, upper)


def _refused(
    root: bytes, chain: bytes, key: bytes, complaint: str, error=InvalidCAMaterial
) -> None:
    with pytest.raises(error, match=complaint):
        import_material(root, chain, key, NOW)


def test_a_key_that_does_not_match_the_intermediate_is_refused() -> None:
    pki = PKI()
    inter, _ = pki.intermediate()
    other = ec.generate_private_key(ec.SECP256R1())
    _refused(_pem(pki.root), _pem(inter), _key_pem(other), "does not match the intermediate")


def test_an_intermediate_of_another_root_is_refused() -> None:
    pki, other = PKI(), PKI("Other")
    inter, key = other.intermediate()
    _refused(_pem(pki.root), _pem(inter), _key_pem(key), "is not signed by the root")


def test_an_intermediate_given_as_the_root_is_refused() -> None:
    pki = PKI()
    inter, key = pki.intermediate()
    _refused(_pem(inter), _pem(inter), _key_pem(key), "is not self-issued")


def test_a_leaf_given_as_the_intermediate_is_refused() -> None:
    pki = PKI()
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = PKI.cert("leaf", key.public_key(), "Corp Root", pki.root_key, ca=False)
    _refused(_pem(pki.root), _pem(leaf), _key_pem(key), "not a CA certificate")


def test_an_expired_intermediate_is_refused_with_its_dates() -> None:
    pki = PKI()
    inter, key = pki.intermediate(start=NOW - timedelta(days=30), end=NOW - timedelta(days=1))
    _refused(_pem(pki.root), _pem(inter), _key_pem(key), "does not include now")


def test_a_root_whose_path_length_forbids_the_chain_is_refused() -> None:
    pki = PKI()
    pki.root = PKI.cert(
        "Corp Root", pki.root_key.public_key(), "Corp Root", pki.root_key, ca=True, path_length=0
    )
    upper, upper_key = pki.intermediate(path_length=1)
    lower_key = ec.generate_private_key(ec.SECP256R1())
    lower = PKI.cert("Corp Team CA", lower_key.public_key(), "Corp Mesh CA", upper_key, ca=True)
    _refused(_pem(pki.root), _pem(lower) + _pem(upper), _key_pem(lower_key), "path length 0")


def test_unreadable_inputs_are_refused_naming_the_file() -> None:
    pki = PKI()
    inter, key = pki.intermediate()
    _refused(b"junk", _pem(inter), _key_pem(key), "root certificate is not PEM")
    _refused(_pem(pki.root) * 2, _pem(inter), _key_pem(key), "holds 2 certificates")
    _refused(_pem(pki.root), b"junk", _key_pem(key), "intermediate certificate is not PEM")
    _refused(_pem(pki.root), _pem(inter), b"junk", "intermediate key is not PEM", UnsupportedKey)
