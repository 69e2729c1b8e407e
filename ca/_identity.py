"""SPIFFE identities of mesh workloads: `spiffe://<trust-domain>/ns/<namespace>/svc/<service>`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ._errors import InvalidIdentity

# Used with fullmatch (`$` would let "web\n" through).
# A trust domain is a DNS-name-like string (SPIFFE spec: lowercase letters, digits, '.', '-', '_').
_TRUST_DOMAIN = re.compile(r"[a-z0-9]([a-z0-9._-]{0,253}[a-z0-9])?")
# Namespaces and services are DNS labels (RFC 1123), as in Kubernetes and Consul.
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


def is_dns_label(value: str) -> bool:
    """True if `value` is an RFC 1123 label: 1-63 of [a-z0-9-], not starting/ending with '-'."""
    return bool(_LABEL.fullmatch(value))


def check_trust_domain(value: str) -> str:
    if not _TRUST_DOMAIN.fullmatch(value):
        raise InvalidIdentity(
            f"trust domain {value!r} is not valid: use lowercase letters, digits, '.', '-' or '_' "
            "(like a DNS name, e.g. 'weft.example.com')"
        )
    return value


@dataclass(frozen=True, slots=True, order=True)
class SpiffeId:
    trust_domain: str
    namespace: str
    service: str

    def __post_init__(self) -> None:
        check_trust_domain(self.trust_domain)
        for what, value in (("namespace", self.namespace), ("service", self.service)):
            if not is_dns_label(value):
                raise InvalidIdentity(
                    f"{what} {value!r} is not a DNS label (1-63 lowercase letters, digits or '-', "
                    "starting and ending with a letter or digit)"
                )

    @property
    def uri(self) -> str:
        return f"spiffe://{self.trust_domain}/ns/{self.namespace}/svc/{self.service}"

    def __str__(self) -> str:
        return self.uri

    @classmethod
    def parse(cls, uri: str) -> SpiffeId:
        """Parse a Weft workload SPIFFE ID; raises InvalidIdentity naming what is wrong."""
        scheme, sep, rest = uri.partition("://")
        if not sep or scheme.lower() != "spiffe":
            raise InvalidIdentity(f"{uri!r} is not a SPIFFE ID: it must start with 'spiffe://'")
        if scheme != "spiffe":
            raise InvalidIdentity(f"{uri!r}: the scheme must be lowercase 'spiffe'")
        if any(c in rest for c in "?#"):
            raise InvalidIdentity(f"{uri!r}: a SPIFFE ID has no query or fragment")
        trust_domain, slash, path = rest.partition("/")
        if not slash:
            raise InvalidIdentity(f"{uri!r} has no path; expected /ns/<namespace>/svc/<service>")
        parts = path.split("/")
        if len(parts) != 4 or parts[0] != "ns" or parts[2] != "svc":
            raise InvalidIdentity(
                f"{uri!r}: the path must be /ns/<namespace>/svc/<service>, got /{path}"
            )
        return cls(trust_domain, parts[1], parts[3])

    def in_domain(self, trust_domain: str) -> bool:
        return self.trust_domain == trust_domain
