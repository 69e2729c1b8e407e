"""The snapshot contract: schema, semantic checks, defaults, and the schema validator itself."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy._errors import SnapshotError
from proxy._schema import UnsupportedSchema, Validator, snapshot_schema, snapshot_validator
from proxy._snapshot import parse_snapshot

B = "spiffe://weft.test/ns/default/svc/b"


def full_doc() -> dict[str, Any]:
    return {
        "schema": "weft.proxy.snapshot/v1",
        "version": 7,
        "identity": "spiffe://weft.test/ns/default/svc/a",
        "tls": {"cert": "/c.pem", "key": "/k.pem", "bundle": "/b.pem"},
        "inbound": {
            "address": "0.0.0.0",
            "port": 15443,
            "protocol": "http",
            "app": {"address": "127.0.0.1", "port": 8080},
            "timeouts": {"connect_ms": 500, "response_ms": 10000},
            "pool": {"max_connections": 64, "idle_timeout_ms": 30000},
        },
        "authorization": {
            "default": "deny",
            "rules": [
                {"name": "web", "action": "allow", "sources": ["web", "ops/*"]},
                {"action": "deny", "sources": ["*"]},
            ],
        },
        "upstreams": [
            {
                "name": "b",
                "port": 14001,
                "protocol": "http",
                "balancer": "round_robin",
                "endpoints": [
                    {"address": "10.0.0.5", "port": 15443, "weight": 3, "identity": B},
                    {"address": "10.0.0.6", "port": 15443, "identity": B},
                ],
                "timeouts": {"connect_ms": 1000},
                "failure_accrual": {"consecutive_failures": 3, "jitter": 0.1},
            },
            {"name": "redis", "protocol": "tcp", "endpoints": []},
        ],
        "forward_proxy": {},
    }


def problems_of(doc: Any) -> list[str]:
    with pytest.raises(SnapshotError) as info:
        parse_snapshot(doc if isinstance(doc, str | bytes) else json.dumps(doc))
    return info.value.problems


def test_a_full_snapshot_parses_with_defaults_filled_in() -> None:
    snap = parse_snapshot(json.dumps(full_doc()).encode())
    assert snap.version == 7 and snap.identity.service == "a"
    assert snap.inbound is not None and snap.inbound.app_port == 8080
    assert snap.inbound.timeouts.response == 10.0 and snap.inbound.pool.max_connections == 64
    assert not snap.authorization.default_allow
    assert [r.name for r in snap.authorization.rules] == ["web", "rule-1"]
    b = snap.upstream("b")
    assert b is not None and b.balancer == "round_robin" and b.address == "127.0.0.1"
    assert [e.weight for e in b.endpoints] == [3, 1]
    assert b.endpoints[0].identity.uri == B and b.endpoints[0].key == "10.0.0.5:15443"
    assert b.timeouts.connect == 1.0 and b.timeouts.response == 30.0
    assert b.accrual.max_failures == 3 and b.accrual.backoff_min == 1.0
    redis = snap.upstream("redis")
    assert redis is not None and redis.port is None and redis.balancer == "p2c_ewma"
    assert snap.forward_proxy is not None and snap.forward_proxy.port == 15001
    assert len(snap.digest) == 64


def test_the_digest_ignores_key_order_but_not_content() -> None:
    doc = full_doc()
    reordered = dict(reversed(list(doc.items())))
    assert parse_snapshot(doc).digest == parse_snapshot(reordered).digest
    doc["version"] = 8
    assert parse_snapshot(doc).digest != parse_snapshot(reordered).digest


def test_a_minimal_snapshot_is_a_client_only_proxy() -> None:
    doc = {k: full_doc()[k] for k in ("schema", "version", "identity", "tls")}
    snap = parse_snapshot(doc)
    assert snap.inbound is None and snap.upstreams == () and snap.forward_proxy is None
    assert snap.authorization.default_allow


def mutate(path: str, value: Any) -> dict[str, Any]:
    doc = full_doc()
    *parents, last = path.split(".")
    target: Any = doc
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    if value is KeyError:
        del target[int(last) if last.isdigit() else last]
    elif isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("version", -1, "version: -1 is less than the minimum 0"),
        ("version", "7", "version: must be integer"),
        ("schema", "weft.proxy.snapshot/v9", 'schema: "weft.proxy.snapshot/v9" is not one of'),
        ("identity", KeyError, "identity: is required"),
        ("identity", "spiffe://weft.test/ns/default/svc/Bad", "identity: 'spiffe"),
        ("bogus", 1, "bogus: unknown field"),
        ("inbound.port", 70000, "inbound.port: 70000 is more than the maximum 65535"),
        ("inbound.protocol", "udp", 'inbound.protocol: "udp" is not one of'),
        ("upstreams.0.endpoints.1.port", 0, "upstreams[0].endpoints[1].port: 0 is less"),
        (
            "upstreams.0.endpoints.1.identity",
            KeyError,
            "upstreams[0].endpoints[1].identity: is required",
        ),
        ("upstreams.0.balancer", "random", "upstreams[0].balancer"),
        ("upstreams.1.name", "b", "upstreams[1].name: upstream 'b' is defined twice"),
        ("upstreams.1.port", 15443, "upstreams[1].port: port 15443 on 127.0.0.1"),
        (
            "forward_proxy",
            {"port": 14001},
            "forward_proxy.port: port 14001 on 127.0.0.1 is also used",
        ),
        (
            "authorization.rules.0.sources",
            ["Web"],
            "authorization.rules[0].sources[0]: source 'Web'",
        ),
        ("authorization.rules.1.name", "web", "authorization.rules[1].name: 'web' is used twice"),
        ("authorization.default", "maybe", "authorization.default"),
        (
            "upstreams.0.failure_accrual",
            {"backoff_min_ms": 5000, "backoff_max_ms": 1000},
            "upstreams[0].failure_accrual.backoff_min_ms: must not exceed backoff_max_ms",
        ),
    ],
)
def test_each_problem_names_its_field(path: str, value: Any, expected: str) -> None:
    problems = problems_of(mutate(path, value))
    assert any(expected in p for p in problems), problems


def test_duplicate_endpoints_are_refused() -> None:
    doc = full_doc()
    doc["upstreams"][0]["endpoints"].append(dict(doc["upstreams"][0]["endpoints"][0]))
    assert any("listed twice" in p for p in problems_of(doc))


def test_every_problem_is_reported_at_once() -> None:
    doc = mutate("version", -1)
    doc["inbound"]["port"] = -2
    doc["upstreams"][0]["protocol"] = "udp"
    assert len(problems_of(doc)) == 3


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("{not json", "not valid JSON"), ("[1, 2]", "must be a JSON object"), (b"\xff\xfe", "JSON")],
)
def test_unreadable_documents_are_refused(raw: str | bytes, expected: str) -> None:
    assert any(expected in p for p in problems_of(raw))


# -- the validator against the reference implementation --------------------------------------

_REFERENCE = jsonschema.Draft202012Validator(snapshot_schema())
_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=70000),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from(["", "http", "tcp", "allow", "x", B, "round_robin", "a" * 300]),
    st.just([]),
    st.just({}),
)


def _paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def mutated_docs(draw: st.DrawFn) -> Any:
    doc = full_doc()
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        paths = [p for p in _paths(doc) if p]
        path = draw(st.sampled_from(paths))
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.sampled_from(["extra", "port", "name", "weight"]))] = draw(_leaves)
        else:
            parent[path[-1]] = draw(_leaves)
    return copy.deepcopy(doc)


@settings(max_examples=300, deadline=None)
@given(mutated_docs())
def test_the_validator_agrees_with_jsonschema(doc: Any) -> None:
    ours = snapshot_validator().errors(doc)
    reference = list(_REFERENCE.iter_errors(doc))
    assert bool(ours) == bool(reference), (ours, [e.message for e in reference])


def test_the_shipped_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(snapshot_schema())
    assert not snapshot_validator().errors(full_doc())


def test_the_validator_refuses_keywords_it_does_not_implement() -> None:
    with pytest.raises(UnsupportedSchema, match="oneOf"):
        Validator({"type": "object", "properties": {"a": {"oneOf": [{"type": "string"}]}}})


def test_v1_is_still_accepted_but_its_documents_cannot_use_v2_fields() -> None:
    v1 = parse_snapshot(full_doc())
    assert v1.upstream("b").table.implicit  # one `default` route, as v1 always behaved
    doc = full_doc()
    doc["upstreams"][0]["routes"] = [{"name": "all"}]
    doc["upstreams"][0]["endpoints"][0]["subsets"] = ["v1"]
    problems = problems_of(doc)
    assert "upstreams[0].routes: needs schema 'weft.proxy.snapshot/v2'" in problems
    assert "upstreams[0].endpoints: subsets need schema 'weft.proxy.snapshot/v2'" in problems
    doc["schema"] = "weft.proxy.snapshot/v2"
    v2 = parse_snapshot(doc)
    assert [r.name for r in v2.upstream("b").table.rules] == ["all"]
    assert v2.upstream("b").subsets() == {"v1"}


def test_v2_routes_must_name_http_upstreams_of_the_document() -> None:
    doc = full_doc()
    doc["schema"] = "weft.proxy.snapshot/v2"
    doc["upstreams"][0]["routes"] = [
        {"name": "a", "backends": [{"upstream": "redis"}]},
        {"name": "b", "mirror": {"upstream": "elsewhere"}},
    ]
    doc["upstreams"][1]["routes"] = [{"name": "c"}]
    problems = problems_of(doc)
    assert "upstreams[0].routes: backend 'redis' is not HTTP" in problems
    assert (
        "upstreams[0].routes: backend 'elsewhere' is not an upstream of this snapshot" in problems
    )
    assert "upstreams[1].routes: an opaque TCP upstream has no HTTP routes" in problems


def test_http2_and_grpc_protocols_parse_and_routes_do_not_mix_http_versions() -> None:
    doc = full_doc()
    doc["schema"] = "weft.proxy.snapshot/v2"
    doc["inbound"]["protocol"] = "grpc"
    doc["upstreams"][0]["protocol"] = "http2"
    snapshot = parse_snapshot(json.dumps(doc))
    assert snapshot.inbound is not None and snapshot.inbound.protocol == "grpc"
    assert snapshot.upstream("b").protocol == "http2"  # type: ignore[union-attr]
    doc["upstreams"].append(
        {"name": "old", "protocol": "http", "endpoints": [], "routes": [{"name": "r"}]}
    )
    doc["upstreams"][-1]["routes"][0]["backends"] = [{"upstream": "b"}]
    problems = problems_of(doc)
    assert any(
        "backend 'b' speaks http2, which 'old' (http) cannot carry" in p for p in problems
    ), problems
