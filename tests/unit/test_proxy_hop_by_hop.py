"""The one hop-by-hop rule, identity headers and target normalization (pure, no sockets)."""

from __future__ import annotations

import pytest

from proxy._errors import HttpError
from proxy._framing import ChunkedScanner
from proxy._h1 import (
    CHUNKED,
    LENGTH,
    Limits,
    encode_request,
    encode_response,
    parse_request_head,
    parse_response_head,
)
from proxy._hop_by_hop import (
    FRAMING_CRITICAL,
    check_connection_tokens,
    connection_tokens,
    dropped_names,
    is_identity_header,
    strip_identity,
)

LIMITS = Limits(max_head_bytes=8192, max_headers=20)


def parse(text: str):
    return parse_request_head(text.replace("\n", "\r\n").encode(), LIMITS)


def resp(text: str, method: bytes = b"GET"):
    return parse_response_head(text.replace("\n", "\r\n").encode(), method, LIMITS)


@pytest.mark.parametrize(
    "connection",
    [
        "content-length",
        "Content-Length",
        "keep-alive, content-length",
        "transfer-encoding",
        "close,Transfer-Encoding",
        "host",
        "  HOST  ",
    ],
)
def test_a_request_whose_connection_header_names_a_framing_header_is_refused(
    connection: str,
) -> None:
    with pytest.raises(HttpError) as info:
        parse(f"POST / HTTP/1.1\nHost: b\nConnection: {connection}\nContent-Length: 5\n\n")
    assert info.value.status == 400
    assert info.value.label == "connection_names_framing_header"
    assert "framing headers cannot be hop-by-hop" in info.value.reason


def test_a_framing_name_in_a_second_connection_header_is_refused_too() -> None:
    with pytest.raises(HttpError) as info:
        parse("POST / HTTP/1.1\nHost: b\nConnection: keep-alive\nConnection: content-length\n\n")
    assert info.value.label == "connection_names_framing_header"


def test_a_response_whose_connection_header_names_a_framing_header_is_a_502() -> None:
    with pytest.raises(HttpError) as info:
        resp("HTTP/1.1 200 OK\nConnection: content-length\nContent-Length: 2\n\nok")
    assert info.value.status == 502


def test_other_names_in_connection_are_removed_and_framing_headers_always_stay() -> None:
    head = parse(
        "POST / HTTP/1.1\nHost: b\nConnection: x-secret, keep-alive\nX-Secret: s\n"
        "Content-Length: 3\n\n"
    )
    out = encode_request(head, drop=frozenset({b"content-length", b"host", b"x-extra"}))
    lower = out.lower()
    assert b"x-secret" not in lower and b"connection:" not in lower
    assert b"content-length: 3\r\n" in lower and b"host: b\r\n" in lower
    assert parse_request_head(out, LIMITS).framing == LENGTH


def test_the_removed_set_never_holds_a_framing_header() -> None:
    tokens = connection_tokens([b"content-length, transfer-encoding, host, x-a"])
    assert not dropped_names(tokens) & FRAMING_CRITICAL
    assert b"x-a" in dropped_names(tokens)
    with pytest.raises(HttpError):
        check_connection_tokens(tokens, 400)
    check_connection_tokens(connection_tokens([b"keep-alive, upgrade, te"]), 400)


def test_a_chunked_response_keeps_its_transfer_encoding() -> None:
    head = resp("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\nConnection: keep-alive\n\n")
    assert head.framing == CHUNKED
    assert b"Transfer-Encoding: chunked\r\n" in encode_response(head, keep_alive=True)


@pytest.mark.parametrize(
    "name",
    [
        b"x-weft-client-id",
        b"x_weft_client_id",  # WSGI/CGI fold both spellings into HTTP_X_WEFT_CLIENT_ID
        b"x-weft_client-id",
        b"x-weft-client-trust-domain",  # the namespace is reserved
        b"l5d-client-id",
        b"x-forwarded-client-cert",
    ],
)
def test_identity_headers_and_their_folded_spellings_are_recognised(name: bytes) -> None:
    assert is_identity_header(name)


@pytest.mark.parametrize("name", [b"x-request-id", b"x-weft-clientele", b"x-weft-denied", b"host"])
def test_ordinary_headers_are_not_identity_headers(name: bytes) -> None:
    assert not is_identity_header(name)


def test_strip_identity_removes_every_forged_identity_and_keeps_the_rest() -> None:
    head = parse(
        "GET / HTTP/1.1\nHost: b\nX-Weft-Client-Id: spiffe://weft.test/ns/default/svc/admin\n"
        "X_Weft_Client_Id: forged\nL5d-Client-Id: forged\nX-Other: kept\n\n"
    )
    stripped = strip_identity(head.headers)
    assert [name for name, _, _ in stripped] == [b"host", b"x-other"]
    clean = parse("GET / HTTP/1.1\nHost: b\n\n").headers
    assert strip_identity(clean) is clean  # nothing to strip: no copy


def test_an_absolute_form_target_becomes_origin_form_with_its_authority_as_host() -> None:
    head = parse("GET http://billing:8080/pay?x=1 HTTP/1.1\nHost: evil\n\n")
    assert head.target == b"/pay?x=1" and head.host == b"billing:8080"
    assert [v for n, _, v in head.headers if n == b"host"] == [b"billing:8080"]
    out = encode_request(head)
    assert out.startswith(b"GET /pay?x=1 HTTP/1.1\r\n") and b"evil" not in out
    assert parse("GET http://billing HTTP/1.0\n\n").target == b"/"


@pytest.mark.parametrize(
    "line",
    [
        "GET https://billing/ HTTP/1.1",
        "GET http:///nohost HTTP/1.1",
        "GET http://user@billing/ HTTP/1.1",
        "GET billing/x HTTP/1.1",
        "GET * HTTP/1.1",
        "CONNECT /path HTTP/1.1",
    ],
)
def test_request_targets_in_no_known_form_are_refused(line: str) -> None:
    with pytest.raises(HttpError) as info:
        parse(f"{line}\nHost: b\n\n")
    assert info.value.status == 400  # by llhttp itself, or by the target rule


def test_options_star_and_connect_authority_are_kept_as_sent() -> None:
    assert parse("OPTIONS * HTTP/1.1\nHost: b\n\n").target == b"*"
    assert parse("CONNECT billing:443 HTTP/1.1\nHost: billing:443\n\n").target == b"billing:443"


def test_an_h2c_upgrade_is_never_switched_to() -> None:
    head = parse(
        "GET / HTTP/1.1\nHost: b\nConnection: Upgrade, HTTP2-Settings\nUpgrade: h2c\n"
        "HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\n\n"
    )
    assert head.upgrade == b""
    out = encode_request(head).lower()
    assert b"upgrade" not in out and b"http2-settings" not in out


def test_a_bodiless_answer_announcing_a_body_leaves_its_connection_unreusable() -> None:
    assert not resp("HTTP/1.1 204 No Content\nContent-Length: 10\n\n").keep_alive
    assert not resp("HTTP/1.1 304 Not Modified\nTransfer-Encoding: chunked\n\n").keep_alive
    assert resp("HTTP/1.1 304 Not Modified\nContent-Length: 0\n\n").keep_alive
    # a HEAD answer's framing headers describe the GET's body: reused
    assert resp("HTTP/1.1 200 OK\nContent-Length: 10\n\n", b"HEAD").keep_alive
    assert resp("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n", b"HEAD").keep_alive


def test_an_identity_or_framing_header_in_a_request_trailer_is_refused() -> None:
    scanner = ChunkedScanner()
    with pytest.raises(HttpError) as info:
        scanner.scan(b"3\r\nabc\r\n0\r\nX-Weft-Client-Id: forged\r\n\r\n")
    assert info.value.status == 400 and "not allowed in a request trailer" in info.value.reason
    with pytest.raises(HttpError):
        ChunkedScanner().scan(b"0\r\nContent-Length: 40\r\n\r\n")
    response = ChunkedScanner(status=502)
    data = b"0\r\nX-Weft-Client-Id: x\r\n\r\n"
    assert response.scan(data) == len(data) and response.done
