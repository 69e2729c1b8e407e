"""Weft's certificate authority: mesh identities, issuing, rotation, trust bundle.

Pure logic: no project imports and no I/O of its own; storage and clock are passed in.
What the server mounts is `CertificateAuthority` (over a `CAStore`); the agent and proxy use
`make_key_and_csr`, `CertificateLifecycle`, `mesh_ssl_context` and `verify_peer`.
See docs/ca.md.
"""

# The public face is loaded on first use (PEP 562): a sidecar proxy needs only `SpiffeId`, and
# importing the whole authority would pull `cryptography` into every proxy's memory.
from typing import TYPE_CHECKING, Any

_WHERE: dict[str, str] = {
    "CAStatus": "_authority",
    "CertificateAuthority": "_authority",
    "Clock": "_authority",
    "ImportedCA": "_authority",
    "Initialised": "_authority",
    "Rotated": "_authority",
    "utc_now": "_authority",
    "BundleRoot": "_bundle",
    "TrustBundle": "_bundle",
    "CheckedCSR": "_csr",
    "KeyAndCSR": "_csr",
    "check_csr": "_csr",
    "make_csr": "_csr",
    "make_key_and_csr": "_csr",
    "CertificateSummary": "_display",
    "describe_certificate": "_display",
    "fingerprint_sha256": "_display",
    "format_duration": "_display",
    "format_expiry": "_display",
    "format_time": "_display",
    "AlreadyInitialised": "_errors",
    "CAError": "_errors",
    "CorruptState": "_errors",
    "IdentityMismatch": "_errors",
    "InvalidCAMaterial": "_errors",
    "InvalidCSR": "_errors",
    "InvalidIdentity": "_errors",
    "InvalidKeyEncryptionKey": "_errors",
    "InvalidLifetime": "_errors",
    "NotInitialised": "_errors",
    "PeerRejected": "_errors",
    "PeerRule": "_errors",
    "RateLimited": "_errors",
    "RootKeyRequired": "_errors",
    "SigningDenied": "_errors",
    "StateConflict": "_errors",
    "UnsupportedKey": "_errors",
    "WrongKeyEncryptionKey": "_errors",
    "SpiffeId": "_identity",
    "check_trust_domain": "_identity",
    "is_dns_label": "_identity",
    "KeyEncryptionKey": "_kek",
    "KeyType": "_keys",
    "load_private_key": "_keys",
    "CertificateLifecycle": "_lifecycle",
    "CertPhase": "_lifecycle",
    "renewal_time": "_lifecycle",
    "CAMaterial": "_material",
    "generate_material": "_material",
    "import_material": "_material",
    "explain_tls_failure": "_peer",
    "mesh_ssl_context": "_peer",
    "verify_peer": "_peer",
    "Adapter": "_policy",
    "Caller": "_policy",
    "Decision": "_policy",
    "LeafLifetimes": "_policy",
    "NodeAgent": "_policy",
    "Operator": "_policy",
    "ReadOnly": "_policy",
    "ServiceRef": "_policy",
    "authorize": "_policy",
    "RateLimiter": "_ratelimit",
    "TokenBucket": "_ratelimit",
    "Phase": "_rotation",
    "IssuedCertificate": "_signer",
    "Signer": "_signer",
    "CAState": "_state",
    "CAStore": "_storage",
    "MemoryCAStore": "_storage",
    "Stored": "_storage",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'ca' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"ca.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:
    from ._authority import CAStatus as CAStatus
    from ._authority import CertificateAuthority as CertificateAuthority
    from ._authority import Clock as Clock
    from ._authority import ImportedCA as ImportedCA
    from ._authority import Initialised as Initialised
    from ._authority import Rotated as Rotated
    from ._authority import utc_now as utc_now
    from ._bundle import BundleRoot as BundleRoot
    from ._bundle import TrustBundle as TrustBundle
    from ._csr import CheckedCSR as CheckedCSR
    from ._csr import KeyAndCSR as KeyAndCSR
    from ._csr import check_csr as check_csr
    from ._csr import make_csr as make_csr
    from ._csr import make_key_and_csr as make_key_and_csr
    from ._display import CertificateSummary as CertificateSummary
    from ._display import describe_certificate as describe_certificate
    from ._display import fingerprint_sha256 as fingerprint_sha256
    from ._display import format_duration as format_duration
    from ._display import format_expiry as format_expiry
    from ._display import format_time as format_time
    from ._errors import AlreadyInitialised as AlreadyInitialised
    from ._errors import CAError as CAError
    from ._errors import CorruptState as CorruptState
    from ._errors import IdentityMismatch as IdentityMismatch
    from ._errors import InvalidCAMaterial as InvalidCAMaterial
    from ._errors import InvalidCSR as InvalidCSR
    from ._errors import InvalidIdentity as InvalidIdentity
    from ._errors import InvalidKeyEncryptionKey as InvalidKeyEncryptionKey
    from ._errors import InvalidLifetime as InvalidLifetime
    from ._errors import NotInitialised as NotInitialised
    from ._errors import PeerRejected as PeerRejected
    from ._errors import PeerRule as PeerRule
    from ._errors import RateLimited as RateLimited
    from ._errors import RootKeyRequired as RootKeyRequired
    from ._errors import SigningDenied as SigningDenied
    from ._errors import StateConflict as StateConflict
    from ._errors import UnsupportedKey as UnsupportedKey
    from ._errors import WrongKeyEncryptionKey as WrongKeyEncryptionKey
    from ._identity import SpiffeId as SpiffeId
    from ._identity import check_trust_domain as check_trust_domain
    from ._identity import is_dns_label as is_dns_label
    from ._kek import KeyEncryptionKey as KeyEncryptionKey
    from ._keys import KeyType as KeyType
    from ._keys import load_private_key as load_private_key
    from ._lifecycle import CertificateLifecycle as CertificateLifecycle
    from ._lifecycle import CertPhase as CertPhase
    from ._lifecycle import renewal_time as renewal_time
    from ._material import CAMaterial as CAMaterial
    from ._material import generate_material as generate_material
    from ._material import import_material as import_material
    from ._peer import explain_tls_failure as explain_tls_failure
    from ._peer import mesh_ssl_context as mesh_ssl_context
    from ._peer import verify_peer as verify_peer
    from ._policy import Adapter as Adapter
    from ._policy import Caller as Caller
    from ._policy import Decision as Decision
    from ._policy import LeafLifetimes as LeafLifetimes
    from ._policy import NodeAgent as NodeAgent
    from ._policy import Operator as Operator
    from ._policy import ReadOnly as ReadOnly
    from ._policy import ServiceRef as ServiceRef
    from ._policy import authorize as authorize
    from ._ratelimit import RateLimiter as RateLimiter
    from ._ratelimit import TokenBucket as TokenBucket
    from ._rotation import Phase as Phase
    from ._signer import IssuedCertificate as IssuedCertificate
    from ._signer import Signer as Signer
    from ._state import CAState as CAState
    from ._storage import CAStore as CAStore
    from ._storage import MemoryCAStore as MemoryCAStore
    from ._storage import Stored as Stored
