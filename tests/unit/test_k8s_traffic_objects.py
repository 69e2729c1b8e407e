"""The adapter's pure core for traffic CRDs: objects in, the Weft resources they make out,
compiled by the same importers `weft apply` uses; bad and colliding objects skipped, named."""

from __future__ import annotations

from typing import Any

from k8s_adapter._objects import decode
from k8s_adapter._traffic_objects import TRAFFIC_KINDS, TrafficObjects, watch_kind

VS = watch_kind(TRAFFIC_KINDS[0], "v1")


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
    assert list(plan.objects) == [("VirtualService", "ns", "a")]
    assert (
        "Route reviews is already made by VirtualService ns/a"
        in plan.skipped[("VirtualService", "ns", "b")]
    )


def test_an_object_turned_invalid_keeps_its_last_good_version_until_deleted() -> None:
    objects = TrafficObjects()
    objects.apply(VS, "ADDED", decode(VS, vs("a", "reviews", "1")))
    good = objects.plan().resources()
    objects.apply(VS, "MODIFIED", decode(VS, vs("a", "reviews", "2", regex="((")))
    plan = objects.plan()
    assert plan.resources() == good
    assert "not a valid regex" in plan.skipped[("VirtualService", "ns", "a")]
    objects.apply(VS, "DELETED", decode(VS, vs("a", "reviews", "3", regex="((")))
    assert objects.plan().resources() == {}


def test_an_object_never_good_makes_nothing() -> None:
    objects = TrafficObjects()
    objects.apply(VS, "ADDED", decode(VS, vs("a", "*.example.com", "1")))
    plan = objects.plan()
    assert plan.resources() == {} and ("VirtualService", "ns", "a") in plan.skipped


HTTPROUTE = watch_kind(next(k for k in TRAFFIC_KINDS if k.name == "HTTPRoute"), "v1")


def httproute(name: str, parents: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns", "resourceVersion": "1"},
        "spec": {
            "parentRefs": parents,
            "hostnames": ["shop.example.com"],
            "rules": [{"backendRefs": [{"name": "reviews", "port": 9080}]}],
        },
    }


def test_an_httproute_with_a_gateway_parent_syncs_only_its_mesh_half() -> None:
    """The cluster's Gateways are its ingress's: their gateway Routes are not synced (noted);
    the Service parent's Route is, and a Gateway-only route makes nothing, as before."""
    objects = TrafficObjects()
    gateway = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "edge"}
    service = {"group": "", "kind": "Service", "name": "reviews"}
    objects.replace(
        HTTPROUTE,
        [
            decode(HTTPROUTE, httproute("both", [gateway, service])),
            decode(HTTPROUTE, httproute("north-south", [gateway])),
        ],
        [],
    )
    plan = objects.plan()
    assert list(plan.resources()) == [("Route", "reviews")]
    assert "gateway" not in plan.resources()[("Route", "reviews")]["spec"]
    assert "makes no Weft resource" in plan.skipped[("HTTPRoute", "ns", "north-south")]
    compiled = objects.compiled(("HTTPRoute", "ns", "both"))
    assert any("gateway Route both-edge is not synced" in n for n in compiled.notes)
