"""Certificate builders: roots, intermediates, cross-signatures, mesh leaves, server certificates.

Pure functions of keys, names and times. Every certificate is signed with SHA-256 (ECDSA for EC
keys, PKCS#1 v1.5 for RSA) and starts a minute in the past, so peers whose clocks lag a little
behind the CA's do not reject a certificate the moment it is issued.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ._identity import SpiffeId
from ._keys import PrivateKey, PublicKey

CLOCK_SKEW = timedelta(minutes=1)
ROOT_LIFETIME = timedelta(days=3650)
INTERMEDIATE_LIFETIME = timedelta(days=1825)

_SHA256 = hashes.SHA256()
_MESH_EKU = x509.ExtendedKeyUsage(
    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
)
_SERVER_EKU = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
_NOT_CA = x509.BasicConstraints(ca=False, path_length=None)


def _key_usage(*, key_encipherment: bool = False, ca: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


# TLS 1.3 authenticates with signatures only (ECDHE for the key exchange, then CertificateVerify),
# so a mesh leaf needs digitalSignature and nothing else, for EC and RSA keys alike.
_SIGN_ONLY = _key_usage()
# `weft server` also answers TLS 1.2 clients (curl, Consul tools); with an RSA key some of them
# still negotiate RSA key transport, which needs keyEncipherment.
_SIGN_AND_ENCIPHER = _key_usage(key_encipherment=True)
_CA_USAGE = _key_usage(ca=True)


def _key_tag(public_key: PublicKey) -> str:
    """A short tag from the key's identifier, so every generated CA has a distinct name."""
    return x509.SubjectKeyIdentifier.from_public_key(public_key).digest.hex()[:8]


def ca_name(kind: str, public_key: PublicKey) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Weft"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"Weft {kind} CA {_key_tag(public_key)}"),
        ]
    )


def _ca_serial() -> int:
    """63 random bits: unique enough for the few CA certificates, and within the uint64 that
    Consul's clients decode a root's SerialNumber into."""
    return (int.from_bytes(os.urandom(8), "big") >> 1) or 1


def _ca_builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: PublicKey,
    trust_domain: str,
    not_before: datetime,
    not_after: datetime,
    path_length: int | None,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(_ca_serial())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_CA_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(f"spiffe://{trust_domain}")]
            ),
            critical=False,
        )
    )


def make_root(
    key: PrivateKey, trust_domain: str, now: datetime, lifetime: timedelta = ROOT_LIFETIME
) -> x509.Certificate:
    """A self-signed root. No path length limit: a cross-signed successor root sits below it."""
    name = ca_name("Root", key.public_key())
    builder = _ca_builder(
        name, name, key.public_key(), trust_domain, now - CLOCK_SKEW, now + lifetime, None
    )
    return builder.sign(key, _SHA256)


@dataclass(frozen=True, slots=True)
class Issuer:
    """A CA certificate with its key, and what every certificate it signs repeats from it."""

    certificate: x509.Certificate
    key: PrivateKey
    name: x509.Name
    authority_key_id: x509.AuthorityKeyIdentifier

    @classmethod
    def of(cls, certificate: x509.Certificate, key: PrivateKey) -> Issuer:
        try:
            ski = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
            akid = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski.value)
        except x509.ExtensionNotFound:
            akid = x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key())
        return cls(certificate, key, certificate.subject, akid)

    @property
    def not_after(self) -> datetime:
        return self.certificate.not_valid_after_utc


def make_intermediate(
    public_key: PublicKey,
    root: Issuer,
    trust_domain: str,
    now: datetime,
    lifetime: timedelta = INTERMEDIATE_LIFETIME,
) -> x509.Certificate:
    """The online signing CA: signs leaves only (path length 0), never outlives its root."""
    not_after = min(now + lifetime, root.not_after)
    builder = _ca_builder(
        ca_name("Intermediate", public_key),
        root.name,
        public_key,
        trust_domain,
        now - CLOCK_SKEW,
        not_after,
        0,
    ).add_extension(root.authority_key_id, critical=False)
    return builder.sign(root.key, _SHA256)


def cross_sign(certificate: x509.Certificate, by: Issuer, now: datetime) -> x509.Certificate:
    """`certificate`'s subject, key and CA extensions, vouched for by another issuer.

    Used at rotation: the new root, certified by the old one, lets a peer that trusts only the
    old root build leaf -> new intermediate -> new root (cross-signed) -> old root.
    """
    not_after = min(certificate.not_valid_after_utc, by.not_after)
    builder = (
        x509.CertificateBuilder()
        .subject_name(certificate.subject)
        .issuer_name(by.name)
        .public_key(certificate.public_key())
        .serial_number(_ca_serial())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(not_after)
    )
    for ext in certificate.extensions:
        if isinstance(ext.value, x509.AuthorityKeyIdentifier):
            continue
        builder = builder.add_extension(ext.value, critical=ext.critical)
    return builder.add_extension(by.authority_key_id, critical=False).sign(by.key, _SHA256)


def make_leaf(
    public_key: PublicKey,
    identity: SpiffeId,
    issuer: Issuer,
    not_before: datetime,
    not_after: datetime,
) -> x509.Certificate:
    """A mesh workload certificate: the SPIFFE ID as the only URI SAN, and nothing it did not ask
    for from the CA's policy (built from the public key and identity alone, never from a CSR)."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity.service)]))
        .issuer_name(issuer.name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(_NOT_CA, critical=True)
        .add_extension(_SIGN_ONLY, critical=True)
        .add_extension(_MESH_EKU, critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity.uri)]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(issuer.authority_key_id, critical=False)
    )
    return builder.sign(issuer.key, _SHA256)


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def make_server_certificate(
    public_key: PublicKey,
    dns_names: Sequence[str],
    ip_addresses: Sequence[IPAddress],
    issuer: Issuer,
    not_before: datetime,
    not_after: datetime,
) -> x509.Certificate:
    """A TLS server certificate for `weft server` itself, named by DNS names and IP addresses."""
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
    names += [x509.IPAddress(ip) for ip in ip_addresses]
    common_name = dns_names[0] if dns_names else str(ip_addresses[0])
    usage = _SIGN_AND_ENCIPHER if isinstance(public_key, rsa.RSAPublicKey) else _SIGN_ONLY
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])]))
        .issuer_name(issuer.name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(_NOT_CA, critical=True)
        .add_extension(usage, critical=True)
        .add_extension(_SERVER_EKU, critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(issuer.authority_key_id, critical=False)
    )
    return builder.sign(issuer.key, _SHA256)
