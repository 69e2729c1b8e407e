"""What people read about certificates: fingerprints, expiry dates, one-line summaries.

For `weft ca status|issue`, the agent's logs and the server's status page; pure formatting.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from ._errors import InvalidCAMaterial
from ._keys import describe_key


def _as_certificate(cert: x509.Certificate | str | bytes) -> x509.Certificate:
    if isinstance(cert, x509.Certificate):
        return cert
    data = cert.encode() if isinstance(cert, str) else cert
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise InvalidCAMaterial(f"not a PEM certificate: {exc}") from exc


def fingerprint_sha256(cert: x509.Certificate | str | bytes) -> str:
    """'AB:CD:...' (32 colon-separated bytes), as `openssl x509 -fingerprint -sha256` prints."""
    der = _as_certificate(cert).public_bytes(serialization.Encoding.DER)
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def format_duration(span: timedelta) -> str:
    """'3d 4h', '23h 59m', '5m 10s', '12s': the two largest units, for humans."""
    seconds = int(abs(span.total_seconds()))
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size or (unit == "s" and not parts):
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
        if len(parts) == 2:
            break
    return " ".join(parts)


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def format_expiry(not_after: datetime, now: datetime) -> str:
    """'2026-05-11 10:00:00 UTC (in 23h 59m)' or '... (expired 2h 5m ago)'."""
    left = not_after - now
    when = (
        f"in {format_duration(left)}"
        if left > timedelta(0)
        else (f"expired {format_duration(left)} ago")
    )
    return f"{format_time(not_after)} ({when})"


@dataclass(frozen=True, slots=True)
class CertificateSummary:
    subject: str
    issuer: str
    serial_hex: str
    not_before: datetime
    not_after: datetime
    fingerprint: str
    key: str
    is_ca: bool
    uris: tuple[str, ...]
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]

    @property
    def spiffe_id(self) -> str | None:
        return next((u for u in self.uris if u.startswith("spiffe://")), None)

    def lines(self, now: datetime) -> list[str]:
        """A small block for terminals; `now` decides the 'in 23h' / 'expired' wording."""
        out = [f"subject:     {self.subject}", f"issuer:      {self.issuer}"]
        names = [*self.uris, *self.dns_names, *self.ip_addresses]
        if names:
            out.append(f"names:       {', '.join(names)}")
        out += [
            f"serial:      {self.serial_hex}",
            f"key:         {self.key}{' (CA)' if self.is_ca else ''}",
            f"valid from:  {format_time(self.not_before)}",
            f"expires:     {format_expiry(self.not_after, now)}",
            f"sha256:      {self.fingerprint}",
        ]
        return out


def describe_certificate(cert: x509.Certificate | str | bytes) -> CertificateSummary:
    c = _as_certificate(cert)
    try:
        san = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = tuple(san.get_values_for_type(x509.UniformResourceIdentifier))
        dns = tuple(san.get_values_for_type(x509.DNSName))
        ips = tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        uris, dns, ips = (), (), ()
    try:
        is_ca = c.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    return CertificateSummary(
        subject=c.subject.rfc4514_string(),
        issuer=c.issuer.rfc4514_string(),
        serial_hex=format(c.serial_number, "x"),
        not_before=c.not_valid_before_utc,
        not_after=c.not_valid_after_utc,
        fingerprint=fingerprint_sha256(c),
        key=describe_key(c.public_key()),
        is_ca=is_ca,
        uris=uris,
        dns_names=dns,
        ip_addresses=ips,
    )


def common_name(cert: x509.Certificate) -> str:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = attrs[0].value if attrs else cert.subject.rfc4514_string()
    return value if isinstance(value, str) else value.decode()
