"""Intentions in the registry: Consul's precedence table, match order, check, strict bodies."""

from __future__ import annotations

from typing import Any

import pytest

from agent._intentions import IntentionView
from registry.intentions import (
    Intention,
    IntentionProblem,
    Name,
    check,
    deciding,
    match,
    parse_body,
    parse_name,
    precedence,
)


def n(text: str) -> Name:
    return parse_name(text, "Source")


def ixn(src: str, dst: str, action: str = "allow", ident: str = "") -> Intention:
    s, d = n(src), n(dst)
    return Intention.from_doc(
        {
            "ID": ident or f"{src}->{dst}",
            "SourceNS": s.namespace,
            "SourceName": s.service,
            "DestinationNS": d.namespace,
            "DestinationName": d.service,
            "Action": action,
        }
    )


# Consul's "Precedence and match order" table, row by row (namespaces spelled out).
@pytest.mark.parametrize(
    ("source", "destination", "expected"),
    [
        ("shop/web", "shop/api", 9),
        ("shop/*", "shop/api", 8),
        ("*/*", "shop/api", 7),
        ("shop/web", "shop/*", 6),
        ("shop/*", "shop/*", 5),
        ("*/*", "shop/*", 4),
        ("shop/web", "*/*", 3),
        ("shop/*", "*/*", 2),
        ("*/*", "*/*", 1),
        # Consul OSS: no namespaces, so `*` is every service of the default namespace.
        ("web", "api", 9),
        ("*", "api", 8),
        ("web", "*", 6),
        ("*", "*", 5),
    ],
)
def test_precedence_follows_consuls_table(source: str, destination: str, expected: int) -> None:
    assert precedence(n(source), n(destination)) == expected


ALL = [
    ixn("*", "*", "deny"),
    ixn("web", "*", "allow"),
    ixn("*", "api", "deny"),
    ixn("web", "api", "allow"),
    ixn("admin", "*", "deny"),
    ixn("*", "db", "allow"),
]


@pytest.mark.parametrize(
    ("source", "destination", "governed_by"),
    [
        ("web", "api", "web->api"),  # exact beats everything
        ("batch", "api", "*->api"),  # destination exact beats source exact
        ("web", "db", "*->db"),  # the destination weighs more than the source
        ("web", "cache", "web->*"),
        ("admin", "db", "*->db"),
        ("admin", "cache", "admin->*"),
        ("batch", "cache", "*->*"),
        ("other/web", "api", None),  # another namespace: nothing of the default one applies
    ],
)
def test_the_highest_precedence_intention_decides(
    source: str, destination: str, governed_by: str | None
) -> None:
    found = deciding(ALL, n(source), n(destination))
    assert (found.id if found else None) == governed_by


def test_check_uses_the_deciding_intention_then_the_default() -> None:
    assert check(ALL, n("web"), n("api"), default_allow=False) is True
    assert check(ALL, n("batch"), n("api"), default_allow=True) is False
    assert check([], n("web"), n("api"), default_allow=True) is True
    assert check([], n("web"), n("api"), default_allow=False) is False
    l7 = Intention.from_doc({**ixn("web", "api").doc, "Action": "", "Permissions": [{}]})
    # a connection check cannot know the requests: an L7 intention answers "not allowed"
    assert check([l7], n("web"), n("api"), default_allow=True) is False


def test_match_lists_in_evaluation_order() -> None:
    by_dst = [i.id for i in match(ALL, "destination", n("api"))]
    assert by_dst == ["web->api", "*->api", "admin->*", "web->*", "*->*"]
    by_src = [i.id for i in match(ALL, "source", n("web"))]
    assert by_src == ["web->api", "*->api", "*->db", "web->*", "*->*"]


def good(**extra: Any) -> dict[str, Any]:
    return {"SourceName": "web", "DestinationName": "api", "Action": "allow", **extra}


L7 = [{"Action": "allow", "HTTP": {"PathPrefix": "/public/", "Methods": ["GET"]}}]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (good(Bogus=1), "Bogus"),
        (good(Permissions=L7), "Permissions"),  # both Action and Permissions
        ({"SourceName": "web", "DestinationName": "api"}, "Action"),
        (good(Action="maybe"), "Action"),
        (good(SourceName="Web"), "SourceName"),
        (good(DestinationName=""), "DestinationName"),
        (good(SourceNS="*"), "SourceName"),  # a wildcard namespace needs a wildcard name
        (good(SourceType="aws"), "SourceType"),
        (good(SourcePeer="other"), "SourcePeer"),
        (good(Meta={"k": 1}), "Meta.k"),
        ({**good(), "Action": None, "Permissions": [{"Action": "allow"}]}, "Permissions[0].HTTP"),
        (
            {**good(), "Action": None, "Permissions": [{"Action": "allow", "HTTP": {}}]},
            "Permissions[0].HTTP",
        ),
        (
            {
                **good(),
                "Action": None,
                "Permissions": [{"Action": "allow", "HTTP": {"PathRegex": "/a/(["}}],
            },
            "Permissions[0].HTTP.PathRegex",
        ),
        (
            {
                **good(),
                "Action": None,
                "Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "public"}}],
            },
            "Permissions[0].HTTP.PathPrefix",
        ),
        (
            {
                **good(),
                "Action": None,
                "Permissions": [
                    {"Action": "allow", "HTTP": {"PathExact": "/a", "PathPrefix": "/b"}}
                ],
            },
            "Permissions[0].HTTP.PathPrefix",
        ),
        (
            {
                **good(),
                "Action": None,
                "Permissions": [{"Action": "allow", "HTTP": {"Methods": ["get"]}}],
            },
            "Permissions[0].HTTP.Methods[0]",
        ),
        (
            {
                **good(),
                "Action": None,
                "Permissions": [
                    {
                        "Action": "allow",
                        "HTTP": {"Header": [{"Name": "x", "Exact": "1", "Regex": "1"}]},
                    }
                ],
            },
            "Permissions[0].HTTP.Header[0].Regex",
        ),
        (
            {
                **good(),
                "Action": None,
                "Permissions": [
                    {"Action": "allow", "HTTP": {"Header": [{"Name": "x", "Regex": "("}]}}
                ],
            },
            "Permissions[0].HTTP.Header[0].Regex",
        ),
        (
            {
                **good(),
                "Action": None,
                "Permissions": [{"Action": "allow", "HTTP": {"Pathprefix": "/x"}}],
            },
            "Permissions[0].HTTP.Pathprefix",
        ),
    ],
)
def test_a_bad_intention_is_refused_naming_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(IntentionProblem) as caught:
        parse_body(body)
    assert caught.value.field == field, str(caught.value)
    assert str(caught.value).startswith(f"{field}: ")


def test_a_good_l7_intention_is_kept_as_sent() -> None:
    doc = parse_body({"SourceName": "web", "DestinationName": "api", "Permissions": L7})
    assert doc["Permissions"] == L7 and "Action" not in doc
    assert doc["SourceNS"] == doc["DestinationNS"] == "default"


def test_server_owned_fields_are_ignored_so_a_read_can_be_sent_back() -> None:
    doc = parse_body(good(ID="x", Precedence=3, CreateIndex=1, ModifyIndex=2))
    assert "ID" not in doc and "Precedence" not in doc


def test_the_query_names_win_and_a_contradicting_body_is_refused() -> None:
    doc = parse_body({"Action": "deny"}, source=n("web"), destination=n("api"))
    assert (doc["SourceName"], doc["DestinationName"]) == ("web", "api")
    with pytest.raises(IntentionProblem) as caught:
        parse_body({"Action": "deny", "SourceName": "db"}, source=n("web"), destination=n("api"))
    assert caught.value.field == "SourceName"


def test_an_agent_compiles_only_its_destinations_intentions_in_order() -> None:
    l7 = Intention.from_doc(
        {
            **ixn("batch", "api", ident="l7").doc,
            "Action": "",
            "Permissions": [
                {
                    "Action": "allow",
                    "HTTP": {
                        "PathPrefix": "/public/",
                        "Header": [{"Name": "X-A", "Present": True}],
                    },
                }
            ],
        }
    )
    view = IntentionView(
        {"default": "deny", "intentions": [i.view() for i in [*ALL, l7, ixn("*/*", "*/*", "deny")]]}
    )
    compiled = view.compile("default", "api")
    assert compiled["default"] == "deny"
    assert [(r["id"], r["source"]) for r in compiled["rules"]] == [
        ("l7", "default/batch"),
        ("web->api", "default/web"),
        ("*->api", "default/*"),
        ("admin->*", "default/admin"),
        ("web->*", "default/web"),
        ("*->*", "default/*"),
        ("*/*->*/*", "*"),
    ]
    assert compiled["rules"][0]["permissions"] == [
        {
            "action": "allow",
            "http": {"path_prefix": "/public/", "headers": [{"name": "X-A", "present": True}]},
        }
    ]
    assert compiled["rules"][1]["action"] == "allow"


def test_an_intention_written_around_the_api_cannot_freeze_the_sidecars() -> None:
    """A broken intention straight in etcd: compiled as a deny from its source (or left out if
    its source could match nobody), so the proxy still accepts the snapshot."""
    from proxy._snapshot import parse_snapshot

    bad_regex = {
        **ixn("batch", "api", ident="bad").view(),
        "Action": "",
        "Permissions": [{"Action": "allow", "HTTP": {"PathRegex": "(["}}],
    }
    bad_name = {**ixn("web", "api", ident="odd").view(), "SourceName": "Not A Label"}
    view = IntentionView(
        {"default": "allow", "intentions": [bad_regex, bad_name, {"ID": "x"}, ALL[3].view()]}
    )
    compiled = view.compile("default", "api")
    assert compiled["rules"] == [
        {"id": "bad", "source": "default/batch", "action": "deny"},
        {"id": "web->api", "source": "default/web", "action": "allow"},
    ]
    assert set(view.rejected) == {"bad", "x"}
    assert "PathRegex" in view.rejected["bad"]
    snapshot = parse_snapshot(
        {
            "schema": "weft.proxy.snapshot/v3",
            "version": 1,
            "identity": "spiffe://weft.test/ns/default/svc/api",
            "tls": {"cert": "/c", "key": "/k", "bundle": "/b"},
            "intentions": compiled,
        }
    )
    assert snapshot.intentions is not None
