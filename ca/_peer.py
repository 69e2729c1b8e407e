"""Checking a TLS peer's mesh identity, and saying why a mesh handshake failed.

TLS (OpenSSL, with the trust bundle as its CA store) verifies the chain and the validity
period; `verify_peer` then checks what TLS knows nothing about: that the verified certificate is
a workload certificate carrying exactly one SPIFFE ID, in the expected trust domain, for an
identity the caller expects. `explain_tls_failure` turns what OpenSSL reports into a
PeerRejected whose `rule` and message say which check failed.
"""

from __future__ import annotations

import ssl
from collections.abc import Collection
from datetime import datetime

from cryptography import x509

from ._display import format_time
from ._errors import InvalidIdentity, PeerRejected, PeerRule
from ._identity import SpiffeId


def mesh_ssl_context(*, server_side: bool, bundle_pem: str) -> ssl.SSLContext:
    """A TLS 1.3-only context that requires and verifies the peer's certificate against
    `bundle_pem`. No hostname check: mesh identities are SPIFFE IDs, checked by `verify_peer`
    after the handshake. The caller loads its own certificate chain and key."""
    purpose = ssl.Purpose.CLIENT_AUTH if server_side else ssl.Purpose.SERVER_AUTH
    context = ssl.create_default_context(purpose, cadata=bundle_pem)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def verify_peer(
    certificate: bytes | x509.Certificate | None,
    trust_domain: str,
    *,
    expected: SpiffeId | Collection[SpiffeId] | None = None,
    now: datetime | None = None,
) -> SpiffeId:
    """Return the SPIFFE ID of a TLS-verified peer certificate (DER, as from
    `getpeercert(binary_form=True)`), or raise PeerRejected naming the rule it broke.

    expected: the identity (or identities) the caller will talk to; None accepts any workload
    of `trust_domain` (intentions decide later). now: also check the validity period, for a
    certificate that was verified some time ago.
    """
    if certificate is None:
        raise PeerRejected(
            "the peer presented no certificate; mesh connections need mutual TLS",
            PeerRule.NO_CERTIFICATE,
        )
    cert = _load(certificate)
    if now is not None:
        _check_period(cert, now)
    try:
        extensions = cert.extensions
        constraints = extensions.get_extension_for_class(x509.BasicConstraints).value
        is_ca = constraints.ca
    except x509.ExtensionNotFound:
        is_ca = False
    except ValueError as exc:
        raise PeerRejected(
            f"the peer certificate's extensions are malformed: {exc}", PeerRule.MALFORMED
        ) from exc
    if is_ca:
        raise PeerRejected(
            "the peer presented a CA certificate; a workload must present its leaf",
            PeerRule.IS_CA,
        )
    identity = _spiffe_id(cert)
    if identity.trust_domain != trust_domain:
        raise PeerRejected(
            f"the peer is {identity.uri}, from trust domain {identity.trust_domain!r}; "
            f"expected a workload of trust domain {trust_domain!r}",
            PeerRule.TRUST_DOMAIN,
        )
    if expected is not None:
        allowed = {expected} if isinstance(expected, SpiffeId) else set(expected)
        if identity not in allowed:
            wanted = " or ".join(sorted(e.uri for e in allowed)) or "nobody"
            raise PeerRejected(f"the peer is {identity.uri}; expected {wanted}", PeerRule.IDENTITY)
    return identity


def _load(certificate: bytes | x509.Certificate) -> x509.Certificate:
    if isinstance(certificate, x509.Certificate):
        return certificate
    try:
        return x509.load_der_x509_certificate(certificate)
    except ValueError as exc:
        raise PeerRejected(
            f"the peer certificate is not DER X.509: {exc}", PeerRule.MALFORMED
        ) from exc


def _check_period(cert: x509.Certificate, now: datetime) -> None:
    if now < cert.not_valid_before_utc:
        raise PeerRejected(
            f"the peer certificate is not valid before {format_time(cert.not_valid_before_utc)}"
            " (is a clock wrong?)",
            PeerRule.NOT_YET_VALID,
        )
    if now >= cert.not_valid_after_utc:
        raise PeerRejected(
            f"the peer certificate expired at {format_time(cert.not_valid_after_utc)}; "
            "its holder must renew it",
            PeerRule.EXPIRED,
        )


def _spiffe_id(cert: x509.Certificate) -> SpiffeId:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    except ValueError as exc:
        raise PeerRejected(
            f"the peer certificate's SAN is malformed: {exc}", PeerRule.MALFORMED
        ) from exc
    if not uris:
        raise PeerRejected(
            "the peer certificate has no URI SAN; a mesh workload carries its SPIFFE ID there",
            PeerRule.NO_SPIFFE_ID,
        )
    if len(uris) > 1:
        raise PeerRejected(
            f"the peer certificate has {len(uris)} URI SANs ({', '.join(uris)}); a mesh "
            "workload carries exactly one, its SPIFFE ID",
            PeerRule.SEVERAL_URIS,
        )
    try:
        return SpiffeId.parse(uris[0])
    except InvalidIdentity as exc:
        raise PeerRejected(
            f"the peer's URI SAN is not a Weft SPIFFE ID: {exc}", PeerRule.NO_SPIFFE_ID
        ) from exc


# OpenSSL X509_V_ERR_* codes as ssl.SSLCertVerificationError.verify_code reports them.
_VERIFY_CODES: dict[int, tuple[PeerRule, str]] = {
    9: (PeerRule.NOT_YET_VALID, "the peer certificate is not yet valid (is a clock wrong?)"),
    10: (PeerRule.EXPIRED, "the peer certificate has expired; its holder must renew it"),
    2: (PeerRule.UNTRUSTED_CA, "the peer certificate's issuer is unknown"),
    18: (PeerRule.UNTRUSTED_CA, "the peer certificate is self-signed"),
    19: (PeerRule.UNTRUSTED_CA, "the peer's chain ends in a root that is not trusted"),
    20: (PeerRule.UNTRUSTED_CA, "the peer certificate is signed by a CA not in the trust bundle"),
    21: (PeerRule.UNTRUSTED_CA, "the peer certificate is signed by a CA not in the trust bundle"),
    7: (PeerRule.UNTRUSTED_CA, "the peer certificate's signature does not verify"),
}
# TLS alerts the peer sends when it rejects *our* certificate (ssl.SSLError.reason).
_ALERTS: dict[str, str] = {
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "it has expired",
    "TLSV1_ALERT_UNKNOWN_CA": "it is signed by a CA the peer does not trust",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the peer found it bad",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": "the peer could not use it",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "none was sent, and the peer requires one",
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE": "the peer does not support it",
}


def explain_tls_failure(exc: BaseException) -> PeerRejected:
    """A PeerRejected for a failed mesh handshake: finds the ssl error in `exc`'s causes (trio
    wraps it in BrokenResourceError) and names the rule. Raise it `from exc`."""
    for cause in _causes(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):
            code = getattr(cause, "verify_code", None)
            rule, text = _VERIFY_CODES.get(
                code if isinstance(code, int) else -1,
                (PeerRule.HANDSHAKE, "the peer certificate failed verification"),
            )
            detail = getattr(cause, "verify_message", None) or str(cause)
            return PeerRejected(f"{text} ({detail})", rule)
        if isinstance(cause, ssl.SSLError):
            reason = str(getattr(cause, "reason", "") or "")
            if isinstance(cause, ssl.SSLEOFError) or reason == "UNEXPECTED_EOF_WHILE_READING":
                return PeerRejected(
                    "the peer closed the connection during the TLS handshake without saying "
                    "why: it most likely rejected our certificate (expired, or signed by a CA "
                    "it does not trust); its log names the reason",
                    PeerRule.REJECTED_BY_PEER,
                )
            if reason in _ALERTS:
                return PeerRejected(
                    f"the peer rejected our certificate: {_ALERTS[reason]} ({reason.lower()})",
                    PeerRule.REJECTED_BY_PEER,
                )
            return PeerRejected(f"the TLS handshake failed: {cause}", PeerRule.HANDSHAKE)
    return PeerRejected(f"the TLS connection failed: {exc!r}", PeerRule.HANDSHAKE)


def _causes(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    todo = [exc]
    while todo:
        current = todo.pop(0)
        if any(current is s for s in seen):
            continue
        seen.append(current)
        if isinstance(current, BaseExceptionGroup):
            todo.extend(current.exceptions)
        for nxt in (current.__cause__, current.__context__):
            if nxt is not None:
                todo.append(nxt)
    return seen
