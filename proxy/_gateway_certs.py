"""The gateway's public certificates: operator cert/key pairs chosen by SNI, reloaded safely.

Each pair is a PEM certificate chain and its key. The names a pair serves are the DNS names
of its leaf's subjectAltName (`*.example.com` included); a client's SNI picks the pair with
that exact name, else the longest wildcard that covers it, else the default pair (the one the
settings name, or the first). A client without SNI gets the default.

`reload` re-reads every pair whose files changed (SIGHUP, or the file check every
`watch_interval`). A pair that no longer loads — a certificate without its key yet, a key that
is not the certificate's, a truncated file — keeps its old context and is logged, as the
server's TLS reload does; the others move on. Only new handshakes see new contexts: an
established connection keeps the `SSLSocket` it has, so nothing in flight is dropped.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ._errors import TlsSetupError
from ._tls import ALPN_HTTP1, _children, _tlv, pem_certificates

log = logging.getLogger("weft.gateway")

_SAN_OID = bytes.fromhex("551d11")

FileSig = tuple[tuple[int, int, int] | None, tuple[int, int, int] | None]


def dns_names(der: bytes) -> list[str]:
    """The DNS names (subjectAltName dNSName) of a DER certificate, lower-cased."""
    try:
        _, cert_start, cert_end = _tlv(der, 0)
        _, tbs_start, tbs_end = _children(der, cert_start, cert_end)[0]
        fields = _children(der, tbs_start, tbs_end)
        if fields and fields[0][0] == 0xA0:
            fields = fields[1:]
        names: list[str] = []
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
                    if name_tag == 0x82:  # dNSName [2] IA5String
                        names.append(der[ns:ne].decode("ascii").lower())
    except (IndexError, ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"not a parsable X.509 certificate: {exc}") from None
    return names


def _signature(path: str) -> tuple[int, int, int] | None:
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


@dataclass(frozen=True, slots=True)
class CertPair:
    cert: str
    key: str

    def signature(self) -> FileSig:
        return (_signature(self.cert), _signature(self.key))


@dataclass(frozen=True, slots=True)
class Loaded:
    pair: CertPair
    signature: FileSig
    context: ssl.SSLContext
    names: tuple[str, ...]
    serial: bytes  # the leaf's DER, to tell one certificate from the next in logs and tests


def load_pair(pair: CertPair) -> Loaded:
    """A server context for one pair, or TlsSetupError naming the file and the problem."""
    signature = pair.signature()
    try:
        pem = Path(pair.cert).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise TlsSetupError(f"certificate {pair.cert}: cannot be read: {exc}") from exc
    ders = pem_certificates(pem)
    if not ders:
        raise TlsSetupError(f"certificate {pair.cert}: holds no PEM certificate")
    try:
        names = dns_names(ders[0])
    except ValueError as exc:
        raise TlsSetupError(f"certificate {pair.cert}: {exc}") from exc
    if not names:
        raise TlsSetupError(
            f"certificate {pair.cert}: has no DNS names (subjectAltName) to serve by SNI"
        )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # public clients: TLS 1.2 is still common
    ctx.set_alpn_protocols([ALPN_HTTP1])
    try:
        ctx.load_cert_chain(pair.cert, pair.key)
    except (ssl.SSLError, OSError) as exc:
        raise TlsSetupError(
            f"certificate {pair.cert} with key {pair.key}: cannot be loaded (is the key the "
            f"certificate's, both PEM?): {exc}"
        ) from exc
    if pair.signature() != signature:
        raise TlsSetupError(f"certificate {pair.cert}: the files changed while being read")
    return Loaded(pair, signature, ctx, tuple(names), ders[0])


class CertStore:
    """The loaded pairs and the SNI choice among them."""

    def __init__(self, pairs: Sequence[CertPair], default: int = 0) -> None:
        self.pairs = tuple(pairs)
        self.default = default
        self.loaded: list[Loaded] = [load_pair(p) for p in self.pairs]  # fails at start
        self._broken: dict[int, FileSig] = {}
        self.reloads = 0
        self.refused = 0
        self._index()
        self.front = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.front.minimum_version = ssl.TLSVersion.TLSv1_2
        self.front.set_alpn_protocols([ALPN_HTTP1])
        # The front context is only the first word of a handshake: the SNI callback swaps in
        # the chosen pair's context, whose certificate the client then gets. Without SNI the
        # callback still runs (with None), so the default pair answers.
        first = self.pairs[default]
        self.front.load_cert_chain(first.cert, first.key)
        self.front.sni_callback = self._choose

    def _index(self) -> None:
        exact: dict[str, ssl.SSLContext] = {}
        wild: list[tuple[str, ssl.SSLContext]] = []
        for loaded in self.loaded:
            for name in loaded.names:
                if name.startswith("*."):
                    wild.append((name[1:], loaded.context))
                else:
                    exact.setdefault(name, loaded.context)
        wild.sort(key=lambda item: -len(item[0]))
        self._exact, self._wild = exact, tuple(wild)

    def context_for(self, server_name: str | None) -> ssl.SSLContext:
        if server_name:
            name = server_name.lower().rstrip(".")
            found = self._exact.get(name)
            if found is not None:
                return found
            for suffix, ctx in self._wild:
                # a wildcard covers exactly one label, as TLS clients check it
                if name.endswith(suffix) and "." not in name[: -len(suffix)]:
                    return ctx
        return self.loaded[self.default].context

    def _choose(self, sock: ssl.SSLObject | ssl.SSLSocket, name: str | None, _: object) -> None:
        sock.context = self.context_for(name)
        # The router holds a connection to the name it was opened for (421 otherwise).
        try:
            sock.weft_server_name = name  # type: ignore[union-attr]
        except AttributeError:
            pass

    def reload(self) -> bool:
        """Re-read changed pairs; True if any new one is now in use."""
        changed = False
        for i, pair in enumerate(self.pairs):
            signature = pair.signature()
            if signature == self.loaded[i].signature or signature == self._broken.get(i):
                continue
            try:
                fresh = load_pair(pair)
            except TlsSetupError as exc:
                self._broken[i] = signature
                self.refused += 1
                log.warning(
                    "new certificate refused; keeping the loaded one",
                    extra={"kv": {"certificate": pair.cert, "error": str(exc)}},
                )
                continue
            self._broken.pop(i, None)
            self.loaded[i] = fresh
            changed = True
            log.info(
                "certificate reloaded",
                extra={"kv": {"certificate": pair.cert, "names": ",".join(fresh.names)}},
            )
        if changed:
            self.reloads += 1
            self._index()
        return changed

    def describe(self) -> list[dict[str, object]]:
        return [
            {"cert": lo.pair.cert, "names": list(lo.names), "default": i == self.default}
            for i, lo in enumerate(self.loaded)
        ]
