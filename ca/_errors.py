"""Errors of the `ca` package.

CAError
├── InvalidIdentity      a SPIFFE ID, trust domain, namespace or service name is malformed
└── (more are added by the authority: bad CSR, bad key, wrong key-encryption key, ...)
"""


class CAError(Exception):
    """Base of every error the ca package raises."""


class InvalidIdentity(CAError, ValueError):
    """A SPIFFE ID or one of its parts is not valid."""
