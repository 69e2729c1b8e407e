"""HTTP/1.1 heads: framing decisions, smuggling refusals, limits, rewriting (no sockets)."""

from __future__ import annotations

import pytest

from proxy._errors import HttpError
from proxy._h1 import (
    CHUNKED,
    LENGTH,
    NO_BODY,
    UNTIL_CLOSE,
    Limits,
    encode_request,
    encode_response,
    find_head,
    local_response,
    parse_request_head,
    parse_response_head,
)

LIMITS = Limits(max_head_bytes=8192, max_headers=20)


def req(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


def parse(text: str):
    return parse_request_head(req(text), LIMITS)


def test_a_simple_get_has_no_body_and_keeps_alive() -> None:
    head = parse("GET /a?b=1 HTTP/1.1\nHost: billing\nAccept: */*\n\n")
    assert (head.method, head.target, head.host) == (b"GET", b"/a?b=1", b"billing")
    assert head.framing == NO_BODY and head.keep_alive and not head.http10
    assert head.idempotent and head.request_id is None


def test_content_length_and_chunked_framing_are_read_from_the_head() -> None:
    assert parse("POST / HTTP/1.1\nHost: a\nContent-Length: 12\n\n").framing == LENGTH
    assert parse("POST / HTTP/1.1\nHost: a\nContent-Length: 12\n\n").length == 12
    assert parse("POST / HTTP/1.1\nHost: a\nContent-Length: 0\n\n").framing == NO_BODY
    assert parse("POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n\n").framing == CHUNKED


@pytest.mark.parametrize(
    ("text", "status", "complaint"),
    [
        # request smuggling: the proxy and the application must agree where a body ends
        ("POST / HTTP/1.1\nHost: a\nContent-Length: 5\nTransfer-Encoding: chunked\n\n", 400, ""),
        ("POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\nContent-Length: 5\n\n", 400, ""),
        ("POST / HTTP/1.1\nHost: a\nContent-Length: 5\nContent-Length: 5\n\n", 400, ""),
        ("POST / HTTP/1.1\nHost: a\nContent-Length: 5\nContent-Length: 6\n\n", 400, ""),
        ("POST / HTTP/1.1\nHost: a\nContent-Length: +5\n\n", 400, ""),
        ("POST / HTTP/1.1\nHost: a\nContent-Length: 5, 5\n\n", 400, ""),
        ("POST / HTTP/1.1\nHost: a\nContent-Length : 5\n\n", 400, ""),
        ("POST / HTTP/1.1\nHost: a\nTransfer-Encoding: xchunked\n\n", 400, ""),
        ("POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked, identity\n\n", 400, ""),
        ("POST / HTTP/1.0\nTransfer-Encoding: chunked\n\n", 400, "HTTP/1.0"),
        ("GET / HTTP/1.1\nHost: a\nX-A: b\n c\n\n", 400, ""),  # obs-fold
        ("GET / HTTP/1.1\nHost: a\nHost: b\n\n", 400, "Host"),
        ("GET / HTTP/1.1\nAccept: */*\n\n", 400, "Host"),
        ("GET / HTTP/1.1\nHost: a\nX: a\x00b\n\n", 400, ""),
        ("GET / HTTP/1.2\nHost: a\n\n", 400, ""),
        ("GET /\n\n", 400, "version"),
        ("get / HTTP/1.1\nHost: a\n\n", 400, ""),
        ("GET / HTTP/1.1\nHost: a\nExpect: 200-ok\n\n", 417, "expectation"),
    ],
)
def test_ambiguous_or_malformed_heads_are_refused(text: str, status: int, complaint: str) -> None:
    with pytest.raises(HttpError) as info:
        parse(text)
    assert info.value.status == status
    assert complaint in info.value.reason


def test_bare_lf_and_bare_cr_line_endings_are_refused() -> None:
    for raw in (
        b"GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\rX: y\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
    ):
        with pytest.raises(HttpError, match=r"\bC?R?L?F?\b|CR|LF") as info:
            parse_request_head(raw, LIMITS)
        assert info.value.status == 400
    with pytest.raises(HttpError, match="bare LF"):
        find_head(b"GET / HTTP/1.1\nHost: a\n\n", LIMITS)


def test_a_head_is_found_only_when_complete_and_oversized_heads_are_431() -> None:
    data = req("GET / HTTP/1.1\nHost: a\n\nGET /next")
    n = find_head(data, LIMITS)
    assert data[n:] == b"GET /next"
    assert find_head(b"GET / HTTP/1.1\r\nHost: a\r\n", LIMITS) == -1
    big = b"GET / HTTP/1.1\r\nX: " + b"a" * 9000
    with pytest.raises(HttpError) as info:
        find_head(big, LIMITS)
    assert info.value.status == 431


def test_too_many_header_fields_is_431() -> None:
    text = "GET / HTTP/1.1\nHost: a\n" + "".join(f"X-{i}: v\n" for i in range(25)) + "\n"
    with pytest.raises(HttpError) as info:
        parse(text)
    assert info.value.status == 431


def test_connection_semantics_for_http10_and_http11() -> None:
    assert not parse("GET / HTTP/1.0\n\n").keep_alive
    assert parse("GET / HTTP/1.0\nConnection: keep-alive\n\n").keep_alive
    assert not parse("GET / HTTP/1.1\nHost: a\nConnection: close\n\n").keep_alive


def test_upgrade_is_kept_only_when_connection_names_it() -> None:
    ws = parse("GET /ws HTTP/1.1\nHost: a\nConnection: Upgrade\nUpgrade: websocket\n\n")
    assert ws.upgrade == b"websocket"
    assert parse("GET / HTTP/1.1\nHost: a\nUpgrade: h2c\n\n").upgrade == b""


def test_forwarded_request_drops_hop_by_hop_headers_and_keeps_end_to_end_ones() -> None:
    head = parse(
        "POST /x HTTP/1.1\nHost: b\nConnection: keep-alive, X-Secret\nKeep-Alive: timeout=5\n"
        "X-Secret: s\nTE: trailers\nProxy-Authorization: basic x\nContent-Length: 3\n"
        "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\n"
        "b3: 80f198ee56343ba8-e457b5a2e4d86bd1-1\nX-Request-Id: r1\n\n"
    )
    out = encode_request(head, add=[(b"x-extra", b"1")])
    assert out.startswith(b"POST /x HTTP/1.1\r\n")
    for gone in (b"keep-alive", b"x-secret", b"te:", b"proxy-authorization", b"connection"):
        assert gone not in out.lower()
    for kept in (b"host: b", b"content-length: 3", b"traceparent:", b"b3:", b"x-request-id: r1"):
        assert kept in out.lower()
    assert out.endswith(b"x-extra: 1\r\n\r\n")
    assert head.request_id == b"r1"
    reparsed = parse_request_head(out, LIMITS)
    assert reparsed.length == 3 and reparsed.target == b"/x"


def test_an_upgrade_request_keeps_its_upgrade_headers() -> None:
    head = parse("GET /ws HTTP/1.1\nHost: a\nConnection: upgrade\nUpgrade: websocket\n\n")
    out = encode_request(head).lower()
    assert b"connection: upgrade\r\n" in out and b"upgrade: websocket\r\n" in out


def test_http10_requests_go_on_as_http10_so_answers_are_not_chunked() -> None:
    out = encode_request(parse("GET / HTTP/1.0\n\n"))
    assert out.startswith(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n")


def test_drop_removes_headers_the_proxy_sets_itself() -> None:
    head = parse("GET / HTTP/1.1\nHost: a\nX-Weft-Client-Id: spoofed\n\n")
    out = encode_request(
        head, add=[(b"x-weft-client-id", b"real")], drop=frozenset({b"x-weft-client-id"})
    )
    assert b"spoofed" not in out and b"x-weft-client-id: real" in out


def resp(text: str, method: bytes = b"GET"):
    return parse_response_head(req(text), method, LIMITS)


def test_response_framing() -> None:
    assert resp("HTTP/1.1 200 OK\nContent-Length: 4\n\n").framing == LENGTH
    assert resp("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n").framing == CHUNKED
    assert resp("HTTP/1.1 200 OK\n\n").framing == UNTIL_CLOSE
    assert not resp("HTTP/1.1 200 OK\n\n").keep_alive
    assert resp("HTTP/1.1 200 OK\nContent-Length: 4\n\n", b"HEAD").framing == NO_BODY
    assert resp("HTTP/1.1 204 No Content\n\n").framing == NO_BODY
    assert resp("HTTP/1.1 304 Not Modified\nContent-Length: 10\n\n").framing == NO_BODY
    assert resp("HTTP/1.1 100 Continue\n\n").framing == NO_BODY


def test_ambiguous_responses_are_502() -> None:
    for text in (
        "HTTP/1.1 200 OK\nContent-Length: 4\nTransfer-Encoding: chunked\n\n",
        "HTTP/1.1 200 OK\nContent-Length: 4\nContent-Length: 5\n\n",
        "HTTP/1.1 200 OK\nContent-Length: x\n\n",
    ):
        with pytest.raises(HttpError) as info:
            resp(text)
        assert info.value.status == 502


def test_response_head_carries_the_proxys_connection_decision() -> None:
    head = resp("HTTP/1.1 200 OK\nConnection: keep-alive\nKeep-Alive: 5\nContent-Length: 0\n\n")
    closing = encode_response(head, keep_alive=False)
    assert closing.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Connection: close\r\n" in closing and b"Keep-Alive" not in closing
    assert b"Connection" not in encode_response(head, keep_alive=True)
    assert b"Connection: keep-alive" in encode_response(head, keep_alive=True, http10_client=True)


def test_local_responses_are_complete_messages() -> None:
    data = local_response(503, "no endpoint\n", close=True, headers=[(b"x-a", b"b")])
    head = parse_response_head(data[: find_head(data, LIMITS)], b"GET", LIMITS)
    assert head.status == 503 and head.length == len(b"no endpoint\n") and not head.keep_alive
    assert data.endswith(b"\r\n\r\nno endpoint\n")
    assert local_response(403, "x", close=False, head_only=True).endswith(b"\r\n\r\n")
