"""Requests and responses as bytes: pure functions, no I/O."""

from __future__ import annotations

import email.utils
import time
from http import HTTPStatus
from urllib.parse import parse_qs, unquote, urlsplit

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


def to_request(parsed: ParsedRequest, peer: str) -> Request:
    target = parsed.target.decode("latin-1")
    split = urlsplit(target)
    query = parse_qs(split.query, keep_blank_values=True) if split.query else {}
    headers = {n.decode("latin-1"): v.decode("latin-1") for n, v in parsed.headers}
    return Request(
        method=parsed.method,
        path=unquote(split.path) or "/",
        query=query,
        headers=headers,
        body=parsed.body,
        peer=peer,
    )
