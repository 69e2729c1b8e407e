"""Requests and responses as bytes: pure functions, no I/O."""

from __future__ import annotations

import email.utils
import time
from http import HTTPStatus
from urllib.parse import parse_qs, unquote

from ._parser import ParsedRequest
from ._routing import Request, Response

_REASONS = {s.value: s.phrase for s in HTTPStatus}


class _Date:
    """The Date header, formatted at most once per second."""

    value = b""
    second = -1

    @classmethod
    def now(cls) -> bytes:
        second = int(time.time())
        if second != cls.second:
            cls.second = second
            cls.value = email.utils.formatdate(second, usegmt=True).encode()
        return cls.value


def serialize(response: Response, *, keep_alive: bool, head_only: bool = False) -> bytes:
    lines = [
        b"HTTP/1.1 %d %s\r\n" % (response.status, _REASONS.get(response.status, "").encode()),
        b"date: " + _Date.now() + b"\r\n",
        b"content-type: " + response.content_type.encode() + b"\r\n",
        b"content-length: %d\r\n" % len(response.body),
    ]
    for name, value in response.headers:
        lines.append(f"{name}: {value}\r\n".encode("latin-1", "replace"))
    if not keep_alive:
        lines.append(b"connection: close\r\n")
    lines.append(b"\r\n")
    if not head_only:
        lines.append(response.body)
    return b"".join(lines)


def split_target(target: str) -> tuple[str, str]:
    """The (path, query) of a request target, still percent-encoded.

    Origin-form (`/path?query`) is a path whatever follows the first slash: `//evil/v1/kv/x`
    is the path `//evil/v1/kv/x`, never the host `evil` and the path `/v1/kv/x` (as
    `urlsplit` reads it). Absolute-form (`http://host/path`) drops its authority (RFC 9112
    3.2.2); anything else (`*`, `evil/x`, `ftp://...`) is a ValueError, answered 400.
    """
    if target.startswith("/"):
        rest = target
    elif target[:7].lower() == "http://" or target[:8].lower() == "https://":
        after = target.split("://", 1)[1]
        ends = [i for i in (after.find("/"), after.find("?")) if i >= 0]
        rest = after[min(ends) :] if ends else ""
        if not rest.startswith("/"):
            rest = "/" + rest
    else:
        raise ValueError(f"{target[:60]!r} is not a path ('/...') or an http:// URL")
    rest = rest.partition("#")[0]
    path, _, query = rest.partition("?")
    return path, query


def to_request(parsed: ParsedRequest, peer: str) -> Request:
    path, raw_query = split_target(parsed.target.decode("latin-1"))
    query = parse_qs(raw_query, keep_blank_values=True) if raw_query else {}
    headers = {n.decode("latin-1"): v.decode("latin-1") for n, v in parsed.headers}
    return Request(
        method=parsed.method,
        path=unquote(path) or "/",
        query=query,
        headers=headers,
        body=parsed.body,
        peer=peer,
    )
