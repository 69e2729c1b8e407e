"""The resource format's rules, pure: every problem of a document, each naming its field."""

from __future__ import annotations

from typing import Any

import pytest

from registry.resources import check_document, validate_all


def route(**rule: Any) -> dict[str, Any]:
    return {
        "apiVersion": "weft.dev/v1",
        "kind": "Route",
        "metadata": {"name": "books"},
        "spec": {"service": "books", "rules": [{"name": "r", **rule}]},
    }


def defaults(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "weft.dev/v1",
        "kind": "ServiceDefaults",
        "metadata": {"name": "books"},
        "spec": spec,
    }


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        (defaults(balancer="RANDOM"), "spec.balancer: 'RANDOM': use one of p2c_ewma, round_"),
        (defaults(failureAccrual={"consecutiveFailures": 0}), "consecutiveFailures: 0 is outside"),
        (
            defaults(failureAccrual={"backoffMin": "2m"}),  # backoffMax is 60s unless given
            "spec.failureAccrual.backoffMin: '2m' is above backoffMax",
        ),
        (defaults(connectionPool={"maxConnections": 0}), "maxConnections: 0 is outside 1..100000"),
        (defaults(connectionPool={"maxPending": 1}), "connectionPool.maxPending: unknown field"),
        (route(rewrite={"prefix": "/a?b"}), "rewrite.prefix: '/a?b' is not a path"),
        (route(rewrite={"prefix": "/a", "fullPath": "/b"}), "give exactly one of prefix and"),
        (route(timout="1s"), "spec.rules[0].timout: unknown field"),
        (route(match=[{"path": {"regex": "(("}}]), "spec.rules[0].match[0].path.regex: '((' is"),
        (route(match=[{"path": {"exact": "/a", "prefix": "/"}}]), "needs exactly one of"),
        (route(match=[{"path": {"prefix": "a"}}]), "match[0].path.prefix: 'a' must be a string"),
        (route(match=[{"method": "get"}]), "match[0].method: 'get' is not an HTTP method"),
        (route(match=[{"headers": [{"name": "x", "present": False}]}]), "only 'true'"),
        (route(match=[{"not": {"not": {"not": {"not": {"not": {}}}}}}]), "nest at most 4"),
        (
            route(backends=[{"service": "a", "weight": 0}, {"service": "b", "weight": 0}]),
            "spec.rules[0].backends: the weights sum to 0",
        ),
        (route(backends=[{"service": "a", "weight": 1.5}]), "expected a whole number"),
        (route(timeout="0s"), "spec.rules[0].timeout: '0s' is outside 1ms..1h"),
        (route(timeout="soon"), "is not a duration"),
        (route(retries={"retryOn": ["sometimes"]}), "'sometimes' is not a retry condition"),
        (route(retries={"attempts": 11}), "retries.attempts: 11 is outside 0..10"),
        (route(fault={"abort": {"status": 503, "percent": 101}}), "percent: 101 is outside"),
        (route(fault={}), "give a delay, an abort or both"),
        (
            route(fault={"abort": {"status": 503, "grpcStatus": 0, "percent": 1}}),
            "spec.rules[0].fault.abort.grpcStatus: 0 is outside 1..16",
        ),
        (route(requestHeaders={"set": {"x-weft-client-id": "x"}}), "managed by the proxy"),
        (route(requestHeaders={"set": {"x-a": "1\r\nx-b: 2"}}), "without CR or LF"),
        (route(responseClasses=[{"status": {"min": 500, "max": 400}}]), "max: 400 is below"),
        (route(name="default"), "'default' is the unmatched route's name"),
        ({"apiVersion": "weft.dev/v2", "kind": "Route"}, "apiVersion: 'weft.dev/v2' is not"),
        ({**route(), "status": {}}, "status: unknown field"),
    ],
)
def test_each_problem_names_its_field(doc: dict[str, Any], problem: str) -> None:
    problems = check_document(doc)
    assert any(problem in p for p in problems), problems


def test_a_good_route_has_no_problems() -> None:
    doc = route(
        match=[
            {
                "method": ["GET", "HEAD"],
                "path": {"segmentPrefix": "/b"},
                "query": [{"name": "v", "regex": "[0-9]+"}],
                "any": [{"headers": [{"name": "x-a", "absent": True}]}],
            }
        ],
        backends=[{"service": "books", "subset": "v1", "weight": 90}, {"service": "books-next"}],
        timeout="300ms",
        perTryTimeout="100ms",
        retries={"attempts": 2, "retryOn": ["gateway-error", 409], "nonIdempotent": True},
        mirror={"service": "shadow", "percent": 10},
    )
    assert check_document(doc) == []


def test_the_batch_rules_across_documents() -> None:
    subset = {
        "apiVersion": "weft.dev/v1",
        "kind": "Subset",
        "metadata": {"name": "books-v1"},
        "spec": {"service": "books", "subset": "v1", "tags": ["v1"]},
    }
    other = {**subset, "metadata": {"name": "books-one"}}
    second_route = {**route(), "metadata": {"name": "books-2"}}
    _, problems = validate_all([route(), route(), second_route, subset, other])
    assert "resources[1] (Route books): metadata.name: Route 'books' is given twice" in problems
    assert any(p.startswith("resources[2] (Route books-2): spec.service:") for p in problems)
    assert any("resources[4] (Subset books-one): spec.subset:" in p for p in problems)
