"""Protocol detection from a connection's first bytes."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from proxy._detect import Protocol, detect


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        (b"GET / HTTP/1.1\r\n", Protocol.HTTP1),
        (b"OPTIONS * HTTP/1.0\r\nHost: a\r\n", Protocol.HTTP1),
        (b"CONNECT billing:443 HTTP/1.1\r\n", Protocol.HTTP1),
        (b"*1\r\n$4\r\nPING\r\n", Protocol.OPAQUE),  # redis
        (b"hello\n", Protocol.OPAQUE),
        (b"GET / HTTP/2.0\r\n", Protocol.OPAQUE),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Protocol.HTTP2),
        (b"\x16\x03\x01\x02\x00", Protocol.TLS),
        (b"\x00\x00\x00", Protocol.OPAQUE),
    ],
)
def test_known_first_bytes(prefix: bytes, expected: Protocol) -> None:
    assert detect(prefix) is expected


@pytest.mark.parametrize(
    "prefix", [b"", b"G", b"GET", b"GET /index", b"GET / HTTP/1.1", b"PRI *", b"\x16"]
)
def test_an_unfinished_request_line_needs_more_bytes(prefix: bytes) -> None:
    assert detect(prefix) is None


@given(st.binary(max_size=64))
@example(b"\x16")  # one byte of a TLS record header does not decide anything yet
def test_detection_is_stable_once_decided(data: bytes) -> None:
    decided = detect(data)
    if decided is not None:
        assert detect(data + b"more bytes\r\n") is decided


def test_an_endless_first_line_is_opaque() -> None:
    assert detect(b"GET /" + b"a" * 9000) is Protocol.OPAQUE
