"""A service's key and certificate chain as one file, and whether one on disk may be reused.

The key and its certificate live in one PEM file (`<service>.pem`: the private key, then the
leaf, then its intermediates), replaced by one rename. Two files would need two renames, and a
crash, a kill -9 or a full disk between them leaves a key that is not its certificate's; one
file is always a matching pair, old or new. The proxy reads it as both `tls.cert` and `tls.key`
(OpenSSL takes the certificates and the key from the same file), with a single open.

`reuse_problem` reads the file and says why the pair in it must not be reused, or None; its
chain check is a TLS handshake between two in-memory endpoints (no sockets).
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ca import SpiffeId

_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----\r?\n?", re.DOTALL)


@dataclass(frozen=True)
class Pair:
    key_pem: bytes
    chain_pem: bytes  # the leaf first, then its intermediates

    def combined(self) -> bytes:
        """What is written to disk: the key, then the chain."""
        return self.key_pem.rstrip(b"\n") + b"\n" + self.chain_pem.lstrip(b"\n")

    @classmethod
    def parse(cls, data: bytes) -> Pair:
        """Split a combined file; ValueError if it lacks a key or a certificate."""
        keys, certs = [], []
        for match in _BLOCK.finditer(data):
            label = match.group(1)
            if label.endswith(b"PRIVATE KEY"):
                keys.append(match.group(0))
            elif label == b"CERTIFICATE":
                certs.append(match.group(0))
        if len(keys) != 1:
            raise ValueError(f"expected one private key, found {len(keys)}")
        if not certs:
            raise ValueError("no certificate")
        return cls(keys[0], b"".join(c if c.endswith(b"\n") else c + b"\n" for c in certs))


def reuse_problem(path: Path, identity: SpiffeId, bundle_pem: str, now: datetime) -> str | None:
    """Why the combined file at `path` must not be reused for `identity`, or None if it may.

    Reusable means: a key and a leaf that belong together, the leaf valid at `now` and
    carrying exactly `identity`, and a chain that a peer trusting `bundle_pem` accepts
    (checked by OpenSSL itself, in memory, as a peer's handshake would).
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return "no certificate on disk"
    except OSError as exc:
        return f"unreadable: {exc.strerror}"
    try:
        pair = Pair.parse(data)
        key = serialization.load_pem_private_key(pair.key_pem, password=None)
        leaf = x509.load_pem_x509_certificate(pair.chain_pem)
    except ValueError as exc:
        return f"unreadable: {exc}"
    if _public(key.public_key()) != _public(leaf.public_key()):
        return "the key is not the certificate's"
    if not leaf.not_valid_before_utc <= now < leaf.not_valid_after_utc:
        return f"not valid now (valid {leaf.not_valid_before_utc} to {leaf.not_valid_after_utc})"
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    if uris != [identity.uri]:
        return f"for {', '.join(uris) or 'no URI SAN'}, not {identity.uri}"
    if not bundle_pem:
        return "no trust bundle to check its chain against"
    failure = _handshake_failure(path, bundle_pem)
    if failure:
        return f"does not chain to the current trust bundle ({failure})"
    return None


def _public(key: object) -> bytes:
    return key.public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _handshake_failure(path: Path, bundle_pem: str) -> str:
    """A TLS handshake in memory, with the file's pair as the server and the bundle as the
    client's only roots; "" if the client accepted the chain."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        server.load_cert_chain(path)
    except (ssl.SSLError, OSError) as exc:
        return f"OpenSSL refused the pair: {getattr(exc, 'reason', None) or exc}"
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    try:
        client.load_verify_locations(cadata=bundle_pem)
    except ssl.SSLError as exc:
        return f"the bundle is not PEM roots: {exc.reason or exc}"
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    c = client.wrap_bio(c_in, c_out, server_side=False)
    s = server.wrap_bio(s_in, s_out, server_side=True)
    c_done = s_done = False
    for _ in range(10):
        for side, done in ((c, c_done), (s, s_done)):
            if done:
                continue
            try:
                side.do_handshake()
                if side is c:
                    c_done = True
                else:
                    s_done = True
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLCertVerificationError as exc:
                return exc.verify_message or str(exc)
            except ssl.SSLError as exc:
                return exc.reason or str(exc)
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if c_done and s_done:
            return ""
    return "the handshake did not complete"
