"""HTTP/1.1 message heads: find, parse, check and rewrite them. Pure: bytes in, objects out.

`httptools` (llhttp, strict mode) does the syntax, and refuses bare CR or LF line endings,
obs-fold and bad characters. This module adds the framing rules a proxy must enforce so that
it and the application behind it always agree where a message ends (RFC 9112 §6): one
Content-Length at most, never together with Transfer-Encoding, `chunked` as the only transfer
coding of a request and never in HTTP/1.0, one Host, and a Connection header that names none
of the framing headers (`_hop_by_hop`). Request targets are normalized: an absolute-form
`http://` target becomes origin-form with Host set to its authority (RFC 9112 §3.2.2: the
target's authority wins), so the application never sees two hosts; any other form is refused
except `*` for OPTIONS and an authority for CONNECT. Anything else is an `HttpError` carrying
the status to answer. Bodies are not touched here (see `_framing`).
"""

from __future__ import annotations

from dataclasses import dataclass

import httptools

from ._errors import HttpError
from ._hop_by_hop import (
    FRAMING_CRITICAL,
    check_connection_tokens,
    connection_tokens,
    dropped_names,
)

# Body framing of a message, as decided from its head.
NO_BODY = 0
LENGTH = 1
CHUNKED = 2
UNTIL_CLOSE = 3  # responses only: the body runs until the connection closes


IDEMPOTENT_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})

_HEAD_END = b"\r\n\r\n"


@dataclass(frozen=True, slots=True)
class Limits:
    max_head_bytes: int = 64 * 1024
    max_headers: int = 100


Header = tuple[bytes, bytes, bytes]  # (lower-case name, name as sent, value)


@dataclass(slots=True)
class Head:
    """What the proxy needs of a request or response head."""

    headers: list[Header]
    http10: bool
    framing: int
    length: int
    keep_alive: bool
    connection_tokens: frozenset[bytes]
    # request only
    method: bytes = b""
    target: bytes = b""
    host: bytes = b""
    upgrade: bytes = b""
    expect_continue: bool = False
    # response only
    status: int = 0
    reason: bytes = b""
    size: int = 0  # bytes the head took on the wire, including the blank line
    request_id: bytes | None = None  # x-request-id, if the request had one

    def get(self, lname: bytes) -> bytes | None:
        for name, _, value in self.headers:
            if name == lname:
                return value
        return None

    @property
    def idempotent(self) -> bool:
        return self.method in IDEMPOTENT_METHODS


class _Collector:
    """httptools callbacks: gathers the start line's pieces and the header list."""

    __slots__ = ("headers", "limit", "reason", "url")

    def __init__(self, limit: int) -> None:
        self.url = b""
        self.reason = b""
        self.headers: list[Header] = []
        self.limit = limit

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(self.headers) >= self.limit:
            raise HttpError(431, f"more than {self.limit} header fields")
        self.headers.append((name.lower(), name, value))


def find_head(buf: bytes | bytearray, limits: Limits) -> int:
    """Length of the complete head at the start of `buf` (blank line included), or -1.

    Raises 431 once more than `max_head_bytes` arrived without the head ending.
    """
    end = buf.find(_HEAD_END, 0, limits.max_head_bytes + 4)
    if end < 0:
        if len(buf) > limits.max_head_bytes:
            raise HttpError(431, f"request head larger than {limits.max_head_bytes} bytes")
        if b"\n\n" in buf or b"\r\n\n" in buf:
            raise HttpError(400, "lines must end with CRLF (a bare LF ends this head)")
        return -1
    return end + 4


def _content_length(values: list[bytes], status: int) -> int:
    if len(values) > 1:
        raise HttpError(
            status,
            "more than one Content-Length header (request smuggling risk)",
            label="ambiguous_framing",
        )
    value = values[0].strip()
    if not value.isdigit() or len(value) > 18:
        raise HttpError(
            status,
            f"Content-Length {value[:40]!r} is not a non-negative integer",
            label="ambiguous_framing",
        )
    return int(value)


def parse_request_head(raw: bytes, limits: Limits) -> Head:
    """Parse a complete request head (as delimited by `find_head`)."""
    size = len(raw)
    raw = raw.lstrip(b"\r\n") if raw[:1] in (b"\r", b"\n") else raw
    collector = _Collector(limits.max_headers)
    parser = httptools.HttpRequestParser(collector)
    try:
        parser.feed_data(raw)
    except httptools.HttpParserUpgrade:
        pass  # Upgrade and CONNECT stop llhttp after the head; the proxy decides what follows
    except HttpError:
        raise
    except httptools.HttpParserError as exc:
        cause = exc.__context__ if isinstance(exc.__context__, HttpError) else None
        if cause is not None:
            raise cause from None
        raise HttpError(400, f"malformed request: {exc}") from None
    version = parser.get_http_version()
    if version not in ("1.1", "1.0"):
        if version in ("0.9", ""):
            raise HttpError(
                400,
                "the request line has no HTTP version (HTTP/0.9 is not served)",
                label="http_version",
            )
        raise HttpError(505, f"HTTP version {version} is not supported (use HTTP/1.1)")
    http10 = version == "1.0"
    method = parser.get_method()
    headers = collector.headers

    conn: list[bytes] = []
    te: list[bytes] = []
    cl: list[bytes] = []
    hosts: list[bytes] = []
    upgrade = b""
    expect = b""
    request_id = None
    for lname, _, value in headers:
        if lname == b"connection":
            conn.append(value)
        elif lname == b"transfer-encoding":
            te.append(value)
        elif lname == b"content-length":
            cl.append(value)
        elif lname == b"host":
            hosts.append(value)
        elif lname == b"upgrade":
            upgrade = value
        elif lname == b"expect":
            expect = value
        elif lname == b"x-request-id":
            request_id = value

    if len(hosts) > 1:
        raise HttpError(400, "more than one Host header", label="ambiguous_host")
    if not hosts and not http10:
        raise HttpError(400, "HTTP/1.1 request without a Host header", label="ambiguous_host")
    if te:
        if http10:
            raise HttpError(
                400, "Transfer-Encoding in an HTTP/1.0 request", label="ambiguous_framing"
            )
        if cl:
            raise HttpError(
                400,
                "both Content-Length and Transfer-Encoding (request smuggling risk)",
                label="ambiguous_framing",
            )
        codings = [c.strip().lower() for v in te for c in v.split(b",")]
        if codings[-1] != b"chunked" or codings.count(b"chunked") != 1:
            raise HttpError(
                400,
                "Transfer-Encoding must end with exactly one 'chunked'",
                label="ambiguous_framing",
            )
        if len(codings) != 1:
            raise HttpError(501, "transfer codings other than 'chunked' are not supported")
        framing, length = CHUNKED, 0
    elif cl:
        length = _content_length(cl, 400)
        framing = LENGTH if length else NO_BODY
    else:
        framing, length = NO_BODY, 0

    tokens = connection_tokens(conn) if conn else frozenset()
    if tokens:
        check_connection_tokens(tokens, 400)
    keep_alive = (b"keep-alive" in tokens) if http10 else (b"close" not in tokens)
    if upgrade and (b"upgrade" not in tokens or b"h2c" in upgrade.lower()):
        # h2c is never switched to: HTTP/2 frames after a 101 would carry headers (identity
        # ones too) that no proxy rule ever sees. The request is served as HTTP/1.1 instead.
        upgrade = b""
    target = collector.url
    if target[:1] != b"/" or method == b"CONNECT":
        target, host = _normalize_target(method, target)
        if host is not None:
            headers = [h for h in headers if h[0] != b"host"]
            headers.append((b"host", b"Host", host))
            hosts = [host]
    expect_continue = False
    if expect:
        if expect.strip().lower() != b"100-continue":
            raise HttpError(417, f"unsupported expectation {expect[:40]!r}")
        expect_continue = not http10
    return Head(
        headers=headers,
        http10=http10,
        framing=framing,
        length=length,
        keep_alive=keep_alive,
        connection_tokens=tokens,
        method=method,
        target=target,
        host=hosts[0] if hosts else b"",
        upgrade=upgrade,
        expect_continue=expect_continue,
        size=size,
        request_id=request_id,
    )


def _normalize_target(method: bytes, target: bytes) -> tuple[bytes, bytes | None]:
    """(origin-form target, the Host it implies or None) for a target not in origin form."""
    if method == b"CONNECT":
        if not target or b"/" in target or b"@" in target:
            raise HttpError(
                400, "CONNECT needs an authority target such as 'billing:443'", label="bad_target"
            )
        return target, None
    if target == b"*":
        if method != b"OPTIONS":
            raise HttpError(400, "the '*' target is only for OPTIONS", label="bad_target")
        return target, None
    scheme = target[:8].lower()
    if scheme.startswith(b"http://"):
        rest = target[7:]
        cut = len(rest)
        for sep in (b"/", b"?", b"#"):
            i = rest.find(sep)
            if 0 <= i < cut:
                cut = i
        authority, path = rest[:cut], rest[cut:]
        if not authority or b"@" in authority:
            raise HttpError(
                400,
                f"absolute target {target[:80]!r} needs a host and no user information",
                label="bad_target",
            )
        if not path.startswith(b"/"):
            path = b"/" + path
        return path, authority
    if scheme.startswith(b"https://"):
        raise HttpError(
            400, "an https:// target must be tunnelled with CONNECT", label="bad_target"
        )
    raise HttpError(400, f"malformed request target {target[:80]!r}", label="bad_target")


def parse_response_head(raw: bytes, request_method: bytes, limits: Limits) -> Head:
    """Parse a complete response head; errors are 502s (the upstream misbehaved)."""
    collector = _Collector(limits.max_headers)
    parser = httptools.HttpResponseParser(collector)
    try:
        parser.feed_data(raw)
    except httptools.HttpParserUpgrade:
        pass
    except httptools.HttpParserError as exc:
        detail = exc.__context__.reason if isinstance(exc.__context__, HttpError) else str(exc)
        raise HttpError(502, f"invalid response from upstream: {detail}") from None
    except HttpError as exc:
        raise HttpError(502, f"invalid response from upstream: {exc.reason}") from None
    status = parser.get_status_code()
    version = parser.get_http_version()
    if version not in ("1.1", "1.0"):
        raise HttpError(502, f"upstream answered with HTTP version {version!r}")
    headers = collector.headers
    conn: list[bytes] = []
    te: list[bytes] = []
    cl: list[bytes] = []
    for lname, _, value in headers:
        if lname == b"connection":
            conn.append(value)
        elif lname == b"transfer-encoding":
            te.append(value)
        elif lname == b"content-length":
            cl.append(value)
    if te and cl:
        raise HttpError(502, "upstream response has both Content-Length and Transfer-Encoding")
    length = 0
    if request_method == b"HEAD" or status < 200 or status in (204, 304):
        framing = NO_BODY
        if cl and status not in (204,) and status >= 200:
            _content_length(cl, 502)  # still must be well-formed
    elif te:
        codings = [c.strip().lower() for v in te for c in v.split(b",")]
        framing = CHUNKED if codings[-1] == b"chunked" else UNTIL_CLOSE
    elif cl:
        length = _content_length(cl, 502)
        framing = LENGTH if length else NO_BODY
    else:
        framing = UNTIL_CLOSE
    http10 = version == "1.0"
    tokens = connection_tokens(conn) if conn else frozenset()
    if tokens:
        check_connection_tokens(tokens, 502)
    keep_alive = (b"keep-alive" in tokens) if http10 else (b"close" not in tokens)
    if framing == UNTIL_CLOSE:
        keep_alive = False
    elif status in (204, 304) and (te or (cl and cl[0].strip() != b"0")):
        # A bodiless answer that announces a body: if the upstream sends one anyway it would
        # be read as the next request's response, so this connection is not reused.
        keep_alive = False
    return Head(
        headers=headers,
        http10=http10,
        framing=framing,
        length=length,
        keep_alive=keep_alive,
        connection_tokens=tokens,
        status=status,
        reason=collector.reason,
        size=len(raw),
    )


def _dropped(head: Head) -> frozenset[bytes]:
    return dropped_names(head.connection_tokens)


def encode_request(
    head: Head,
    *,
    target: bytes | None = None,
    add: list[tuple[bytes, bytes]] | None = None,
    drop: frozenset[bytes] = frozenset(),
) -> bytes:
    """The head to send upstream: hop-by-hop headers removed, `add` appended.

    An upgrade request keeps `Upgrade` and gets `Connection: upgrade`, so the upstream can
    switch protocols; everything else the proxy decides per connection.
    """
    dropped = (_dropped(head) | drop) - FRAMING_CRITICAL if drop else _dropped(head)
    # An HTTP/1.0 request goes on as HTTP/1.0 so that the answer cannot be chunked, which an
    # HTTP/1.0 client could not read; the proxy still asks to keep its own connection open.
    version = b" HTTP/1.0\r\nConnection: keep-alive\r\n" if head.http10 else b" HTTP/1.1\r\n"
    parts = [head.method, b" ", head.target if target is None else target, version]
    append = parts.append
    for lname, name, value in head.headers:
        if lname in dropped:
            continue
        append(name)
        append(b": ")
        append(value)
        append(b"\r\n")
    if head.upgrade:
        append(b"Connection: upgrade\r\nUpgrade: ")
        append(head.upgrade)
        append(b"\r\n")
    if add:
        for name, value in add:
            append(name)
            append(b": ")
            append(value)
            append(b"\r\n")
    append(b"\r\n")
    return b"".join(parts)


def encode_response(
    head: Head,
    *,
    keep_alive: bool,
    http10_client: bool = False,
    add: list[tuple[bytes, bytes]] | None = None,
) -> bytes:
    """The head to send downstream, with the proxy's own connection decision."""
    parts = [b"HTTP/1.1 %d " % head.status, head.reason, b"\r\n"]
    append = parts.append
    dropped = _dropped(head)
    for lname, name, value in head.headers:
        if lname in dropped:
            continue
        append(name)
        append(b": ")
        append(value)
        append(b"\r\n")
    if head.status == 101:
        upgrade = head.get(b"upgrade") or b""
        append(b"Connection: upgrade\r\nUpgrade: ")
        append(upgrade)
        append(b"\r\n")
    elif not keep_alive:
        append(b"Connection: close\r\n")
    elif http10_client:
        append(b"Connection: keep-alive\r\n")
    if add:
        for name, value in add:
            append(name)
            append(b": ")
            append(value)
            append(b"\r\n")
    append(b"\r\n")
    return b"".join(parts)


_REASONS = {
    200: b"OK",
    400: b"Bad Request",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    413: b"Content Too Large",
    417: b"Expectation Failed",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    501: b"Not Implemented",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
    505: b"HTTP Version Not Supported",
}


def local_response(
    status: int,
    body: str,
    *,
    close: bool,
    headers: list[tuple[bytes, bytes]] | None = None,
    head_only: bool = False,
    content_type: bytes = b"text/plain; charset=utf-8",
) -> bytes:
    """A complete response the proxy makes itself (errors, refusals, admin pages)."""
    payload = body.encode()
    reason = _REASONS.get(status, b"Unknown")
    parts = [
        b"HTTP/1.1 %d %s\r\n" % (status, reason),
        b"Content-Type: " + content_type + b"\r\n",
        b"Content-Length: %d\r\n" % len(payload),
        b"Server: weft-proxy\r\n",
    ]
    if close:
        parts.append(b"Connection: close\r\n")
    for name, value in headers or ():
        parts.append(name + b": " + value + b"\r\n")
    parts.append(b"\r\n")
    if not head_only:
        parts.append(payload)
    return b"".join(parts)
