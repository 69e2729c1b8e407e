"""The importers' rules that a golden file does not show on its own: the naming rule, Linkerd's
regex anchoring, and hostile or malformed documents refused by name, never a crash."""

from __future__ import annotations

import pytest

from registry.importers import convert, is_foreign, service_of


@pytest.mark.parametrize(
    "host",
    [
        "reviews.default.svc.cluster.local",
        "reviews.default",
        "reviews",
        "reviews:9080",
        "Reviews.prod.svc.example.org:80",
    ],
)
def test_kubernetes_names_map_to_the_first_label(host: str) -> None:
    assert service_of(host) == "reviews"


@pytest.mark.parametrize("host", ["*", "*.example.com", "", None, 7, "-bad"])
def test_names_that_are_no_service_map_to_none(host: object) -> None:
    assert service_of(host) is None


def test_linkerd_path_regex_anchors_are_stripped_because_weft_matches_the_whole_path() -> None:
    doc = {
        "apiVersion": "linkerd.io/v1alpha2",
        "kind": "ServiceProfile",
        "metadata": {"name": "books"},
        "spec": {
            "routes": [
                {"name": "a", "condition": {"pathRegex": " ^/books/\\d+$ "}},
                {"name": "b", "condition": {"pathRegex": "/price\\$"}},
            ]
        },
    }
    rules = convert([doc]).docs[0]["spec"]["rules"]
    assert rules[0]["match"] == [{"path": {"regex": "/books/\\d+"}}]
    assert rules[1]["match"] == [{"path": {"regex": "/price\\$"}}]  # an escaped $ stays


@pytest.mark.parametrize(
    "spec",
    [
        {"http": "nope", "hosts": ["a"]},
        {"http": [{"route": [{"destination": "x"}]}], "hosts": ["a"]},
        {"http": [{"match": [{"headers": ["x"]}]}], "hosts": ["a"]},
        {"http": [{"retries": {"attempts": "many"}}], "hosts": ["a"]},
        {"hosts": "a", "http": [{}]},
    ],
)
def test_malformed_virtual_services_are_refused_by_name_not_crashed_on(spec: object) -> None:
    doc = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "bad"},
        "spec": spec,
    }
    result = convert([doc])
    assert (
        result.problems
        or result.docs == []
        or all(d["apiVersion"] == "weft.dev/v1" for d in result.docs)
    )
    assert all(p.startswith("VirtualService bad: ") for p in result.problems)


def test_weft_documents_pass_through_unchanged_and_unknown_kinds_are_left_to_the_checks() -> None:
    weft_doc = {
        "apiVersion": "weft.dev/v1",
        "kind": "Subset",
        "metadata": {"name": "x"},
        "spec": {"service": "x", "subset": "v1", "tags": ["v1"]},
    }
    other = {"apiVersion": "v1", "kind": "ConfigMap"}
    assert not is_foreign(weft_doc) and not is_foreign(other)
    assert convert([weft_doc, other]).docs == [weft_doc, other]


def virtual_service(*http: dict) -> dict:  # type: ignore[type-arg]
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "ratings"},
        "spec": {"hosts": ["ratings"], "http": list(http)},
    }


def rule_of(doc: dict) -> dict:  # type: ignore[type-arg]
    return convert([doc]).docs[0]["spec"]["rules"][0]  # type: ignore[no-any-return]


def test_istio_retries_without_retry_on_keep_istios_default_conditions() -> None:
    # Istio starts from its default policy and overrides only what `retries` says.
    rule = rule_of(virtual_service({"retries": {"attempts": 3, "perTryTimeout": "2s"}}))
    assert rule["retries"] == {
        "attempts": 3,
        "retryOn": ["reset", "unavailable", "cancelled", 503],
    }
    assert rule["perTryTimeout"] == "2s"


def test_istios_grpc_retry_tokens_are_grpc_conditions() -> None:
    tokens = "unavailable,resource-exhausted,deadline-exceeded,internal,cancelled"
    rule = rule_of(virtual_service({"retries": {"attempts": 2, "retryOn": tokens}}))
    assert rule["retries"]["retryOn"] == tokens.split(",")


def test_envoys_5xx_also_retries_a_failed_connection_and_codes_need_no_token() -> None:
    rule = rule_of(virtual_service({"retries": {"attempts": 2, "retryOn": "5xx"}}))
    assert rule["retries"]["retryOn"] == ["5xx", "reset"]
    rule = rule_of(
        virtual_service({"retries": {"attempts": 2, "retryOn": "retriable-status-codes,409"}})
    )
    assert rule["retries"]["retryOn"] == [409]
    result = convert(
        [virtual_service({"retries": {"attempts": 2, "retryOn": "retriable-status-codes"}})]
    )
    assert result.docs[0]["spec"]["rules"][0]["retries"] == {"attempts": 0}
    assert "retriable-status-codes lists no status codes" in result.warnings[0]


def test_a_rule_with_a_fault_gets_no_timeout_and_no_retries_as_in_istio() -> None:
    fault = {"abort": {"httpStatus": 500, "percentage": {"value": 100}}}
    result = convert([virtual_service({"fault": fault, "timeout": "1s", "retries": {}})])
    rule = result.docs[0]["spec"]["rules"][0]
    assert "timeout" not in rule and "retries" not in rule
    assert rule["fault"] == {"abort": {"status": 500, "percent": 100.0}}
    assert [w.split(": ", 1)[1] for w in result.warnings] == [
        "http[0].timeout is ignored: Istio enables no timeout or retries on a rule with a fault",
        "http[0].retries is ignored: Istio enables no timeout or retries on a rule with a fault",
    ]
    implicit = convert([virtual_service({"fault": fault})])
    assert "retries" not in implicit.docs[0]["spec"]["rules"][0]
    assert "Istio enables no retries on a rule with a fault" in implicit.notes[0]


def test_an_abort_with_a_grpc_status_keeps_the_code_for_grpc_callers() -> None:
    fault = {"abort": {"grpcStatus": "RESOURCE_EXHAUSTED", "percentage": {"value": 25}}}
    rule = convert([virtual_service({"fault": fault})]).docs[0]["spec"]["rules"][0]
    # HTTP/1.1 callers get the code's HTTP status (429, as Envoy answers it)
    assert rule["fault"] == {"abort": {"status": 429, "grpcStatus": 8, "percent": 25.0}}
    bad = convert([virtual_service({"fault": {"abort": {"grpcStatus": "NOPE"}}})])
    assert bad.problems == [
        "VirtualService ratings: http[0].fault.abort.grpcStatus: 'NOPE' is not a gRPC status "
        "name (UNAVAILABLE, ...)"
    ]


def destination_rule(policy: dict) -> dict:  # type: ignore[type-arg]
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "reviews"},
        "spec": {"host": "reviews.prod.svc.cluster.local", "trafficPolicy": policy},
    }


def test_destination_rule_traffic_policy_becomes_the_services_endpoint_policy() -> None:
    result = convert(
        [
            destination_rule(
                {
                    "loadBalancer": {"simple": "ROUND_ROBIN"},
                    "connectionPool": {
                        "tcp": {"maxConnections": 100, "connectTimeout": "30ms"},
                        "http": {"idleTimeout": "1h", "http2MaxRequests": 1000},
                    },
                    "outlierDetection": {"consecutive5xxErrors": 7, "baseEjectionTime": "15m"},
                }
            )
        ]
    )
    (defaults,) = result.docs
    assert defaults["kind"] == "ServiceDefaults" and defaults["metadata"]["name"] == "reviews"
    assert defaults["spec"] == {
        "balancer": "round_robin",
        "connectionPool": {"maxConnections": 100, "connectTimeout": "30ms", "idleTimeout": "1h"},
        # Envoy's max ejection time is 300 s, or the base when that is longer
        "failureAccrual": {"consecutiveFailures": 7, "backoffMin": "900s", "backoffMax": "900s"},
    }
    assert result.warnings == [
        "DestinationRule reviews: spec.trafficPolicy.connectionPool.http.http2MaxRequests "
        "is not supported and is ignored"
    ]


@pytest.mark.parametrize(
    ("policy", "spec", "said"),
    [
        ({"loadBalancer": {"simple": "RANDOM"}}, None, "simple RANDOM is not supported"),
        (
            {"loadBalancer": {"consistentHash": {"httpCookie": {"name": "u"}}}},
            None,
            "loadBalancer.consistentHash is not supported",
        ),
        (
            {"outlierDetection": {}},  # present: Envoy's defaults, 5 failures and 30 s
            {
                "failureAccrual": {
                    "consecutiveFailures": 5,
                    "backoffMin": "30s",
                    "backoffMax": "300s",
                }
            },
            "ejected after 5 failures in a row",
        ),
        (
            {"outlierDetection": {"consecutive5xxErrors": 0}},
            {
                "failureAccrual": {
                    "consecutiveFailures": 1000,
                    "backoffMin": "30s",
                    "backoffMax": "300s",
                }
            },
            "0 turns ejection off",
        ),
        ({"tls": {"mode": "ISTIO_MUTUAL"}}, None, "Weft's sidecars always speak mutual TLS"),
    ],
)
def test_each_traffic_policy_field_is_honoured_or_named(
    policy: dict,  # type: ignore[type-arg]
    spec: dict | None,  # type: ignore[type-arg]
    said: str,
) -> None:
    result = convert([destination_rule(policy)])
    assert [d["spec"] for d in result.docs] == ([spec] if spec else [])
    assert any(said in line for line in result.warnings + result.notes), result


def http_route(name: str = "r", annotations: dict | None = None, **spec: object) -> dict:  # type: ignore[type-arg]
    meta: dict[str, object] = {"name": name, "namespace": "shop"}
    if annotations:
        meta["annotations"] = annotations
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": meta,
        "spec": {
            "parentRefs": [{"kind": "Service", "group": "", "name": "books"}],
            "rules": [{}],
            **spec,
        },
    }


def test_linkerd_retry_annotations_expand_ranges_and_retry_per_try_timeouts() -> None:
    result = convert(
        [
            http_route(
                annotations={
                    "retry.linkerd.io/http": "500-504,gateway-error,429",
                    "retry.linkerd.io/timeout": "250ms",
                    "retry.linkerd.io/grpc": "unavailable",
                    "kubectl.kubernetes.io/last-applied-configuration": "{}",
                }
            )
        ]
    )
    (rule,) = result.docs[0]["spec"]["rules"]
    assert rule["perTryTimeout"] == "250ms"
    assert rule["retries"] == {
        "attempts": 1,  # Linkerd's limit unless retry.linkerd.io/limit says otherwise
        "retryOn": [500, 501, 502, 503, 504, "gateway-error", 429, "timeout"],
        "nonIdempotent": True,
    }
    assert result.warnings == [
        "HTTPRoute r: metadata.annotations.retry.linkerd.io/grpc is not supported and is ignored"
    ]


def test_linkerd_annotations_win_over_the_routes_own_fields() -> None:
    route = http_route(
        annotations={"timeout.linkerd.io/request": "2s", "timeout.linkerd.io/idle": "1m"},
        rules=[{"timeouts": {"request": "10s"}, "retry": {"attempts": 2}}],
    )
    result = convert([route])
    (rule,) = result.docs[0]["spec"]["rules"]
    assert rule["timeout"] == "2s" and rule["retries"]["attempts"] == 2
    assert "timeout.linkerd.io/idle is not supported" in result.warnings[0]


def test_a_consumer_route_is_warned_it_applies_to_every_caller() -> None:
    route = http_route()
    route["spec"]["parentRefs"][0]["namespace"] = "faces"
    result = convert([route])
    assert result.docs[0]["spec"]["service"] == "books"
    assert "spec.parentRefs[0].namespace is ignored: a consumer route" in result.warnings[0]


def test_http_routes_of_one_service_merge_with_unique_rule_names_in_name_order() -> None:
    a = http_route("b-route", rules=[{"name": "x"}, {"matches": [{"method": "GET"}]}])
    b = http_route("a-route", rules=[{"name": "x"}])
    other = {**http_route("c-route"), "apiVersion": "policy.linkerd.io/v1beta3"}
    other["spec"] = {**other["spec"], "parentRefs": [{"kind": "Service", "name": "authors"}]}
    result = convert([a, b, other])
    assert [d["spec"]["service"] for d in result.docs] == ["books", "authors"]
    assert [r["name"] for r in result.docs[0]["spec"]["rules"]] == ["x", "x-2", "b-route-1"]
    assert result.sources == [0, 2]
    assert result.notes == [
        "HTTPRoute shop/a-route, shop/b-route: merged into Route books, rules ranked by "
        "specificity and then by route name (Gateway API ranks the older route first; Weft "
        "knows no ages)"
    ]


def test_a_response_class_with_only_min_is_that_one_status_and_opaque_ports_are_warned() -> None:
    # Linkerd's reference: "Specifying only one of min or max matches just that one status code."
    profile = {
        "apiVersion": "linkerd.io/v1alpha2",
        "kind": "ServiceProfile",
        "metadata": {"name": "web-svc.emojivoto.svc.cluster.local"},
        "spec": {
            "opaquePorts": ["3306"],
            "routes": [
                {
                    "name": "GET /api/list",
                    "condition": {"method": "GET", "pathRegex": "/api/list"},
                    "isRetryable": True,
                    "responseClasses": [{"condition": {"status": {"min": 404}}, "isFailure": True}],
                }
            ],
        },
    }
    result = convert([profile])
    (rule,) = result.docs[0]["spec"]["rules"]
    assert rule["responseClasses"] == [{"status": {"min": 404, "max": 404}, "failure": True}]
    assert rule["retries"]["retryOn"] == ["5xx", 404]  # what the classes call a failure
    assert "responseClasses[0].condition.status: no max: read as exactly 404" in result.notes[0]
    assert "spec.opaquePorts is ignored" in result.warnings[0]


def test_an_abort_with_the_legacy_integer_percent_injects_that_share() -> None:
    # Istio's bookinfo sample virtual-service-ratings-test-abort.yaml writes `percent: 100`.
    fault = {"abort": {"percent": 100, "httpStatus": 500}}
    result = convert([virtual_service({"fault": fault})])
    assert result.docs[0]["spec"]["rules"][0]["fault"] == {
        "abort": {"status": 500, "percent": 100.0}
    }
    assert result.warnings == []


def traffic_split(**spec: object) -> dict:  # type: ignore[type-arg]
    return {
        "apiVersion": "split.smi-spec.io/v1alpha4",
        "kind": "TrafficSplit",
        "metadata": {"name": "split"},
        "spec": {
            "service": "website",
            "backends": [{"service": "website-v2", "weight": 100}],
            **spec,
        },
    }


def route_group(name: str, *routes: dict) -> dict:  # type: ignore[type-arg]
    return {
        "apiVersion": "specs.smi-spec.io/v1alpha4",
        "kind": "HTTPRouteGroup",
        "metadata": {"name": name},
        "spec": {"matches": list(routes)},
    }


def test_a_split_with_matches_splits_only_matching_requests_and_the_rest_go_to_the_root() -> None:
    iphone = {
        "name": "iphone-users",
        "pathRegex": "/api/.*",
        "methods": ["GET", "HEAD"],
        "headers": {"User-Agent": ".*iPhone.*"},
    }
    everyone = {"name": "health", "pathRegex": "/ping", "methods": ["*"]}
    result = convert(
        [
            traffic_split(matches=[{"kind": "HTTPRouteGroup", "name": "the-routes"}]),
            route_group("the-routes", iphone, everyone),
        ]
    )
    split, root = result.docs[0]["spec"]["rules"]
    assert split["match"] == [
        {
            "path": {"regex": "(?:/api/.*).*"},  # SMI anchors the regex at the start only
            "method": ["GET", "HEAD"],
            "headers": [{"name": "user-agent", "regex": ".*iPhone.*"}],
        },
        {"path": {"regex": "(?:/ping).*"}},
    ]
    assert root == {"name": "default"}  # the root service itself
    assert result.warnings == [] and result.problems == []


def test_a_split_naming_a_group_not_applied_with_it_is_refused_and_a_lone_group_warned() -> None:
    missing = convert([traffic_split(matches=[{"kind": "HTTPRouteGroup", "name": "ab-test"}])])
    assert missing.docs == []
    assert "HTTPRouteGroup 'ab-test' is not in this apply" in missing.problems[0]
    lone = convert([route_group("spare", {"name": "x", "pathRegex": "/x"})])
    assert lone.docs == []
    assert lone.warnings == [
        "HTTPRouteGroup spare: no TrafficSplit of this apply names it: ignored (SMI access "
        "policy, TrafficTarget, is not imported)"
    ]


def test_a_url_rewrite_filter_becomes_the_rules_rewrite() -> None:
    prefix = {
        "type": "URLRewrite",
        "urlRewrite": {
            "hostname": "elsewhere.example",
            "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/xyz"},
        },
    }
    result = convert([http_route(rules=[{"filters": [prefix]}])])
    (rule,) = result.docs[0]["spec"]["rules"]
    # no path match written: Gateway API's PathPrefix "/" is the prefix replaced
    assert rule["match"] == [{"path": {"segmentPrefix": "/"}}]
    assert rule["rewrite"] == {"prefix": "/xyz"}
    assert "urlRewrite.hostname is not supported" in result.warnings[0]
    full = {"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplaceFullPath"}}}
    rule = convert([http_route(rules=[{"filters": [full]}])]).docs[0]["spec"]["rules"][0]
    assert rule["rewrite"] == {"fullPath": "/"} and "match" not in rule


def test_a_naming_maps_kubernetes_names_in_their_namespace() -> None:
    """The adapter's naming: a short host is read in its document's namespace, a qualified
    one in its own; `weft apply` (no naming) keeps the first label."""

    def naming(name: str, namespace: str | None) -> str | None:
        return f"{name}-{namespace}" if namespace else None

    assert service_of("reviews.prod.svc.cluster.local", "ns", naming) == "reviews-prod"
    assert service_of("reviews", "ns", naming) == "reviews-ns"
    assert service_of("reviews:9080", None, naming) is None
    assert service_of("reviews.prod.svc.cluster.local") == "reviews"
    assert service_of("reviews", "ns", lambda n, s: "Not A Label") is None
    vs = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "r", "namespace": "ns"},
        "spec": {
            "hosts": ["reviews"],
            "http": [{"route": [{"destination": {"host": "ratings.other.svc.cluster.local"}}]}],
        },
    }
    (route,) = convert([vs], naming).docs
    assert route["metadata"]["name"] == route["spec"]["service"] == "reviews-ns"
    assert route["spec"]["rules"][0]["backends"] == [{"service": "ratings-other"}]
    assert convert([vs]).docs[0]["spec"]["service"] == "reviews"
