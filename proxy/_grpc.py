"""gRPC over HTTP/2, what a proxy must know of it. Pure.

- `timeout_seconds`: the `grpc-timeout` request header (`<1-8 digits><H|M|S|m|u|n>`); the
  proxy mins it with the route's timeout.
- `status_of`: the `grpc-status` of a response's trailers (or of a Trailers-Only response's
  headers). An HTTP 200 whose grpc-status is 14 is a failed call, not a success.
- `is_failure`: which codes count against an endpoint (failure accrual) and as failures in the
  metrics: the server-side ones (UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL,
  UNAVAILABLE, DATA_LOSS), as Linkerd and Envoy classify them; caller mistakes
  (INVALID_ARGUMENT, NOT_FOUND, ...) are answers, not failures.
- `trailers_only`: the response the proxy sends a gRPC caller when it fails itself (no
  endpoint, timeout, refused): HTTP 200 with grpc-status and grpc-message in one HEADERS frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote

OK = 0
CANCELLED = 1
UNKNOWN = 2
DEADLINE_EXCEEDED = 4
PERMISSION_DENIED = 7
RESOURCE_EXHAUSTED = 8
UNIMPLEMENTED = 12
INTERNAL = 13
UNAVAILABLE = 14
DATA_LOSS = 15

FAILURES = frozenset({UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS})

_UNITS = {b"H": 3600.0, b"M": 60.0, b"S": 1.0, b"m": 1e-3, b"u": 1e-6, b"n": 1e-9}

# What an HTTP status the proxy answers becomes for a gRPC caller (the gRPC spec's mapping of
# HTTP to gRPC codes, plus the proxy's own 504 and 403).
_FROM_HTTP = {
    400: INTERNAL,
    401: 16,  # UNAUTHENTICATED
    403: PERMISSION_DENIED,
    404: UNIMPLEMENTED,
    408: DEADLINE_EXCEEDED,
    429: UNAVAILABLE,
    502: UNAVAILABLE,
    503: UNAVAILABLE,
    504: DEADLINE_EXCEEDED,
}


def is_grpc(content_type: bytes | None) -> bool:
    """`application/grpc`, optionally `+proto`, `+json`, `;...`."""
    if content_type is None:
        return False
    ct = content_type.lower()
    return ct == b"application/grpc" or ct.startswith((b"application/grpc+", b"application/grpc;"))


def timeout_seconds(value: bytes | None) -> float | None:
    """The `grpc-timeout` header in seconds, or None when absent or malformed (ignored, as
    gRPC servers do with a value they cannot parse)."""
    if not value or len(value) > 9:
        return None
    digits, unit = value[:-1], value[-1:]
    if not digits.isdigit() or unit not in _UNITS:
        return None
    return int(digits) * _UNITS[unit]


def status_of(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The grpc-status in `headers`, or None when absent or not a number."""
    for name, value in headers:
        if name == b"grpc-status":
            return int(value) if value.isdigit() and len(value) <= 3 else None
    return None


def is_failure(status: int | None) -> bool:
    """A missing grpc-status on a gRPC response is a broken call (the spec: INTERNAL)."""
    return status is None or status in FAILURES


def from_http(status: int) -> int:
    return _FROM_HTTP.get(status, UNKNOWN)


def trailers_only(
    code: int, message: str, extra: Sequence[tuple[bytes, bytes]] = ()
) -> list[tuple[bytes, bytes]]:
    """A Trailers-Only response: the proxy's own failure, as a gRPC caller understands it.

    grpc-message is percent-encoded (the spec), so any reason text is safe to send."""
    return [
        (b":status", b"200"),
        (b"content-type", b"application/grpc"),
        (b"grpc-status", str(code).encode()),
        (b"grpc-message", quote(message[:1024], safe=" !#$&'()*+,/:;=?@[]~-._").encode()),
        *extra,
    ]


def method_label(path: bytes) -> str:
    """`/pkg.Service/Method` as a metric label; anything else is `other`."""
    if path.startswith(b"/") and path.count(b"/") == 2 and len(path) <= 200:
        try:
            return path.decode("ascii")
        except UnicodeDecodeError:
            return "other"
    return "other"
