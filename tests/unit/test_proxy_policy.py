"""Authorization decisions, forward-proxy routing and the retry rules (pure)."""

from __future__ import annotations

import pytest

from ca import SpiffeId
from proxy import _retry
from proxy._authz import Authorizer, Rule, check_source
from proxy._errors import HttpError
from proxy._h1 import Limits, parse_request_head
from proxy._route import route_forward

OWN = SpiffeId("weft.test", "shop", "billing")


def sid(service: str, namespace: str = "shop", domain: str = "weft.test") -> SpiffeId:
    return SpiffeId(domain, namespace, service)


def test_first_matching_rule_decides_else_the_default() -> None:
    authz = Authorizer(
        OWN,
        [
            Rule("no-batch", False, ("batch",)),
            Rule("web", True, ("web",)),
            Rule("ops", True, ("ops/*",)),
        ],
        default_allow=False,
    )
    assert authz.decide(sid("web")).allowed
    assert authz.decide(sid("web")).label == "rule:web"
    denied = authz.decide(sid("batch"))
    assert not denied.allowed and denied.label == "rule:no-batch" and "batch" in denied.reason
    assert authz.decide(sid("anything", "ops")).allowed
    default = authz.decide(sid("web", "other"))  # `web` means web in the proxy's own namespace
    assert not default.allowed and default.label == "default"


def test_wildcards_and_full_ids() -> None:
    authz = Authorizer(
        OWN,
        [
            Rule("exact", True, ("spiffe://weft.test/ns/a/svc/x",)),
            Rule("ns", True, ("spiffe://weft.test/ns/b/svc/*",)),
            Rule("foreign", True, ("spiffe://other.test/ns/a/svc/x",)),
        ],
        default_allow=False,
    )
    assert authz.decide(sid("x", "a")).allowed
    assert authz.decide(sid("y", "b")).allowed
    assert not authz.decide(sid("y", "a")).allowed
    assert authz.decide(sid("x", "a", "other.test")).allowed
    assert (
        not Authorizer(OWN, [Rule("all", True, ("*",))], False)
        .decide(sid("x", "a", "other.test"))
        .allowed
    )


def test_default_allow_and_deny() -> None:
    assert Authorizer(OWN, [], True).decide(sid("x")).allowed
    assert not Authorizer(OWN, [], False).decide(sid("x")).allowed


@pytest.mark.parametrize("bad", ["Web", "spiffe://weft.test/ns/a", "*/web", "a/b/c", "spiffe://x"])
def test_invalid_sources_are_named(bad: str) -> None:
    with pytest.raises(ValueError, match="source"):
        check_source(bad, OWN)


def head(text: str):
    return parse_request_head(text.replace("\n", "\r\n").encode(), Limits())


@pytest.mark.parametrize(
    ("request_text", "upstream", "target"),
    [
        ("GET http://billing/a?b HTTP/1.1\nHost: billing\n\n", "billing", b"/a?b"),
        ("GET http://Billing:8080 HTTP/1.1\nHost: billing\n\n", "billing", b"/"),
        ("GET http://billing?x=1 HTTP/1.1\nHost: billing\n\n", "billing", b"/?x=1"),
        ("GET /path HTTP/1.1\nHost: billing:80\n\n", "billing", b"/path"),
        ("POST HTTP://billing./x HTTP/1.1\nHost: billing\nContent-Length: 0\n\n", "billing", b"/x"),
    ],
)
def test_forward_proxy_requests_name_their_upstream(
    request_text: str, upstream: str, target: bytes
) -> None:
    route = route_forward(head(request_text))
    assert (route.upstream, route.target, route.connect) == (upstream, target, False)


def test_connect_names_a_tunnel() -> None:
    route = route_forward(head("CONNECT redis:6379 HTTP/1.1\nHost: redis:6379\n\n"))
    assert route.connect and route.upstream == "redis"


@pytest.mark.parametrize(
    "request_text",
    [
        "GET https://billing/ HTTP/1.1\nHost: billing\n\n",
        "GET http://user@billing/ HTTP/1.1\nHost: billing\n\n",
        "CONNECT /x HTTP/1.1\nHost: a\n\n",
        "GET / HTTP/1.0\n\n",
    ],
)
def test_unroutable_forward_proxy_requests_are_400(request_text: str) -> None:
    with pytest.raises(HttpError) as info:
        route_forward(head(request_text))
    assert info.value.status == 400


def test_connect_and_tls_failures_are_always_retried_until_the_attempt_limit() -> None:
    for kind in (_retry.CONNECT, _retry.TLS):
        assert _retry.may_retry(kind, attempt=1, idempotent=False, replayable=False)
        assert not _retry.may_retry(
            kind, attempt=_retry.MAX_ATTEMPTS, idempotent=True, replayable=True
        )


def test_no_response_is_retried_only_for_replayable_idempotent_requests() -> None:
    assert _retry.may_retry(_retry.NO_RESPONSE, attempt=1, idempotent=True, replayable=True)
    assert not _retry.may_retry(_retry.NO_RESPONSE, attempt=1, idempotent=False, replayable=True)
    assert not _retry.may_retry(_retry.NO_RESPONSE, attempt=1, idempotent=True, replayable=False)
    assert not _retry.may_retry("timeout", attempt=1, idempotent=True, replayable=True)
