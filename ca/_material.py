"""CA material: a root, the chain down to the signing intermediate, and the keys in hand.

Made fresh (`generate_material`) or brought by the operator (`import_material`: an existing PKI's
root certificate, intermediate certificate(s) and the intermediate's key). Either way the result
is checked to chain and to match before anything is stored, and can be sealed into a RootRecord.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ._errors import InvalidCAMaterial, UnsupportedKey
from ._issuing import Issuer, make_intermediate, make_root
from ._kek import KeyEncryptionKey
from ._keys import (
    KeyType,
    PrivateKey,
    describe_key,
    load_private_key,
    private_key_der,
    same_public_key,
)
from ._state import Origin, RootRecord, RootStatus, root_key_context, signing_key_context

_PEM = serialization.Encoding.PEM


def certificate_pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(_PEM).decode()


def root_id(certificate: x509.Certificate) -> str:
    """A root's identifier: the SHA-256 of its DER encoding, hex (its fingerprint)."""
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


def load_certificates(pem: bytes | str, what: str) -> list[x509.Certificate]:
    data = pem.encode() if isinstance(pem, str) else pem
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise InvalidCAMaterial(
            f"{what} is not PEM: expected a '-----BEGIN CERTIFICATE-----' block"
        )
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise InvalidCAMaterial(f"{what} could not be parsed as X.509 PEM: {exc}") from exc


@dataclass(frozen=True, slots=True)
class CAMaterial:
    origin: Origin
    root: x509.Certificate
    root_key: PrivateKey | None
    chain: tuple[x509.Certificate, ...]  # the signing intermediate first, up to below the root
    signing_key: PrivateKey

    @property
    def root_id(self) -> str:
        return root_id(self.root)

    def issuer(self) -> Issuer:
        return Issuer.of(self.chain[0], self.signing_key)

    def root_issuer(self) -> Issuer | None:
        return Issuer.of(self.root, self.root_key) if self.root_key is not None else None

    def seal(
        self,
        trust_domain: str,
        kek: KeyEncryptionKey,
        issued_until: datetime,
        *,
        keep_root_key: bool,
        extra_chain: tuple[x509.Certificate, ...] = (),
    ) -> RootRecord:
        """The stored form: certificates as PEM, keys sealed under `kek`."""
        rid = self.root_id
        root_key = None
        if keep_root_key and self.root_key is not None:
            root_key = kek.seal(private_key_der(self.root_key), root_key_context(trust_domain, rid))
        return RootRecord(
            id=rid,
            status=RootStatus.ACTIVE,
            origin=self.origin,
            certificate_pem=certificate_pem(self.root),
            chain_pem=tuple(certificate_pem(c) for c in (*self.chain, *extra_chain)),
            signing_key=kek.seal(
                private_key_der(self.signing_key), signing_key_context(trust_domain, rid)
            ),
            root_key=root_key,
            issued_until=issued_until,
        )


def generate_material(
    trust_domain: str,
    now: datetime,
    root_key_type: KeyType = KeyType.EC_P256,
    intermediate_key_type: KeyType = KeyType.EC_P256,
) -> CAMaterial:
    """A new root and an intermediate under it. The intermediate is EC P-256 unless asked
    otherwise, whatever the root: it signs every leaf, and P-256 signs fast."""
    root_key = root_key_type.generate()
    root = make_root(root_key, trust_domain, now)
    signing_key = intermediate_key_type.generate()
    intermediate = make_intermediate(
        signing_key.public_key(), Issuer.of(root, root_key), trust_domain, now
    )
    return CAMaterial(Origin.GENERATED, root, root_key, (intermediate,), signing_key)


def import_material(
    root_pem: bytes | str,
    intermediate_pem: bytes | str,
    intermediate_key_pem: bytes | str,
    now: datetime,
) -> CAMaterial:
    """Bring your own CA: check that the certificates chain to the root and the key matches.

    `intermediate_pem` holds the signing intermediate first, optionally followed by further
    intermediates up to (not including) the root.
    """
    roots = load_certificates(root_pem, "the root certificate")
    if len(roots) != 1:
        raise InvalidCAMaterial(
            f"the root certificate file holds {len(roots)} certificates; give exactly the root"
        )
    root = roots[0]
    chain = tuple(load_certificates(intermediate_pem, "the intermediate certificate"))
    key = load_private_key(intermediate_key_pem, "the intermediate key")

    _check_ca(root, "the root certificate", now)
    _check_ca_key(root, "the root certificate")
    if root.subject != root.issuer:
        raise InvalidCAMaterial(
            f"the root certificate ({root.subject.rfc4514_string()}) is not self-issued: its "
            f"issuer is {root.issuer.rfc4514_string()}; give the top of the chain as the root"
        )
    _check_issued(root, root, "the root certificate", "itself")
    for depth, cert in enumerate(chain):
        what = "the intermediate certificate" if depth == 0 else f"chain certificate {depth + 1}"
        _check_ca(cert, what, now)
        _check_path_length(cert, what, below=depth)
        parent = chain[depth + 1] if depth + 1 < len(chain) else root
        parent_what = "the root" if parent is root else f"chain certificate {depth + 2}"
        _check_issued(cert, parent, what, parent_what)
    _check_path_length(root, "the root certificate", below=len(chain))
    if not same_public_key(key.public_key(), chain[0].public_key()):
        raise InvalidCAMaterial(
            "the intermediate key does not match the intermediate certificate: its public key "
            f"({describe_key(key.public_key())}) is not the certificate's "
            f"({describe_key(chain[0].public_key())}); give the key the intermediate was issued for"
        )
    return CAMaterial(Origin.IMPORTED, root, None, chain, key)


def _check_ca(cert: x509.Certificate, what: str, now: datetime) -> None:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    except ValueError as exc:
        raise InvalidCAMaterial(f"{what} has malformed extensions: {exc}") from exc
    if constraints is None or not constraints.ca:
        raise InvalidCAMaterial(
            f"{what} is not a CA certificate (it lacks basicConstraints CA:TRUE)"
        )
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.key_cert_sign:
            raise InvalidCAMaterial(
                f"{what} may not sign certificates (key usage lacks keyCertSign)"
            )
    except x509.ExtensionNotFound:
        pass
    if not cert.not_valid_before_utc <= now < cert.not_valid_after_utc:
        raise InvalidCAMaterial(
            f"{what} is valid from {cert.not_valid_before_utc:%Y-%m-%d %H:%M} to "
            f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC, which does not include now "
            f"({now:%Y-%m-%d %H:%M} UTC)"
        )


def _check_ca_key(cert: x509.Certificate, what: str) -> None:
    try:
        key = cert.public_key()
    except (UnsupportedAlgorithm, ValueError) as exc:
        raise UnsupportedKey(f"{what} has a key the CA cannot use: {exc}") from exc
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in {
        "secp256r1",
        "secp384r1",
        "secp521r1",
    }:
        return
    if isinstance(key, rsa.RSAPublicKey) and key.key_size >= 2048:
        return
    raise UnsupportedKey(
        f"{what} has a {describe_key(key)} key; a CA key must be EC P-256/P-384/P-521 or RSA "
        ">= 2048 bits"
    )


def _check_path_length(cert: x509.Certificate, what: str, below: int) -> None:
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    if constraints.path_length is not None and constraints.path_length < below:
        raise InvalidCAMaterial(
            f"{what} has path length {constraints.path_length} but {below} intermediate(s) "
            "sit below it; leaves signed by the intermediate would not verify"
        )


def _check_issued(cert: x509.Certificate, parent: x509.Certificate, what: str, by: str) -> None:
    try:
        cert.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm) as exc:
        raise InvalidCAMaterial(
            f"{what} ({cert.subject.rfc4514_string()}) is not signed by {by} "
            f"({parent.subject.rfc4514_string()}): {exc or type(exc).__name__}; give the "
            "certificates of one chain, intermediate first"
        ) from exc
