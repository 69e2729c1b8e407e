"""The trust bundle: the roots a mesh workload trusts, in the clear, for `GET /v1/ca/roots`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ._display import common_name, fingerprint_sha256, format_time
from ._material import load_certificates
from ._state import CAState, RootRecord, RootStatus

_UINT64 = 1 << 64


@dataclass(frozen=True, slots=True)
class BundleRoot:
    id: str
    name: str
    certificate_pem: str = field(repr=False)
    intermediates_pem: tuple[str, ...] = field(repr=False)  # what leaves under this root present
    active: bool
    not_before: datetime
    not_after: datetime
    serial_number: int
    signing_key_id: str  # colon hex of the signing intermediate's subject key identifier
    fingerprint: str
    key_type: str  # "ec" | "rsa"
    key_bits: int
    drop_after: datetime | None  # for a retiring root: when it leaves the bundle

    @classmethod
    def of(cls, record: RootRecord) -> BundleRoot:
        (root,) = load_certificates(record.certificate_pem, "a stored root")
        signing = load_certificates(record.chain_pem[0], "a stored intermediate")[0]
        key = root.public_key()
        if isinstance(key, rsa.RSAPublicKey):
            key_type, bits = "rsa", key.key_size
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key_type, bits = "ec", key.curve.key_size
        else:  # pragma: no cover - import refuses other keys
            key_type, bits = "unknown", 0
        return cls(
            id=record.id,
            name=common_name(root),
            certificate_pem=record.certificate_pem,
            intermediates_pem=record.chain_pem,
            active=record.status is RootStatus.ACTIVE,
            not_before=root.not_valid_before_utc,
            not_after=root.not_valid_after_utc,
            serial_number=root.serial_number,
            signing_key_id=_key_id(signing),
            fingerprint=fingerprint_sha256(root),
            key_type=key_type,
            key_bits=bits,
            drop_after=record.drop_after,
        )


@dataclass(frozen=True, slots=True)
class TrustBundle:
    trust_domain: str
    roots: tuple[BundleRoot, ...]  # the active root first

    @classmethod
    def of(cls, state: CAState) -> TrustBundle:
        return cls(state.trust_domain, tuple(BundleRoot.of(r) for r in state.roots))

    @property
    def active(self) -> BundleRoot:
        return self.roots[0]

    def pem(self) -> str:
        """Every root, active first: what a workload loads as its CA file."""
        return "".join(r.certificate_pem for r in self.roots)

    def to_json(self) -> dict[str, Any]:
        """Weft's native shape for `GET /v1/ca/roots`."""
        return {
            "trust_domain": self.trust_domain,
            "active_root_id": self.active.id,
            "bundle_pem": self.pem(),
            "roots": [
                {
                    "id": r.id,
                    "name": r.name,
                    "active": r.active,
                    "certificate_pem": r.certificate_pem,
                    "intermediates_pem": list(r.intermediates_pem),
                    "not_before": format_time(r.not_before),
                    "not_after": format_time(r.not_after),
                    "fingerprint_sha256": r.fingerprint,
                    "drop_after": format_time(r.drop_after) if r.drop_after else None,
                }
                for r in self.roots
            ],
        }

    def to_consul(self) -> dict[str, Any]:
        """Consul's `/v1/agent/connect/ca/roots` shape (the server adds the index fields)."""
        return {
            "ActiveRootID": self.active.id,
            "TrustDomain": self.trust_domain,
            "Roots": [
                {
                    "ID": r.id,
                    "Name": r.name,
                    # Consul's clients decode this as uint64; a larger imported serial reads 0.
                    "SerialNumber": r.serial_number if r.serial_number < _UINT64 else 0,
                    "SigningKeyID": r.signing_key_id,
                    "ExternalTrustDomain": self.trust_domain,
                    "NotBefore": _rfc3339(r.not_before),
                    "NotAfter": _rfc3339(r.not_after),
                    "RootCert": r.certificate_pem,
                    "IntermediateCerts": list(r.intermediates_pem),
                    "Active": r.active,
                    "PrivateKeyType": r.key_type,
                    "PrivateKeyBits": r.key_bits,
                }
                for r in self.roots
            ],
        }


def _key_id(cert: x509.Certificate) -> str:
    try:
        digest = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        digest = x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest
    return ":".join(f"{b:02x}" for b in digest)


def _rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
