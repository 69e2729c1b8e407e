"""The adapter's pure core for traffic CRDs: objects in, the Weft resources they make out,
compiled in groups per target service by the same importers `weft apply` uses; bad and
colliding objects skipped, named."""

from __future__ import annotations

from typing import Any

from k8s_adapter._objects import decode
from k8s_adapter._traffic_objects import TRAFFIC_KINDS, TrafficObjects, watch_kind

KINDS = {(c.group, c.name): c for c in TRAFFIC_KINDS}
VS = watch_kind(KINDS[("networking.istio.io", "VirtualService")], "v1")
DR = watch_kind(KINDS[("networking.istio.io", "DestinationRule")], "v1")
SE = watch_kind(KINDS[("networking.istio.io", "ServiceEntry")], "v1")
ROUTE = watch_kind(KINDS[("gateway.networking.k8s.io", "HTTPRoute")], "v1")
LINKERD_ROUTE = watch_kind(KINDS[("policy.linkerd.io", "HTTPRoute")], "v1beta3")
SPLIT = watch_kind(KINDS[("split.smi-spec.io", "TrafficSplit")], "v1alpha4")
GROUP = watch_kind(KINDS[("specs.smi-spec.io", "HTTPRouteGroup")], "v1alpha4")


def vs(name: str, host: str, rv: str, regex: str = "/a") -> dict[str, Any]:
    # A list item: no kind or apiVersion, as the API server sends items of a list.
    return {
        "metadata": {"name": name, "namespace": "ns", "resourceVersion": rv},
        "spec": {
            "hosts": [host],
            "http": [
                {"match": [{"uri": {"regex": regex}}], "route": [{"destination": {"host": host}}]}
            ],
        },
    }


def test_objects_compile_with_the_importer_and_carry_their_origin() -> None:
    changes: list[int] = []
    objects = TrafficObjects(lambda: changes.append(1))
    objects.replace(VS, [decode(VS, vs("a", "reviews", "1"))], [])
    plan = objects.plan()
    (route,) = plan.resources().values()
    assert (route["kind"], route["metadata"]["name"]) == ("Route", "reviews")
    assert route["spec"]["rules"][0]["match"] == [{"path": {"regex": "/a"}}]
    assert route["metadata"]["labels"]["weft.io/k8s-object"] == "VirtualService ns/a"
    assert changes == [1]


def test_the_first_object_keeps_a_resource_two_would_make() -> None:
    objects = TrafficObjects()
    objects.replace(
        VS, [decode(VS, vs("b", "reviews", "2")), decode(VS, vs("a", "reviews", "3"))], []
    )
    plan = objects.plan()
    assert list(plan.groups) == [(("VirtualService", "ns", "a"), ("VirtualService", "ns", "b"))]
    (route,) = plan.resources().values()
    assert route["metadata"]["labels"]["weft.io/k8s-object"] == "VirtualService ns/a"
    assert (
        "Route reviews is already made by VirtualService ns/a"
        in plan.skipped[(("VirtualService", "ns", "b"),)]
    )


def test_an_object_turned_invalid_keeps_its_last_good_version_until_deleted() -> None:
    objects = TrafficObjects()
    objects.apply(VS, "ADDED", decode(VS, vs("a", "reviews", "1")))
    good = objects.plan().resources()
    objects.apply(VS, "MODIFIED", decode(VS, vs("a", "reviews", "2", regex="((")))
    plan = objects.plan()
    assert plan.resources() == good
    assert "not a valid regex" in plan.skipped[(("VirtualService", "ns", "a"),)]
    objects.apply(VS, "DELETED", decode(VS, vs("a", "reviews", "3", regex="((")))
    assert objects.plan().resources() == {}


def test_an_object_never_good_makes_nothing() -> None:
    objects = TrafficObjects()
    objects.apply(VS, "ADDED", decode(VS, vs("a", "*.example.com", "1")))
    plan = objects.plan()
    assert plan.resources() == {} and (("VirtualService", "ns", "a"),) in plan.skipped


def http_route(name: str, service: str, path: str, rv: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns", "resourceVersion": rv},
        "spec": {
            "parentRefs": [{"kind": "Service", "group": "core", "name": service}],
            "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": path}}]}],
        },
    }


def test_two_httproutes_for_one_service_make_one_route_recomputed_on_delete() -> None:
    objects = TrafficObjects()
    objects.apply(ROUTE, "ADDED", decode(ROUTE, http_route("books", "web", "/books", "1")))
    objects.apply(ROUTE, "ADDED", decode(ROUTE, http_route("authors", "web", "/authors", "2")))
    objects.apply(ROUTE, "ADDED", decode(ROUTE, http_route("other", "api", "/x", "3")))
    plan = objects.plan()
    assert set(plan.groups) == {
        (("HTTPRoute", "ns", "authors"), ("HTTPRoute", "ns", "books")),
        (("HTTPRoute", "ns", "other"),),
    }
    route = plan.resources()[("Route", "web")]
    assert [r["name"] for r in route["spec"]["rules"]] == ["authors", "books"]
    assert route["metadata"]["labels"]["weft.io/k8s-object"] == (
        "HTTPRoute ns/authors, HTTPRoute ns/books"
    )
    objects.apply(ROUTE, "DELETED", decode(ROUTE, http_route("authors", "web", "/a", "4")))
    route = objects.plan().resources()[("Route", "web")]
    assert [r["name"] for r in route["spec"]["rules"]] == ["books"]


def test_linkerds_own_httproute_is_watched_beside_the_gateway_apis() -> None:
    objects = TrafficObjects()
    objects.apply(ROUTE, "ADDED", decode(ROUTE, http_route("same", "web", "/g", "1")))
    linkerd = {**http_route("same", "web", "/l", "2"), "kind": "HTTPRoute"}
    objects.apply(LINKERD_ROUTE, "ADDED", decode(LINKERD_ROUTE, linkerd))
    assert set(objects.objects) == {
        ("HTTPRoute", "ns", "same"),
        ("HTTPRoute.policy.linkerd.io", "ns", "same"),
    }
    (route,) = objects.plan().resources().values()
    assert len(route["spec"]["rules"]) == 2  # one Route, both objects' rules


def split(rv: str, group: str = "books-api") -> dict[str, Any]:
    return {
        "metadata": {"name": "web-split", "namespace": "ns", "resourceVersion": rv},
        "spec": {
            "service": "web",
            "matches": [{"kind": "HTTPRouteGroup", "name": group}],
            "backends": [{"service": "web-v1", "weight": 1}, {"service": "web-v2", "weight": 1}],
        },
    }


def route_group(rv: str, regex: str = "/api/.*") -> dict[str, Any]:
    return {
        "metadata": {"name": "books-api", "namespace": "ns", "resourceVersion": rv},
        "spec": {"matches": [{"name": "api", "pathRegex": regex, "methods": ["GET"]}]},
    }


def test_a_trafficsplit_reads_its_httproutegroup_and_follows_its_changes() -> None:
    objects = TrafficObjects()
    objects.apply(SPLIT, "ADDED", decode(SPLIT, split("1")))
    plan = objects.plan()
    assert plan.resources() == {}  # its group has not arrived: refused, named
    assert "books-api" in plan.skipped[(("TrafficSplit", "ns", "web-split"),)]
    objects.apply(GROUP, "ADDED", decode(GROUP, route_group("2")))
    plan = objects.plan()
    assert list(plan.groups) == [
        (("HTTPRouteGroup", "ns", "books-api"), ("TrafficSplit", "ns", "web-split"))
    ]
    route = plan.resources()[("Route", "web")]
    assert "/api/" in route["spec"]["rules"][0]["match"][0]["path"]["regex"]
    objects.apply(GROUP, "MODIFIED", decode(GROUP, route_group("3", regex="/v2/.*")))
    route = objects.plan().resources()[("Route", "web")]
    assert "/v2/" in route["spec"]["rules"][0]["match"][0]["path"]["regex"]


def test_a_group_turned_bad_keeps_its_last_good_resources_and_names_every_member() -> None:
    objects = TrafficObjects()
    objects.apply(SPLIT, "ADDED", decode(SPLIT, split("1")))
    objects.apply(GROUP, "ADDED", decode(GROUP, route_group("2")))
    good = objects.plan().resources()
    objects.apply(GROUP, "MODIFIED", decode(GROUP, route_group("3", regex="((")))
    plan = objects.plan()
    assert plan.resources() == good
    members = (("HTTPRouteGroup", "ns", "books-api"), ("TrafficSplit", "ns", "web-split"))
    assert members in plan.kept and "its last good resources stay" in plan.skipped[members]


def rule(rv: str, policy: bool = True) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "host": "reviews.ns.svc.cluster.local",
        "subsets": [{"name": "v1", "labels": {"version": "v1"}}],
    }
    if policy:
        spec["trafficPolicy"] = {"loadBalancer": {"simple": "LEAST_REQUEST"}}
    return {"metadata": {"name": "reviews", "namespace": "ns", "resourceVersion": rv}, "spec": spec}


def test_a_destinationrule_makes_a_subset_and_service_defaults_both_owned_by_it() -> None:
    objects = TrafficObjects()
    objects.apply(DR, "ADDED", decode(DR, rule("1")))
    objects.apply(VS, "ADDED", decode(VS, vs("reviews", "reviews", "2")))
    plan = objects.plan()
    made = plan.resources()
    assert set(made) == {
        ("Subset", "reviews-v1"),
        ("ServiceDefaults", "reviews"),
        ("Route", "reviews"),
    }
    assert len(plan.groups) == 1  # one service: converted together
    label = "weft.io/k8s-object"
    assert made[("ServiceDefaults", "reviews")]["metadata"]["labels"][label] == (
        "DestinationRule ns/reviews"
    )
    assert made[("ServiceDefaults", "reviews")]["spec"]["balancer"]
    objects.apply(DR, "MODIFIED", decode(DR, rule("3", policy=False)))
    assert ("ServiceDefaults", "reviews") not in objects.plan().resources()
    objects.apply(DR, "DELETED", decode(DR, rule("4")))
    assert set(objects.plan().resources()) == {("Route", "reviews")}


def test_names_resolve_with_the_adapters_naming_and_follow_its_changes() -> None:
    names = {("reviews", "ns"): "reviews-ns"}
    objects = TrafficObjects(naming=lambda name, ns: names.get((name, ns), f"{name}-{ns}"))
    objects.apply(VS, "ADDED", decode(VS, vs("a", "reviews", "1")))
    assert set(objects.plan().resources()) == {("Route", "reviews-ns")}
    names[("reviews", "ns")] = "reviews-renamed"  # the Service got weft.io/service-name
    (route,) = objects.plan().resources().values()
    assert route["metadata"]["name"] == route["spec"]["service"] == "reviews-renamed"


def entry(rv: str, *hosts: str) -> dict[str, Any]:
    return {
        "metadata": {"name": "payments", "namespace": "ns", "resourceVersion": rv},
        "spec": {
            "hosts": list(hosts),
            "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
            "resolution": "DNS",
        },
    }


def test_a_serviceentry_makes_an_externalservice_of_its_own_name_gone_with_it() -> None:
    """A ServiceEntry names no Service of the cluster: the adapter's naming does not rename
    its ExternalService, which `weft apply -f` of the same document would also make."""
    objects = TrafficObjects(naming=lambda name, ns: f"{name}-{ns}")
    objects.apply(SE, "ADDED", decode(SE, entry("1", "api.payments.example.com")))
    (made,) = objects.plan().resources().values()
    assert (made["kind"], made["metadata"]["name"]) == ("ExternalService", "payments")
    assert made["spec"]["hosts"] == ["api.payments.example.com"]
    assert made["metadata"]["labels"]["weft.io/k8s-object"] == "ServiceEntry ns/payments"
    objects.apply(SE, "DELETED", decode(SE, entry("2", "api.payments.example.com")))
    assert objects.plan().resources() == {}


def test_an_httproute_with_a_gateway_parent_syncs_only_its_mesh_half() -> None:
    """The cluster's Gateways are its ingress's: their gateway Routes are not synced (noted);
    the Service parent's Route is, and a Gateway-only route makes nothing."""
    objects = TrafficObjects()
    both = http_route("both", "web", "/b", "1")
    both["spec"]["parentRefs"].append({"name": "edge"})  # a Gateway, by the defaults
    both["spec"]["hostnames"] = ["shop.example.com"]
    both["spec"]["rules"][0]["backendRefs"] = [{"name": "web", "port": 80}]
    north_south = http_route("north-south", "web", "/n", "2")
    north_south["spec"]["parentRefs"] = [{"kind": "Gateway", "name": "edge"}]
    north_south["spec"]["rules"][0]["backendRefs"] = [{"name": "web", "port": 80}]
    objects.apply(ROUTE, "ADDED", decode(ROUTE, both))
    objects.apply(ROUTE, "ADDED", decode(ROUTE, north_south))
    plan = objects.plan()
    assert list(plan.resources()) == [("Route", "web")]
    assert "gateway" not in plan.resources()[("Route", "web")]["spec"]
    assert "makes no Weft resource" in plan.skipped[(("HTTPRoute", "ns", "north-south"),)]
    notes = plan.compiled[(("HTTPRoute", "ns", "both"),)].notes
    assert any("gateway Route both-edge is not synced" in n for n in notes), notes

    # No backend: at a Gateway such a rule routes nowhere, yet the mesh half still syncs.
    del both["spec"]["rules"][0]["backendRefs"]
    both["metadata"]["resourceVersion"] = "3"
    objects.apply(ROUTE, "MODIFIED", decode(ROUTE, both))
    plan = objects.plan()
    assert list(plan.resources()) == [("Route", "web")]
    assert (("HTTPRoute", "ns", "both"),) not in plan.skipped
