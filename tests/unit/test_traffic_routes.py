"""The route model's pure cores: matching, precedence, header changes, response classes."""

from __future__ import annotations

from typing import Any

import pytest

from proxy._h1 import Limits, parse_request_head
from proxy._header_mods import apply_to, apply_to_pairs, build_mods
from proxy._response_class import ResponseClass, is_failure
from proxy._route_match import RequestView, compile_match
from proxy._route_table import build_table


def view(method: str = "GET", target: str = "/", **headers: str) -> RequestView:
    lines = [f"{method} {target} HTTP/1.1", "Host: svc"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode()
    return RequestView(parse_request_head(raw, Limits()))


@pytest.mark.parametrize(
    ("match", "request_view", "expected"),
    [
        (None, view(), True),
        ([], view("DELETE", "/x"), True),
        ([{"method": "GET"}], view("GET"), True),
        ([{"method": "GET"}], view("POST"), False),
        ([{"method": ["GET", "HEAD"]}], view("HEAD"), True),
        ([{"path": {"exact": "/a"}}], view(target="/a"), True),
        ([{"path": {"exact": "/a"}}], view(target="/a?x=1"), True),  # the query is not the path
        ([{"path": {"exact": "/a"}}], view(target="/a/"), False),
        ([{"path": {"prefix": "/abc"}}], view(target="/abcd"), True),
        ([{"path": {"segment_prefix": "/abc"}}], view(target="/abcd"), False),
        ([{"path": {"segment_prefix": "/abc"}}], view(target="/abc/def"), True),
        ([{"path": {"segment_prefix": "/abc/"}}], view(target="/abc"), True),
        ([{"path": {"segment_prefix": "/"}}], view(target="/anything"), True),
        ([{"path": {"regex": "/authors/[^/]*\\.json"}}], view(target="/authors/7.json"), True),
        # anchored: a regex must match the whole path, never a part of it
        ([{"path": {"regex": "/authors"}}], view(target="/authors/7.json"), False),
        ([{"path": {"regex": "/books/[0-9]+"}}], view(target="/x/books/1"), False),
        ([{"headers": [{"name": "x-canary", "exact": "1"}]}], view(x_canary="1"), True),
        ([{"headers": [{"name": "X-Canary", "exact": "1"}]}], view(x_canary="0"), False),
        ([{"headers": [{"name": "x-canary", "exact": "1"}]}], view(), False),
        ([{"headers": [{"name": "x-user", "prefix": "adm"}]}], view(x_user="admin"), True),
        ([{"headers": [{"name": "x-user", "regex": "a.*n"}]}], view(x_user="admin"), True),
        ([{"headers": [{"name": "x-user", "regex": "a.*n"}]}], view(x_user="admins"), False),
        ([{"headers": [{"name": "x-user", "present": True}]}], view(x_user=""), True),
        ([{"headers": [{"name": "x-user", "absent": True}]}], view(x_user="a"), False),
        ([{"headers": [{"name": "x-user", "absent": True}]}], view(), True),
        ([{"query": [{"name": "debug", "exact": "1"}]}], view(target="/p?a=2&debug=1"), True),
        ([{"query": [{"name": "debug", "present": True}]}], view(target="/p?debug"), True),
        ([{"query": [{"name": "debug", "absent": True}]}], view(target="/p?debug=0"), False),
        ([{"query": [{"name": "v", "regex": "[0-9]+"}]}], view(target="/p?v=12"), True),
        # fields of one entry AND; entries OR
        ([{"method": "GET", "path": {"exact": "/a"}}], view("GET", "/b"), False),
        ([{"method": "POST"}, {"path": {"exact": "/b"}}], view("GET", "/b"), True),
        ([{"not": {"method": "GET"}}], view("GET"), False),
        ([{"not": {"method": "GET"}}], view("PUT"), True),
        ([{"any": [{"method": "PUT"}, {"method": "GET"}]}], view("GET"), True),
        ([{"all": [{"method": "GET"}, {"path": {"prefix": "/x"}}]}], view("GET", "/y"), False),
    ],
)
def test_match_tree(match: Any, request_view: RequestView, expected: bool) -> None:
    assert compile_match(match)(request_view) is expected


def test_a_bad_regex_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="not a valid regex"):
        compile_match([{"path": {"regex": "/a(["}}])


def route(name: str, *match: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": name, "match": list(match), **extra}


def test_first_route_in_order_wins_and_no_route_is_none() -> None:
    table = build_table(
        "books",
        [
            route("all-get", {"method": "GET"}),
            route("exact", {"path": {"exact": "/a"}}),
        ],
    )
    assert table.find(view("GET", "/a")).name == "all-get"  # order: the earlier rule
    assert table.find(view("PUT", "/a")).name == "exact"
    assert table.find(view("PUT", "/b")) is None  # the caller answers 404 no_route


@pytest.mark.parametrize(
    ("target", "method", "headers", "expected"),
    [
        ("/a", "GET", {}, "exact"),  # exact beats any prefix, whatever the order
        ("/a/b/c", "GET", {}, "longest"),  # the longest prefix beats a shorter one
        ("/a/x", "GET", {}, "method"),  # equal prefixes: the one with a method
        ("/a/x", "PUT", {"x_a": "1", "x_b": "1"}, "two-headers"),  # then most headers
        ("/z", "GET", {}, "regex"),  # a regex ranks below every prefix, and still matches
    ],
)
def test_specificity_precedence_follows_gateway_api(
    target: str, method: str, headers: dict[str, str], expected: str
) -> None:
    table = build_table(
        "books",
        [
            route("regex", {"path": {"regex": "/.*"}}),
            route("short", {"path": {"segment_prefix": "/a"}}),
            route(
                "two-headers",
                {
                    "path": {"segment_prefix": "/a"},
                    "headers": [{"name": "x-a", "present": True}, {"name": "x-b", "present": True}],
                },
            ),
            route("method", {"path": {"segment_prefix": "/a"}, "method": "GET"}),
            route("longest", {"path": {"segment_prefix": "/a/b"}}),
            route("exact", {"path": {"exact": "/a"}}),
        ],
        precedence="specificity",
    )
    assert table.find(view(method, target, **headers)).name == expected


def test_specificity_ties_keep_the_listed_order() -> None:
    table = build_table(
        "books",
        [route("first", {"path": {"prefix": "/a"}}), route("second", {"path": {"prefix": "/a"}})],
        precedence="specificity",
    )
    assert table.find(view(target="/a")).name == "first"


def test_no_routes_is_one_implicit_default_to_the_upstream_itself() -> None:
    table = build_table("books", None)
    rule = table.find(view("POST", "/anything"))
    assert rule.name == "default" and table.implicit
    assert rule.single.cluster_key == "books" and rule.retry is None


@pytest.mark.parametrize(
    ("routes", "problem"),
    [
        ([route("a", {"path": {"regex": "(("}})], "routes[0].match[0]: '((' is not a valid regex"),
        (
            [route("a", backends=[{"upstream": "x", "weight": 0}])],
            "routes[0].backends: a split needs at least one backend with a weight above 0",
        ),
        ([route("a"), route("a")], "routes[1].name: route 'a' is defined twice"),
        (
            [route("a", retry={"on": ["sometimes"]})],
            "routes[0].retry.on[0]: 'sometimes' is not a retry condition",
        ),
        (
            [route("a", request_headers={"set": {"x-weft-client-id": "forged"}})],
            "cannot be changed",
        ),
        ([route("a", response_classes=[{"min": 500, "max": 400}])], "max 400 is below min 500"),
    ],
)
def test_table_problems_name_the_field(routes: list[dict[str, Any]], problem: str) -> None:
    problems: list[str] = []
    build_table("books", routes, path="upstreams[0].", problems=problems)
    assert any(problem in p for p in problems), problems
    assert all(p.startswith("upstreams[0].routes[") for p in problems)


def test_header_changes_set_add_remove() -> None:
    mods = build_mods({"set": {"X-Env": "prod"}, "add": {"x-tag": "b"}, "remove": ["X-Debug"]})
    headers = [
        (b"x-env", b"X-Env", b"dev"),
        (b"x-debug", b"X-Debug", b"1"),
        (b"x-tag", b"x-tag", b"a"),
    ]
    out = apply_to(headers, mods)
    assert [(n, v) for n, _, v in out] == [(b"x-tag", b"a"), (b"x-env", b"prod"), (b"x-tag", b"b")]


def test_http2_header_changes_keep_the_pseudo_headers_first() -> None:
    mods = build_mods({"set": {"X-Env": "prod"}, "remove": ["x-debug"]})
    headers = [(b":status", b"200"), (b"x-env", b"dev"), (b"x-debug", b"1"), (b"x-a", b"1")]
    out = apply_to_pairs(headers, mods)
    assert out == [(b":status", b"200"), (b"x-a", b"1"), (b"x-env", b"prod")]


@pytest.mark.parametrize(
    ("status", "expected"),
    [(200, False), (404, True), (418, True), (500, False), (503, True), (502, True), (302, False)],
)
def test_response_classes_first_match_decides_then_5xx(status: int, expected: bool) -> None:
    classes = [
        ResponseClass(500, 500, False),  # a single code: exactly that code
        ResponseClass(400, 499, True),
    ]
    assert is_failure(classes, status) is expected
