"""Chunked bodies walked without decoding: end found, framing checked, however bytes arrive."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy._errors import HttpError
from proxy._framing import ChunkedScanner, parse_chunk_size


def chunked(chunks: list[bytes], trailers: bytes = b"") -> bytes:
    out = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks if c)
    return out + b"0\r\n" + trailers + b"\r\n"


def feed(pieces: list[bytes]) -> tuple[bytes, bytes, ChunkedScanner]:
    """Feed pieces the way the I/O layer does; returns (forwarded, left over, scanner)."""
    scanner = ChunkedScanner()
    forwarded = b""
    buf = b""
    for piece in pieces:
        buf += piece
        pos = scanner.scan(buf)
        forwarded += buf[:pos]
        buf = buf[pos:]
        if scanner.done:
            break
    return forwarded, buf, scanner


def test_a_whole_body_is_found_and_what_follows_is_left() -> None:
    body = chunked([b"hello", b" world"], b"X-Sum: 1\r\n")
    forwarded, rest, scanner = feed([body + b"GET / HTTP/1.1\r\n"])
    assert scanner.done and forwarded == body and rest == b"GET / HTTP/1.1\r\n"
    assert scanner.body_bytes == len(b"hello world")


@given(
    st.lists(st.binary(min_size=1, max_size=300), max_size=5),
    st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=60),
)
def test_any_split_of_the_bytes_gives_the_same_result(chunks: list[bytes], cuts: list[int]) -> None:
    body = chunked(chunks)
    pieces, pos = [], 0
    for cut in cuts:
        pieces.append(body[pos : pos + cut])
        pos += cut
    pieces.append(body[pos:])
    forwarded, rest, scanner = feed(pieces)
    assert scanner.done
    assert forwarded == body
    assert rest == b""


def test_an_incomplete_size_line_is_not_forwarded_until_checked() -> None:
    scanner = ChunkedScanner()
    assert scanner.scan(b"5\r\nhello\r\n1") == len(b"5\r\nhello\r\n")
    assert not scanner.done


@pytest.mark.parametrize(
    "body",
    [
        b"-1\r\nx\r\n0\r\n\r\n",
        b"0x5\r\nhello\r\n0\r\n\r\n",
        b"fffffffffffffffff\r\n",
        b" 5\r\nhello\r\n0\r\n\r\n",
        b"5 5\r\nhello\r\n0\r\n\r\n",
        b"z\r\n",
        b"\r\n",
        b"5\r\nhelloXX0\r\n\r\n",  # data not followed by CRLF
        b"5\nhello\r\n0\r\n\r\n",  # bare LF after the size
        b"5;\x01=x\r\nhello\r\n0\r\n\r\n",
        b"0\r\nbad trailer\r\n\r\n",
        b"4000000000000000\r\n",
    ],
)
def test_bad_chunk_framing_is_400(body: bytes) -> None:
    with pytest.raises(HttpError) as info:
        feed([body])
    assert info.value.status == 400


def test_chunk_extensions_are_allowed() -> None:
    assert parse_chunk_size(b'1a;name=value;q="quoted"') == 26
    forwarded, _, scanner = feed([b"3;ext\r\nabc\r\n0\r\n\r\n"])
    assert scanner.done and forwarded.startswith(b"3;ext")


def test_a_size_line_that_never_ends_is_refused() -> None:
    with pytest.raises(HttpError, match="too long"):
        feed([b"1" + b"0" * 5000])


def test_response_scanners_report_502() -> None:
    with pytest.raises(HttpError) as info:
        ChunkedScanner(status=502).scan(b"zz\r\n")
    assert info.value.status == 502
