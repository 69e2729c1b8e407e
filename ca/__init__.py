"""Weft's certificate authority: mesh identities, issuing, rotation, trust bundle.

Pure logic: no project imports and no I/O of its own; storage and clock are passed in.
What the server mounts is `CertificateAuthority` (over a `CAStore`); the agent and proxy use
`make_key_and_csr`, `CertificateLifecycle`, `mesh_ssl_context` and `verify_peer`.
See docs/ca.md.
"""

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
