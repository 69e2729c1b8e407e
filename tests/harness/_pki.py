"""A test certificate factory: root -> intermediate -> SPIFFE leaves, made with `cryptography`.

Independent of the real CA package on purpose: tests of the proxy need certificates the CA
would never issue (expired, foreign, without a SPIFFE ID, for another trust domain).

    ca = TestCA("weft.test")
    paths = ca.issue("web").write(tmp_path / "web")     # cert chain, key, bundle
    foreign = TestCA("weft.test", name="Someone Else")   # same domain, untrusted root
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class TlsPaths:
    cert: Path  # leaf followed by the intermediate
    key: Path
    bundle: Path  # the trust bundle (roots)

    def as_snapshot(self) -> dict[str, str]:
        return {"cert": str(self.cert), "key": str(self.key), "bundle": str(self.bundle)}


@dataclass(frozen=True)
class Leaf:
    cert: x509.Certificate
    chain_pem: bytes  # leaf + intermediate
    key_pem: bytes
    bundle_pem: bytes
    uri: str | None

    def write(self, directory: Path) -> TlsPaths:
        directory.mkdir(parents=True, exist_ok=True)
        paths = TlsPaths(directory / "cert.pem", directory / "key.pem", directory / "bundle.pem")
        paths.cert.write_bytes(self.chain_pem)
        paths.key.write_bytes(self.key_pem)
        paths.key.chmod(0o600)
        paths.bundle.write_bytes(self.bundle_pem)
        return paths


class TestCA:
    """A root and an intermediate that issue leaves with a SPIFFE URI SAN."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        trust_domain: str = "weft.test",
        *,
        name: str = "Weft Test",
        lifetime: dt.timedelta = dt.timedelta(days=365),
    ) -> None:
        self.trust_domain = trust_domain
        self._root_key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        self.root = (
            x509.CertificateBuilder()
            .subject_name(_name(f"{name} Root"))
            .issuer_name(_name(f"{name} Root"))
            .public_key(self._root_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + lifetime)
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(_ca_usage(), critical=True)
            .sign(self._root_key, hashes.SHA256())
        )
        self._int_key = ec.generate_private_key(ec.SECP256R1())
        self.intermediate = (
            x509.CertificateBuilder()
            .subject_name(_name(f"{name} Intermediate"))
            .issuer_name(self.root.subject)
            .public_key(self._int_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + lifetime)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_ca_usage(), critical=True)
            .sign(self._root_key, hashes.SHA256())
        )

    @property
    def bundle_pem(self) -> bytes:
        return _pem(self.root)

    def write_intermediate(self, directory: Path) -> tuple[Path, Path, Path]:
        """The root, intermediate and intermediate key as PEM files, for importing this PKI."""
        directory.mkdir(parents=True, exist_ok=True)
        root, cert, key = directory / "root.pem", directory / "int.pem", directory / "int.key"
        root.write_bytes(_pem(self.root))
        cert.write_bytes(_pem(self.intermediate))
        key.write_bytes(
            self._int_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        key.chmod(0o600)
        return root, cert, key

    def spiffe(self, service: str, namespace: str = "default") -> str:
        return f"spiffe://{self.trust_domain}/ns/{namespace}/svc/{service}"

    def issue(
        self,
        service: str | None,
        namespace: str = "default",
        *,
        uri: str | None = None,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        bundle_pem: bytes | None = None,
    ) -> Leaf:
        """A leaf for `service` (URI SAN `spiffe(service)`, or `uri`; None: no URI SAN)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        if uri is None and service is not None:
            uri = self.spiffe(service, namespace)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(service or "no-identity"))
            .issuer_name(self.intermediate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - dt.timedelta(minutes=1))
            .not_valid_after(not_after or now + dt.timedelta(hours=24))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
        )
        if uri is not None:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]),
                critical=False,
            )
        cert = builder.sign(self._int_key, hashes.SHA256())
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return Leaf(
            cert=cert,
            chain_pem=_pem(cert) + _pem(self.intermediate),
            key_pem=key_pem,
            bundle_pem=bundle_pem if bundle_pem is not None else self.bundle_pem,
            uri=uri,
        )

    def issue_expired(self, service: str, namespace: str = "default") -> Leaf:
        now = _now()
        return self.issue(
            service,
            namespace,
            not_before=now - dt.timedelta(days=2),
            not_after=now - dt.timedelta(days=1),
        )


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )
