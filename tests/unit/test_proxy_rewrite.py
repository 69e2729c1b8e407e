"""A route's path rewrite, pure: Istio's prefix replacement, Gateway API's segment-aware
ReplacePrefixMatch and ReplaceFullPath, the query always kept; and the route table giving each
match entry the prefix it matched."""

from __future__ import annotations

import pytest

from proxy._h1 import Limits, parse_request_head
from proxy._rewrite import Rewrite
from proxy._route_match import RequestView
from proxy._route_table import build_table


@pytest.mark.parametrize(
    ("rewrite", "target", "sent"),
    [
        # Istio rewrite.uri: the matched prefix is replaced as a string
        (Rewrite(b"/newcatalog", matched=b"/wpcatalog"), b"/wpcatalog/x?q=1", b"/newcatalog/x?q=1"),
        (Rewrite(b"/v2", matched=b"/v1"), b"/v1beta", b"/v2beta"),
        (Rewrite(b"/new"), b"/anything/else?a", b"/new?a"),  # no prefix matched: whole path
        # Gateway API ReplacePrefixMatch: by segment, one "/" between
        (Rewrite(b"/xyz", matched=b"/foo", segments=True), b"/foo/bar", b"/xyz/bar"),
        (Rewrite(b"/xyz/", matched=b"/foo", segments=True), b"/foo/bar", b"/xyz/bar"),
        (Rewrite(b"/xyz", matched=b"/foo/", segments=True), b"/foo/bar", b"/xyz/bar"),
        (Rewrite(b"/xyz", matched=b"/", segments=True), b"/bar", b"/xyz/bar"),
        (Rewrite(b"/", matched=b"/foo", segments=True), b"/foo/bar", b"/bar"),
        (Rewrite(b"/xyz", matched=b"/foo", segments=True), b"/foo", b"/xyz"),
        (Rewrite(b"/", matched=b"/foo", segments=True), b"/foo?x", b"/?x"),
        # ReplaceFullPath
        (Rewrite(b"/full", full=True, matched=b"/foo"), b"/foo/bar?z", b"/full?z"),
    ],
)
def test_the_target_sent_upstream(rewrite: Rewrite, target: bytes, sent: bytes) -> None:
    assert rewrite.apply(target) == sent


def test_each_match_entry_replaces_the_prefix_it_matched() -> None:
    table = build_table(
        "reviews",
        [
            {
                "name": "catalog",
                "match": [{"path": {"prefix": "/wpcatalog"}}, {"path": {"prefix": "/consumer"}}],
                "rewrite": {"prefix": "/newcatalog"},
            },
            {"name": "default"},
        ],
    )

    def sent(target: bytes) -> bytes:
        head = parse_request_head(b"GET " + target + b" HTTP/1.1\r\nHost: r\r\n\r\n", Limits())
        rule = table.find(RequestView(head))
        assert rule is not None
        return rule.rewrite.apply(target) if rule.rewrite else target

    assert sent(b"/wpcatalog/1") == b"/newcatalog/1"
    assert sent(b"/consumer/2?x=1") == b"/newcatalog/2?x=1"
    assert sent(b"/other") == b"/other"


def test_a_rewrite_needs_exactly_one_form() -> None:
    problems: list[str] = []
    build_table(
        "r",
        [{"name": "x", "rewrite": {"prefix": "/a", "full_path": "/b"}}],
        path="upstreams[0].",
        problems=problems,
    )
    assert problems == ["upstreams[0].routes[0].rewrite: give exactly one of prefix and full_path"]
