"""Errors of the `ca` package.

CAError
├── InvalidIdentity          a SPIFFE ID, trust domain, namespace or service name is malformed
├── InvalidCSR               a CSR is not PEM, does not parse, or its signature does not verify
│   └── IdentityMismatch     the CSR names a SPIFFE ID other than the one requested
├── UnsupportedKey           a key is not EC P-256 or RSA of 2048-8192 bits (CSR, import, KEK'd key)
├── InvalidLifetime          a requested certificate lifetime is outside the allowed range
├── InvalidCAMaterial        imported root/intermediate/key do not parse, chain or match
├── InvalidKeyEncryptionKey  the key-encryption key text is not 32 bytes in base64 or hex
├── WrongKeyEncryptionKey    the stored CA state was sealed under a different key-encryption key
├── CorruptState             the stored CA state is not a document this version can read
├── NotInitialised           there is no CA state yet (`weft ca init` has not run)
├── AlreadyInitialised       `init`/`import` on a CA that already has state
├── StateConflict            compare-and-swap lost: the stored state changed since it was loaded
├── RootKeyRequired          rotation needs the active root's key, which is kept offline
├── SigningDenied            the caller may not have a certificate for this identity
├── RateLimited              too many requests; `retry_after` says when to come back
└── PeerRejected             a TLS peer's certificate broke a rule; `rule` says which

Where the server answers HTTP, the natural statuses are: InvalidCSR, IdentityMismatch,
UnsupportedKey, InvalidLifetime, InvalidIdentity, InvalidCAMaterial -> 400; SigningDenied -> 403;
RateLimited -> 429 (Retry-After); NotInitialised -> 503; AlreadyInitialised, StateConflict -> 409;
RootKeyRequired -> 400 (the operator must supply the key).
"""

from __future__ import annotations

import enum


class CAError(Exception):
    """Base of every error the ca package raises."""


class InvalidIdentity(CAError, ValueError):
    """A SPIFFE ID or one of its parts is not valid."""


class InvalidCSR(CAError, ValueError):
    """A certificate signing request is malformed or its signature does not verify."""


class IdentityMismatch(InvalidCSR):
    """The CSR carries a SPIFFE ID that is not the identity the request asks for."""


class UnsupportedKey(CAError, ValueError):
    """A public or private key is of a type or size the CA does not accept."""


class InvalidLifetime(CAError, ValueError):
    """A certificate lifetime is outside the range the signing policy allows."""


class InvalidCAMaterial(CAError, ValueError):
    """Imported CA certificates or keys do not parse, do not chain, or do not match."""


class InvalidKeyEncryptionKey(CAError, ValueError):
    """The key-encryption key given is not in a form the CA understands."""


class WrongKeyEncryptionKey(CAError):
    """The CA state cannot be decrypted with the key-encryption key given."""


class CorruptState(CAError):
    """The stored CA state document is malformed or was tampered with."""


class NotInitialised(CAError):
    """The CA has no state yet; `weft ca init` (or an import) creates it."""


class AlreadyInitialised(CAError):
    """The CA already has state; initialising again would replace the mesh's roots."""


class StateConflict(CAError):
    """A compare-and-swap save failed because the stored state has moved on."""


class RootKeyRequired(CAError):
    """The operation needs the active root's private key, which is not in the state."""


class SigningDenied(CAError, PermissionError):
    """The caller is not allowed a certificate for the identity it asked for."""


class RateLimited(CAError):
    """A rate limit was exceeded; retry after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PeerRule(enum.Enum):
    """The rule a peer certificate broke, so callers can count and report by cause."""

    NO_CERTIFICATE = "no-certificate"
    MALFORMED = "malformed"
    NO_SPIFFE_ID = "no-spiffe-id"
    SEVERAL_URIS = "several-uri-sans"
    IS_CA = "is-ca"
    TRUST_DOMAIN = "trust-domain"
    IDENTITY = "identity"
    EXPIRED = "expired"
    NOT_YET_VALID = "not-yet-valid"
    UNTRUSTED_CA = "untrusted-ca"
    REJECTED_BY_PEER = "rejected-by-peer"
    HANDSHAKE = "handshake"


class PeerRejected(CAError):
    """A TLS peer's certificate broke `rule`; the message says how and what was expected."""

    def __init__(self, message: str, rule: PeerRule) -> None:
        super().__init__(message)
        self.rule = rule
