"""The signer: the active intermediate's key and certificate in memory, issuing certificates.

Built once per state change and reused for every request, so a signature costs one CSR parse,
one signature check and one certificate signature: nothing about the CA is re-parsed, unsealed
or re-serialised per request.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ._csr import check_csr
from ._errors import CorruptState, InvalidIdentity, InvalidLifetime
from ._identity import SpiffeId
from ._issuing import CLOCK_SKEW, IPAddress, Issuer, make_leaf, make_server_certificate
from ._kek import KeyEncryptionKey
from ._keys import PublicKey, check_public_key, load_private_key_der
from ._material import load_certificates
from ._state import RootRecord, signing_key_context

_HOSTNAME = re.compile(
    r"(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*"
)


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """A signed certificate and the chain its holder presents after it."""

    certificate_pem: str
    chain_pem: tuple[str, ...]  # intermediates (and cross-signatures), leaf excluded
    serial_number: int
    not_before: datetime
    not_after: datetime
    root_id: str
    identity: SpiffeId | None = None  # None for `weft server` certificates

    @property
    def full_chain_pem(self) -> str:
        """Leaf then chain: what a TLS endpoint loads as its certificate file."""
        return self.certificate_pem + "".join(self.chain_pem)

    @property
    def serial_hex(self) -> str:
        return format(self.serial_number, "x")


class Signer:
    """Issues leaves and server certificates under one root's signing intermediate."""

    def __init__(
        self,
        trust_domain: str,
        root_id: str,
        root: x509.Certificate,
        chain: Sequence[x509.Certificate],
        issuer: Issuer,
    ) -> None:
        self.trust_domain = trust_domain
        self.root_id = root_id
        self._issuer = issuer
        self._chain_pem = tuple(c.public_bytes(serialization.Encoding.PEM).decode() for c in chain)
        # Nothing may outlive the CA certificates it chains to.
        self.not_after_limit = min(
            [root.not_valid_after_utc, *(c.not_valid_after_utc for c in chain)]
        )

    @classmethod
    def from_record(cls, trust_domain: str, record: RootRecord, kek: KeyEncryptionKey) -> Signer:
        """Unseal `record`'s signing key: raises WrongKeyEncryptionKey if `kek` is not the one."""
        if record.signing_key is None:
            raise CorruptState(
                f"root {record.id[:16]} has no signing key; only the active root signs"
            )
        der = kek.unseal(record.signing_key, signing_key_context(trust_domain, record.id))
        key = load_private_key_der(der, "the sealed signing key")
        (root,) = load_certificates(record.certificate_pem, "the stored root certificate")
        chain = [
            c
            for pem in record.chain_pem
            for c in load_certificates(pem, "a stored chain certificate")
        ]
        return cls(trust_domain, record.id, root, chain, Issuer.of(chain[0], key))

    @property
    def chain_pem(self) -> tuple[str, ...]:
        return self._chain_pem

    @property
    def intermediate(self) -> x509.Certificate:
        return self._issuer.certificate

    def validity(self, now: datetime, lifetime: timedelta) -> tuple[datetime, datetime]:
        """(NotBefore, NotAfter) for a certificate issued at `now`, clamped to the CA's life."""
        not_after = min(now + lifetime, self.not_after_limit)
        if not_after <= now:
            raise InvalidLifetime(
                f"the signing CA expires at {self.not_after_limit:%Y-%m-%d %H:%M} UTC and can "
                "issue nothing more; rotate the CA (`weft ca rotate`)"
            )
        return now - CLOCK_SKEW, not_after

    def sign_csr(
        self, csr_pem: bytes | str, requested: SpiffeId, now: datetime, lifetime: timedelta
    ) -> IssuedCertificate:
        """Check `csr_pem` for `requested` and issue a leaf from its public key alone.

        Authorization is the caller's (see `authorize`); this checks only the CSR itself.
        """
        self.check_domain(requested)
        checked = check_csr(csr_pem, requested)
        return self.issue_leaf(checked.public_key, requested, now, lifetime)

    def issue_leaf(
        self, public_key: PublicKey, identity: SpiffeId, now: datetime, lifetime: timedelta
    ) -> IssuedCertificate:
        self.check_domain(identity)
        not_before, not_after = self.validity(now, lifetime)
        cert = make_leaf(public_key, identity, self._issuer, not_before, not_after)
        return self._issued(cert, not_before, not_after, identity)

    def issue_server_certificate(
        self,
        public_key: PublicKey,
        dns_names: Sequence[str],
        ip_addresses: Sequence[str | IPAddress],
        now: datetime,
        lifetime: timedelta,
    ) -> IssuedCertificate:
        """A certificate for `weft server`'s own TLS listener (serverAuth, DNS/IP SANs)."""
        check_public_key(public_key, "the server's key")
        names = [_check_hostname(d) for d in dns_names]
        ips = [_check_ip(ip) for ip in ip_addresses]
        if not names and not ips:
            raise InvalidIdentity("a server certificate needs at least one DNS name or IP address")
        not_before, not_after = self.validity(now, lifetime)
        cert = make_server_certificate(public_key, names, ips, self._issuer, not_before, not_after)
        return self._issued(cert, not_before, not_after, None)

    def _issued(
        self,
        cert: x509.Certificate,
        not_before: datetime,
        not_after: datetime,
        identity: SpiffeId | None,
    ) -> IssuedCertificate:
        return IssuedCertificate(
            certificate_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
            chain_pem=self._chain_pem,
            serial_number=cert.serial_number,
            not_before=not_before,
            not_after=not_after,
            root_id=self.root_id,
            identity=identity,
        )

    def check_domain(self, identity: SpiffeId) -> None:
        if identity.trust_domain != self.trust_domain:
            raise InvalidIdentity(
                f"{identity.uri} is in trust domain {identity.trust_domain!r}; this CA issues "
                f"only for {self.trust_domain!r}"
            )


def _check_hostname(name: str) -> str:
    lowered = name.strip().lower().rstrip(".")
    if len(lowered) > 253 or not _HOSTNAME.fullmatch(lowered):
        raise InvalidIdentity(
            f"server name {name!r} is not a DNS name (dot-separated labels of a-z, 0-9 and '-', "
            "optionally starting with '*.')"
        )
    return lowered


def _check_ip(value: str | IPAddress) -> IPAddress:
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return value
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError as exc:
        raise InvalidIdentity(f"server address {value!r} is not an IP address") from exc
