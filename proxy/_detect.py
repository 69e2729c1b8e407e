"""Protocol detection from a connection's first bytes (Linkerd-style). Pure.

The inbound proxy peeks at what a mesh client without ALPN sends first: a strict HTTP/1.x
request line is served as HTTP, anything else (HTTP/2, TLS, other bytes) is refused with 400,
never spliced, so that on an `http` inbound every byte the application gets went through the
HTTP rules. Protocols other than HTTP/1.1 (and server-speaks-first ones such as SMTP or MySQL,
which send nothing first) must be declared `tcp` in the snapshot.
"""

from __future__ import annotations

import enum
import re


class Protocol(enum.Enum):
    HTTP1 = "http1"
    HTTP2 = "h2"  # prior-knowledge HTTP/2; forwarded opaque
    TLS = "tls"  # a TLS ClientHello inside the mesh's TLS; forwarded opaque
    OPAQUE = "opaque"


# method SP request-target SP HTTP/1.x CRLF
_REQUEST_LINE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,32} [^ \r\n]{1,8192} HTTP/1\.[01]\r\n")
_METHOD_PREFIX = re.compile(
    rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]{0,32}(?: [^ \r\n]{0,8192}(?: H?T?T?P?/?1?\.?[01]?\r?)?)?"
)
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MAX_PEEK = 8192 + 64


def detect(prefix: bytes) -> Protocol | None:
    """The protocol `prefix` starts, or None when more bytes are needed to tell."""
    if not prefix:
        return None
    if prefix[0] == 0x16:  # a TLS handshake record, if the version byte that follows is 3
        if len(prefix) < 2:
            return None
        return Protocol.TLS if prefix[1] == 0x03 else Protocol.OPAQUE
    if _H2_PREFACE.startswith(prefix[: len(_H2_PREFACE)]):
        return Protocol.HTTP2 if len(prefix) >= len(_H2_PREFACE) else None
    end = prefix.find(b"\n")
    if end >= 0:
        return Protocol.HTTP1 if _REQUEST_LINE.match(prefix[: end + 1]) else Protocol.OPAQUE
    if len(prefix) >= MAX_PEEK:
        return Protocol.OPAQUE
    match = _METHOD_PREFIX.match(prefix)
    return None if match and match.end() == len(prefix) else Protocol.OPAQUE
