"""Key types the CA makes and accepts, and turning PEM into key objects with clear errors."""

from __future__ import annotations

import enum
from typing import TypeAlias

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from ._errors import UnsupportedKey

PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey: TypeAlias = ec.EllipticCurvePublicKey | rsa.RSAPublicKey

# RSA below 2048 bits is breakable; above 8192 it only makes every handshake slow (a DoS lever).
RSA_MIN_BITS = 2048
RSA_MAX_BITS = 8192
ACCEPTED_KEYS = f"EC P-256 or RSA of {RSA_MIN_BITS}-{RSA_MAX_BITS} bits"


class KeyType(enum.Enum):
    """A key the CA generates. EC P-256 is the default: small, and fast to sign with."""

    EC_P256 = "ec-p256"
    RSA_2048 = "rsa-2048"
    RSA_3072 = "rsa-3072"

    @classmethod
    def parse(cls, text: str) -> KeyType:
        try:
            return cls(text.strip().lower())
        except ValueError:
            allowed = ", ".join(repr(k.value) for k in cls)
            raise UnsupportedKey(f"key type {text!r} is not one of {allowed}") from None

    def generate(self) -> PrivateKey:
        if self is KeyType.EC_P256:
            return ec.generate_private_key(ec.SECP256R1())
        bits = 2048 if self is KeyType.RSA_2048 else 3072
        return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def describe_key(key: object) -> str:
    """'EC P-256', 'RSA 3072', ... for messages and status output."""
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        return f"EC {key.curve.name}".replace("secp256r1", "P-256").replace("secp384r1", "P-384")
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        return f"RSA {key.key_size}"
    return type(key).__name__


def check_public_key(key: object, what: str) -> PublicKey:
    """Return `key` if the CA accepts it; otherwise raise UnsupportedKey naming what would do."""
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    if isinstance(key, rsa.RSAPublicKey) and RSA_MIN_BITS <= key.key_size <= RSA_MAX_BITS:
        return key
    raise UnsupportedKey(f"{what} is {describe_key(key)}; the CA accepts only {ACCEPTED_KEYS}")


def check_private_key(key: object, what: str) -> PrivateKey:
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise UnsupportedKey(f"{what} is {describe_key(key)}; the CA accepts only {ACCEPTED_KEYS}")
    check_public_key(key.public_key(), what)
    return key


def load_private_key(pem: bytes | str, what: str) -> PrivateKey:
    """Load an unencrypted PEM private key (PKCS#8, or traditional EC/RSA)."""
    data = pem.encode() if isinstance(pem, str) else pem
    if b"-----BEGIN" not in data:
        raise UnsupportedKey(f"{what} is not PEM: expected a '-----BEGIN PRIVATE KEY-----' block")
    if b"ENCRYPTED" in data:
        raise UnsupportedKey(f"{what} is encrypted with a passphrase; give it unencrypted")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise UnsupportedKey(f"{what} could not be read as a PEM private key: {exc}") from exc
    return check_private_key(key, what)


def private_key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def private_key_der(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_key_der(der: bytes, what: str) -> PrivateKey:
    try:
        key = serialization.load_der_private_key(der, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise UnsupportedKey(f"{what} could not be read as a DER private key: {exc}") from exc
    return check_private_key(key, what)


def same_public_key(a: CertificatePublicKeyTypes, b: CertificatePublicKeyTypes) -> bool:
    der = serialization.Encoding.DER
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    return a.public_bytes(der, spki) == b.public_bytes(der, spki)
