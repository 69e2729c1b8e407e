"""The registry's HTTP request parser: framing, limits and smuggling defences, no sockets."""

from __future__ import annotations

import pytest

from registry.web import ProtocolError, RequestParser, Router
from registry.web._wire import split_target


def test_pipelined_requests_split_at_any_byte() -> None:
    raw = (
        b"PUT /a?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
        b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n"
    )
    for cut in range(1, len(raw)):
        parser = RequestParser()
        done = parser.feed(raw[:cut]) + parser.feed(raw[cut:])
        assert [(r.method, r.target, r.body) for r in done] == [
            ("PUT", b"/a?x=1", b"abc"),
            ("GET", b"/b", b""),
        ]


def test_chunked_body() -> None:
    parser = RequestParser()
    [req] = parser.feed(
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    assert req.body == b"abcde"


@pytest.mark.parametrize(
    ("raw", "status", "words"),
    [
        (
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
            "Transfer-Encoding",
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            400,
            "Content-Length",
        ),
        (b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", 400, "malformed"),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400, "malformed"),
        (b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n", 413, "limit"),
        (b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 101 + b"\r\n", 431, "headers"),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n", 431, "head"),
    ],
)
def test_bad_requests(raw: bytes, status: int, words: str) -> None:
    parser = RequestParser()
    with pytest.raises(ProtocolError) as info:
        parser.feed(raw)
    assert info.value.status == status
    assert words in info.value.message


def test_router() -> None:
    async def h(request):
        return None

    router = Router()
    router.add("GET", "/v1/kv/{key:path}", h)
    router.add("PUT", "/v1/agent/check/pass/{check_id}", h)
    _route, params = router.match("GET", "/v1/kv/a/b/c")
    assert params == {"key": "a/b/c"}
    _, params = router.match("PUT", "/v1/agent/check/pass/service:web")
    assert params == {"check_id": "service:web"}
    from registry.web import HTTPError

    with pytest.raises(HTTPError) as info:
        router.match("DELETE", "/v1/agent/check/pass/x")
    assert info.value.status == 405


@pytest.mark.parametrize(
    ("target", "path", "query"),
    [
        ("/v1/kv/x?raw", "/v1/kv/x", "raw"),
        # A double slash starts a path, never an authority (urlsplit reads `evil` as a host).
        ("//evil/v1/kv/x", "//evil/v1/kv/x", ""),
        ("//evil/v1/kv/x?recurse", "//evil/v1/kv/x", "recurse"),
        ("///v1/kv/x", "///v1/kv/x", ""),
        ("/v1/kv/a%2F%2Fb", "/v1/kv/a%2F%2Fb", ""),
        # Absolute-form drops its authority, as RFC 9112 3.2.2 says.
        ("http://h:8500/v1/kv/x?raw", "/v1/kv/x", "raw"),
        ("HTTP://h", "/", ""),
        ("http://h?index=1", "/", "index=1"),
    ],
)
def test_a_request_target_is_a_path_never_an_authority(target: str, path: str, query: str) -> None:
    assert split_target(target) == (path, query)


@pytest.mark.parametrize("target", ["*", "evil/v1/kv/x", "ftp://h/x", "", "v1"])
def test_a_target_that_is_neither_a_path_nor_an_http_url_is_refused(target: str) -> None:
    with pytest.raises(ValueError, match="not a path"):
        split_target(target)
