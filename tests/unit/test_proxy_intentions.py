"""The sidecar's intention core: L4 and L7 decisions, path normalisation, snapshot v3, and how
intentions combine with the service's own authorization (both must allow)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from ca import SpiffeId
from proxy._authorize import InboundRouter, allow_connection
from proxy._authz import Authorizer, Rule
from proxy._errors import SnapshotError
from proxy._h1 import Head
from proxy._http_plan import Reject, Route
from proxy._intentions import normalise_path
from proxy._listener_host import Config
from proxy._metrics import Metrics
from proxy._snapshot import parse_snapshot

API = "spiffe://weft.test/ns/default/svc/api"
WEB = SpiffeId.parse("spiffe://weft.test/ns/default/svc/web")
BATCH = SpiffeId.parse("spiffe://weft.test/ns/default/svc/batch")
OPS = SpiffeId.parse("spiffe://weft.test/ns/ops/svc/web")

PUBLIC_GET = {"action": "allow", "http": {"path_prefix": "/public/", "methods": ["GET"]}}


def doc(rules: list[dict[str, Any]], default: str = "deny", **extra: Any) -> dict[str, Any]:
    return {
        "schema": "weft.proxy.snapshot/v3",
        "version": 1,
        "identity": API,
        "tls": {"cert": "/c.pem", "key": "/k.pem", "bundle": "/b.pem"},
        "inbound": {"port": 15443, "app": {"port": 8080}},
        "intentions": {"default": default, "rules": rules},
        **extra,
    }


def head(method: str, target: str, headers: list[tuple[str, str]] = ()) -> Head:  # type: ignore[assignment]
    return Head(
        headers=[(k.lower().encode(), k.encode(), v.encode()) for k, v in headers],
        http10=False,
        framing=0,
        length=0,
        keep_alive=True,
        connection_tokens=frozenset(),
        method=method.encode(),
        target=target.encode(),
    )


def decide(rules: list[dict[str, Any]], source: SpiffeId, h: Head, default: str = "deny") -> bool:
    intentions = parse_snapshot(doc(rules, default)).intentions
    assert intentions is not None
    return intentions.for_source(source).decide(h.method, h.target, h.headers).allowed


@pytest.mark.parametrize(
    ("method", "target", "allowed"),
    [
        ("GET", "/public/a", True),
        ("GET", "/public/", True),
        ("GET", "/public/a?x=/admin", True),
        ("POST", "/public/a", False),  # method not allowed: no permission matches -> default
        ("GET", "/private", False),
        ("GET", "/public", False),  # the prefix is "/public/"
        ("GET", "/public/../admin", False),  # judged as /admin
        ("GET", "/public/%2e%2e/admin", False),  # encoded dots are dots
        ("GET", "/x/../public/a", True),
        ("GET", "http://api/public/a", True),  # absolute form
    ],
)
def test_an_l7_permission_allows_only_get_public(method: str, target: str, allowed: bool) -> None:
    rules = [{"id": "i1", "source": "default/web", "permissions": [PUBLIC_GET]}]
    assert decide(rules, WEB, head(method, target)) is allowed


def test_a_request_no_permission_matches_gets_the_default_not_a_lower_intention() -> None:
    rules = [
        {"id": "l7", "source": "default/web", "permissions": [PUBLIC_GET]},
        {"id": "all", "source": "default/*", "action": "allow"},
    ]
    assert decide(rules, WEB, head("POST", "/x")) is False
    assert decide(rules, WEB, head("POST", "/x"), default="allow") is True
    assert decide(rules, BATCH, head("POST", "/x")) is True  # the L4 rule governs batch


@pytest.mark.parametrize(
    ("match", "headers", "allowed"),
    [
        ({"name": "x-team", "present": True}, [("X-Team", "a")], True),
        ({"name": "x-team", "present": True}, [], False),
        ({"name": "x-team", "present": True, "invert": True}, [], True),
        ({"name": "x-team", "exact": "a"}, [("x-team", "a")], True),
        ({"name": "x-team", "exact": "a"}, [("x-team", "a"), ("x-team", "b")], False),  # "a,b"
        ({"name": "x-team", "prefix": "pay"}, [("x-team", "payments")], True),
        ({"name": "x-team", "suffix": "ments"}, [("x-team", "payments")], True),
        ({"name": "x-team", "regex": "pay.*s"}, [("x-team", "payments")], True),
        ({"name": "x-team", "regex": "pay"}, [("x-team", "payments")], False),  # anchored
        ({"name": "x-team", "exact": "a", "invert": True}, [("x-team", "b")], True),
    ],
)
def test_header_matches(
    match: dict[str, Any], headers: list[tuple[str, str]], allowed: bool
) -> None:
    rules = [
        {
            "id": "h",
            "source": "*",
            "permissions": [{"action": "allow", "http": {"headers": [match]}}],
        }
    ]
    assert decide(rules, WEB, head("GET", "/", headers)) is allowed


def test_permissions_are_evaluated_in_order() -> None:
    perms = [
        {"action": "deny", "http": {"path_exact": "/public/secret"}},
        PUBLIC_GET,
        {"action": "allow", "http": {"path_regex": "/v[0-9]+/.*", "methods": ["POST"]}},
    ]
    rules = [{"id": "p", "source": "*", "permissions": perms}]
    assert decide(rules, WEB, head("GET", "/public/secret")) is False
    assert decide(rules, WEB, head("GET", "/public/other")) is True
    assert decide(rules, WEB, head("POST", "/v2/items")) is True
    assert decide(rules, WEB, head("POST", "/v2")) is False


@pytest.mark.parametrize(
    ("source", "caller", "allowed"),
    [
        ("default/web", WEB, True),
        ("default/web", OPS, False),
        ("ops/*", OPS, True),
        ("*", OPS, True),
    ],
)
def test_l4_sources_match_by_namespace_and_service(
    source: str, caller: SpiffeId, allowed: bool
) -> None:
    assert (
        decide([{"id": "a", "source": source, "action": "allow"}], caller, head("GET", "/"))
        is allowed
    )


@pytest.mark.parametrize(
    ("target", "path"),
    [
        ("/", "/"),
        ("/a/./b", "/a/b"),
        ("/a/b/..", "/a/"),
        ("/../../etc", "/etc"),
        ("/%41%7e%2F", "/A~%2F"),  # unreserved decoded; an encoded slash stays encoded
        ("*", "*"),
        ("/a?b=../c", "/a"),
    ],
)
def test_paths_are_normalised_before_matching(target: str, path: str) -> None:
    assert normalise_path(target.encode()) == path


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: d.update(schema="weft.proxy.snapshot/v2"), "intentions: needs schema"),
        (
            lambda d: d["intentions"]["rules"].append(
                {
                    "id": "r",
                    "source": "*",
                    "permissions": [{"action": "allow", "http": {"path_regex": "(["}}],
                }
            ),
            "intentions.rules[0].permissions[0].http:",
        ),
        (
            lambda d: d["intentions"]["rules"].append(
                {"id": "r", "source": "Bad Name", "action": "allow"}
            ),
            "intentions.rules[0].source:",
        ),
        (
            lambda d: d["intentions"]["rules"].append(
                {"id": "r", "source": "*", "action": "allow", "permissions": [PUBLIC_GET]}
            ),
            "intentions.rules[0]: give action or permissions",
        ),
    ],
)
def test_a_bad_intentions_section_refuses_the_snapshot(change: Any, problem: str) -> None:
    d = copy.deepcopy(doc([]))
    change(d)
    with pytest.raises(SnapshotError) as caught:
        parse_snapshot(d)
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems


def test_v1_and_v2_documents_without_intentions_still_parse() -> None:
    for schema in ("weft.proxy.snapshot/v1", "weft.proxy.snapshot/v2"):
        d = doc([])
        del d["intentions"]
        d["schema"] = schema
        assert parse_snapshot(d).intentions is None


def config(snapshot_doc: dict[str, Any], own_rules: list[Rule], own_default: bool) -> Config:
    snapshot = parse_snapshot(snapshot_doc)
    authorizer = Authorizer(snapshot.identity, own_rules, own_default)
    return Config(snapshot, None, authorizer, {}, object())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("own_rules", "own_default", "intention", "allowed"),
    [
        ([], True, "allow", True),
        ([], True, "deny", False),  # the intention narrows an allowing service
        ([Rule("no-web", False, ("web",))], True, "allow", False),  # the service narrows it
        ([Rule("web", True, ("web",))], False, "allow", True),
        ([Rule("web", True, ("web",))], False, "deny", False),
    ],
)
def test_both_the_services_rules_and_the_intentions_must_allow(
    own_rules: list[Rule], own_default: bool, intention: str, allowed: bool
) -> None:
    cfg = config(doc([{"id": "i", "source": "web", "action": intention}]), own_rules, own_default)
    router = InboundRouter(WEB, Metrics(), lambda: cfg)
    result = router(head("GET", "/"))
    assert isinstance(result, Route if allowed else Reject)
    assert allow_connection(cfg, WEB, Metrics()) is allowed


def test_an_http_router_judges_each_request_of_a_connection_and_says_why() -> None:
    cfg = config(doc([{"id": "i1", "source": "web", "permissions": [PUBLIC_GET]}]), [], True)
    metrics = Metrics()
    router = InboundRouter(WEB, metrics, lambda: cfg)
    assert isinstance(router(head("GET", "/public/a")), Route)
    refused = router(head("DELETE", "/public/a"))
    assert isinstance(refused, Reject) and refused.status == 403
    assert "no permission of intention i1 matches DELETE /public/a" in refused.reason
    assert dict(refused.headers)[b"x-weft-denied"].startswith(b"no permission of intention i1")
    assert isinstance(router(head("GET", "/public/b")), Route)  # the next request is judged again
    assert metrics.authz_denied == {("http", "web", "intention-default"): 1}
    # A TCP connection cannot meet HTTP permissions: refused.
    assert allow_connection(cfg, WEB, Metrics()) is False
