"""TLS material from the snapshot's files, and the SPIFFE identities of peers.

`load_tls` builds the three `ssl.SSLContext`s a proxy uses (the inbound server, and clients
for HTTP and opaque upstreams) from one set of PEM files: TLS 1.3 only, a client certificate
required inbound, the trust bundle as the only roots, no host-name checks (the peer's SPIFFE
ID is checked instead). New files mean new contexts for new connections; open connections
keep the context they started with, so nothing is dropped when certificates rotate.

The proxy does not import `cryptography` (it costs ~15 MB of a 40 MB budget): the little it
reads from its own certificate (validity, URI SAN) comes from a small DER walk.
"""

from __future__ import annotations

import calendar
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ca import SpiffeId

from ._errors import TlsSetupError
from ._snapshot import TlsFiles

ALPN_HTTP1 = "http/1.1"
ALPN_H2 = "h2"


@dataclass(frozen=True, slots=True)
class CertInfo:
    uris: tuple[str, ...]
    not_before: float  # Unix time
    not_after: float


# -- DER, just enough of X.509 ----------------------------------------------------------


def _tlv(der: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of value, end of value) of the DER element at `pos`."""
    tag = der[pos]
    length = der[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(der[pos : pos + n], "big")
        pos += n
    if pos + length > len(der):
        raise ValueError("truncated DER element")
    return tag, pos, pos + length


def _children(der: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    out = []
    pos = start
    while pos < end:
        tag, s, e = _tlv(der, pos)
        out.append((tag, s, e))
        pos = e
    return out


def _time(der: bytes, tag: int, start: int, end: int) -> float:
    text = der[start:end].decode("ascii").rstrip("Z")
    if tag == 0x17:  # UTCTime, YYMMDDHHMMSS
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    parsed = time.strptime(text[:14], "%Y%m%d%H%M%S")
    return float(calendar.timegm(parsed))


_SAN_OID = bytes.fromhex("551d11")  # 2.5.29.17 subjectAltName


def certificate_info(der: bytes) -> CertInfo:
    """Validity and URI SANs of a DER certificate. Raises ValueError if it is not one."""
    try:
        _, cert_start, cert_end = _tlv(der, 0)
        _, tbs_start, tbs_end = _children(der, cert_start, cert_end)[0]
        fields = _children(der, tbs_start, tbs_end)
        if fields and fields[0][0] == 0xA0:  # explicit version
            fields = fields[1:]
        validity = fields[3]
        (t1, s1, e1), (t2, s2, e2) = _children(der, validity[1], validity[2])
        not_before, not_after = _time(der, t1, s1, e1), _time(der, t2, s2, e2)
        uris: list[str] = []
        for tag, start, end in fields[6:]:
            if tag != 0xA3:
                continue
            (_, seq_start, seq_end), *_ = _children(der, start, end)
            for _, ext_start, ext_end in _children(der, seq_start, seq_end):
                parts = _children(der, ext_start, ext_end)
                if der[parts[0][1] : parts[0][2]] != _SAN_OID:
                    continue
                _, os_start, os_end = parts[-1]
                (_, names_start, names_end), *_ = _children(der, os_start, os_end)
                for name_tag, ns, ne in _children(der, names_start, names_end):
                    if name_tag == 0x86:  # uniformResourceIdentifier [6] IA5String
                        uris.append(der[ns:ne].decode("ascii"))
    except (IndexError, ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"not a parsable X.509 certificate: {exc}") from None
    return CertInfo(tuple(uris), not_before, not_after)


def pem_certificates(pem: str) -> list[bytes]:
    """The DER bytes of every certificate in a PEM text, in order."""
    out = []
    marker = "-----BEGIN CERTIFICATE-----"
    pos = pem.find(marker)
    while pos >= 0:
        end = pem.find("-----END CERTIFICATE-----", pos)
        if end < 0:
            break
        end += len("-----END CERTIFICATE-----")
        out.append(ssl.PEM_cert_to_DER_cert(pem[pos:end]))
        pos = pem.find(marker, end)
    return out


# -- peers ----------------------------------------------------------------------------


def peer_identity(
    peercert: dict[str, Any] | None, trust_domain: str
) -> tuple[SpiffeId | None, str]:
    """The SPIFFE ID in a verified peer certificate (`SSLSocket.getpeercert()`).

    Returns (identity, "") or (None, reason) where reason is a metric label.
    """
    if not peercert:
        return None, "no_client_certificate"
    uris = [v for k, v in peercert.get("subjectAltName", ()) if k == "URI"]
    spiffe = [u for u in uris if u.startswith("spiffe://")]
    if len(spiffe) != 1:
        return None, "no_spiffe_id" if not spiffe else "several_spiffe_ids"
    try:
        sid = SpiffeId.parse(spiffe[0])
    except ValueError:
        return None, "invalid_spiffe_id"
    if sid.trust_domain != trust_domain:
        return None, "foreign_trust_domain"
    return sid, ""


# -- contexts -------------------------------------------------------------------------


Signature = tuple[tuple[int, int, int] | None, ...]


def files_signature(files: TlsFiles) -> Signature:
    """Changes whenever one of the three files is replaced or rewritten."""
    out: list[tuple[int, int, int] | None] = []
    for path in (files.cert, files.key, files.bundle):
        try:
            st = Path(path).stat()
            out.append((st.st_ino, st.st_mtime_ns, st.st_size))
        except OSError:
            out.append(None)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class TlsMaterial:
    files: TlsFiles
    signature: Signature
    server: ssl.SSLContext
    client_http: ssl.SSLContext
    client_tcp: ssl.SSLContext
    leaf: CertInfo
    # HTTP/2 (`http2`/`grpc` services): offer `h2` first and HTTP/1.1 after it, so a peer
    # that does not speak h2 (an older sidecar) still gets the HTTP/1.1 it knows.
    server_h2: ssl.SSLContext | None = None
    client_h2: ssl.SSLContext | None = None


def _context(side: int, files: TlsFiles, alpn: list[str] | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(side)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if side == ssl.PROTOCOL_TLS_CLIENT:
        ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    try:
        ctx.load_cert_chain(files.cert, files.key)
    except FileNotFoundError as exc:
        raise TlsSetupError(f"tls.cert/tls.key: {exc.filename} does not exist") from exc
    except (ssl.SSLError, OSError) as exc:
        raise TlsSetupError(
            f"tls.cert/tls.key: cannot load {files.cert} with {files.key} "
            f"(is the key the certificate's, both PEM?): {exc}"
        ) from exc
    try:
        ctx.load_verify_locations(cafile=files.bundle)
    except FileNotFoundError as exc:
        raise TlsSetupError(f"tls.bundle: {files.bundle} does not exist") from exc
    except (ssl.SSLError, OSError) as exc:
        raise TlsSetupError(f"tls.bundle: cannot load {files.bundle} as PEM roots: {exc}") from exc
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def load_tls(files: TlsFiles, identity: SpiffeId) -> TlsMaterial:
    """Contexts for `files`, checked to hold a certificate for `identity`."""
    signature = files_signature(files)
    try:
        with open(files.cert) as f:
            pem = f.read()
    except OSError as exc:
        raise TlsSetupError(f"tls.cert: cannot read {files.cert}: {exc.strerror}") from exc
    ders = pem_certificates(pem)
    if not ders:
        raise TlsSetupError(f"tls.cert: {files.cert} holds no PEM certificate")
    try:
        leaf = certificate_info(ders[0])
    except ValueError as exc:
        raise TlsSetupError(f"tls.cert: {files.cert}: {exc}") from exc
    if identity.uri not in leaf.uris:
        found = ", ".join(leaf.uris) or "no URI SAN"
        raise TlsSetupError(
            f"tls.cert: the certificate in {files.cert} is for {found}, "
            f"not this proxy's identity {identity.uri}"
        )
    server = _context(ssl.PROTOCOL_TLS_SERVER, files, [ALPN_HTTP1])
    client_http = _context(ssl.PROTOCOL_TLS_CLIENT, files, [ALPN_HTTP1])
    client_tcp = _context(ssl.PROTOCOL_TLS_CLIENT, files, None)
    server_h2 = _context(ssl.PROTOCOL_TLS_SERVER, files, [ALPN_H2, ALPN_HTTP1])
    client_h2 = _context(ssl.PROTOCOL_TLS_CLIENT, files, [ALPN_H2, ALPN_HTTP1])
    if files_signature(files) != signature:
        raise TlsSetupError("tls: the files changed while they were being read; retrying later")
    return TlsMaterial(
        files, signature, server, client_http, client_tcp, leaf, server_h2, client_h2
    )
