"""Traffic resources compiled by the agent into snapshot v2, checked by the proxy's own parser:
the contract between `weft apply`, the agent and the sidecar, without sockets."""

from __future__ import annotations

from pathlib import Path

import yaml

from agent._certs import CertFiles
from agent._definitions import parse
from agent._snapshots import build, wanted_services
from agent._traffic import Resources, upstream_fields
from ca import SpiffeId
from proxy._h1 import Limits, parse_request_head
from proxy._route_match import RequestView
from proxy._snapshot import parse_snapshot
from registry.resources import validate_all

WEB = """
name = "web"
port = 8080
[sidecar]
port = 21000
[[upstreams]]
service = "books"
local_port = 9191
"""

RESOURCES = """
apiVersion: weft.dev/v1
kind: Route
metadata: {name: books}
spec:
  service: books
  precedence: specificity
  rules:
  - name: canary
    match: [{headers: [{name: x-canary, exact: "1"}]}]
    backends: [{service: books, subset: v2}]
    fault: {abort: {status: 429, grpcStatus: 8, percent: 1}}
  - name: book
    match: [{method: GET, path: {segmentPrefix: /books}}]
    perTryTimeout: 100ms
    fault: {delay: {fixed: 50ms, percent: 1}}
    mirror: {service: shadow, percent: 5}
    rewrite: {prefix: /catalog}
    requestHeaders: {set: {x-env: prod}, remove: [x-debug]}
---
apiVersion: weft.dev/v1
kind: ServiceDefaults
metadata: {name: books}
spec:
  timeout: 2s
  retries: {attempts: 1, retryOn: [5xx, timeout]}
  retryBudget: {ratio: 0.1, minPerSecond: 5, ttl: 5s}
  responseClasses: [{status: {min: 404}, failure: true}]
---
apiVersion: weft.dev/v1
kind: Subset
metadata: {name: books-v2}
spec: {service: books, subset: v2, meta: {version: "2"}}
"""


def instance(address: str, service: str, **extra: object) -> dict[str, object]:
    return {
        "address": address,
        "node_address": address,
        "sidecar_port": 21000,
        "identity": f"spiffe://td/ns/default/svc/{service}",
        "status": "passing",
        "protocol": "http",
        **extra,
    }


def compiled() -> dict:
    docs = list(yaml.safe_load_all(RESOURCES))
    stored, problems = validate_all(docs)
    assert problems == []
    resources = Resources([r.doc for r in stored])
    d = parse("web.toml", WEB)
    assert wanted_services(d, resources) == {"books", "shadow"}
    files = CertFiles(Path("/c/web.crt"), Path("/c/web.key"), Path("/c/bundle.pem"))
    instances = {
        "books": [
            instance("10.0.0.1", "books", meta={"version": "1"}),
            instance("10.0.0.2", "books", meta={"version": "2"}, tags=["x"]),
        ],
        "shadow": [instance("10.0.0.9", "shadow")],
    }
    return build(
        d, SpiffeId("td", "default", "web"), files, instances, version=3, resources=resources
    )


def test_resources_compile_to_a_v2_snapshot_the_proxy_accepts() -> None:
    doc = compiled()
    assert doc["schema"] == "weft.proxy.snapshot/v2"
    books, shadow = doc["upstreams"]
    assert shadow["name"] == "shadow" and "port" not in shadow  # a mirror: no local listener
    assert [e.get("subsets") for e in books["endpoints"]] == [None, ["v2"]]
    assert books["retry_budget"] == {"ratio": 0.1, "min_per_second": 5, "ttl_ms": 5000}
    assert books["precedence"] == "specificity"
    canary, book, default = books["routes"]
    # the service's defaults fill in what a rule does not say
    assert canary["timeout_ms"] == 2000 and canary["retry"]["on"] == ["5xx", "timeout"]
    assert canary["fault"] == {"abort": {"status": 429, "percent": 1, "grpc_status": 8}}
    assert book["per_try_ms"] == 100 and book["fault"] == {"delay": {"ms": 50, "percent": 1}}
    assert book["match"] == [{"method": "GET", "path": {"segment_prefix": "/books"}}]
    assert book["rewrite"] == {"prefix": "/catalog"}
    assert default == {
        "name": "default",
        "timeout_ms": 2000,
        "retry": {"attempts": 1, "on": ["5xx", "timeout"], "non_idempotent": False},
        "response_classes": [{"min": 404, "max": 404, "failure": True}],
    }

    snapshot = parse_snapshot(doc)  # the proxy's whole validation, schema and rules
    table = snapshot.upstream("books").table

    def route(text: str) -> str:
        raw = text.replace("\n", "\r\n").encode()
        rule = table.find(RequestView(parse_request_head(raw, Limits())))
        return rule.name if rule else ""

    assert route("GET /books/1 HTTP/1.1\nHost: b\nx-canary: 1\n\n") == "book"  # more specific
    canary_fault = next(r for _, r in table.entries if r.name == "canary").fault
    assert canary_fault is not None and canary_fault.abort_grpc == 8  # gRPC callers get it
    rewrite = next(r for _, r in table.entries if r.name == "book").rewrite
    assert rewrite is not None and rewrite.apply(b"/books/1?x") == b"/catalog/1?x"
    assert route("GET /x HTTP/1.1\nHost: b\nx-canary: 1\n\n") == "canary"
    assert route("DELETE /x HTTP/1.1\nHost: b\n\n") == "default"


def test_without_resources_an_upstream_has_only_the_default_budget() -> None:
    assert upstream_fields("books", Resources([])) == {
        "retry_budget": {"ratio": 0.2, "min_per_second": 10, "ttl_ms": 10_000}
    }


def test_unmatched_reject_leaves_no_default_route() -> None:
    docs = list(
        yaml.safe_load_all(RESOURCES.replace("precedence: specificity", "unmatched: reject"))
    )
    stored, problems = validate_all(docs)
    assert problems == []
    fields = upstream_fields("books", Resources([r.doc for r in stored]))
    assert [r["name"] for r in fields["routes"]] == ["canary", "book"]


def test_service_defaults_choose_the_balancer_accrual_and_pool_of_the_upstream() -> None:
    docs = [
        {
            "apiVersion": "weft.dev/v1",
            "kind": "ServiceDefaults",
            "metadata": {"name": "books"},
            "spec": {
                "balancer": "round_robin",
                "failureAccrual": {
                    "consecutiveFailures": 1,
                    "backoffMin": "3m",
                    "backoffMax": "5m",
                },
                "connectionPool": {"maxConnections": 2, "connectTimeout": "30ms"},
            },
        }
    ]
    stored, problems = validate_all(docs)
    assert problems == []
    resources = Resources([r.doc for r in stored])
    fields = upstream_fields("books", resources)
    assert fields["balancer"] == "round_robin"
    assert fields["failure_accrual"] == {
        "consecutive_failures": 1,
        "backoff_min_ms": 180_000,
        "backoff_max_ms": 300_000,
    }
    assert fields["pool"] == {"max_connections": 2}
    assert fields["timeouts"] == {"connect_ms": 30}
    assert "routes" not in fields  # endpoint policy alone adds no default route
    d = parse("web.toml", WEB)
    files = CertFiles(Path("/c/web.crt"), Path("/c/web.key"), Path("/c/bundle.pem"))
    doc = build(
        d,
        SpiffeId("td", "default", "web"),
        files,
        {"books": [instance("10.0.0.1", "books")]},
        version=1,
        resources=resources,
    )
    books = parse_snapshot(doc).upstream("books")  # the proxy takes them as they are
    assert books is not None and books.balancer == "round_robin"
    assert books.accrual.max_failures == 1 and books.accrual.backoff_min == 180.0
    assert books.pool.max_connections == 2 and books.timeouts.connect == 0.03


def test_an_opaque_tcp_upstream_takes_the_endpoint_policy_but_no_routes() -> None:
    docs = [
        {
            "apiVersion": "weft.dev/v1",
            "kind": "ServiceDefaults",
            "metadata": {"name": "books"},
            "spec": {"balancer": "least_request", "connectionPool": {"connectTimeout": "30ms"}},
        }
    ]
    stored, problems = validate_all(docs)
    assert problems == []
    d = parse("web.toml", WEB)
    files = CertFiles(Path("/c/web.crt"), Path("/c/web.key"), Path("/c/bundle.pem"))
    tcp = instance("10.0.0.1", "books", protocol="tcp")
    doc = build(
        d,
        SpiffeId("td", "default", "web"),
        files,
        {"books": [tcp]},
        version=1,
        resources=Resources([r.doc for r in stored]),
    )
    books = parse_snapshot(doc).upstream("books")
    assert books is not None and books.protocol == "tcp"
    assert books.balancer == "least_request" and books.timeouts.connect == 0.03
    assert "routes" not in doc["upstreams"][0]
