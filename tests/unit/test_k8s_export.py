"""--to-k8s: registry instances -> selector-less Services and EndpointSlices, and their diff."""

from __future__ import annotations

import logging

from k8s_adapter._export import ExportRules, desired_objects, kube_plan, merged, same
from k8s_adapter._problems import Problems

RULES = ExportRules(
    namespace="weft", cluster="c1", own_source="k8s/c1", sources=frozenset({"agent", "k8s/c1"})
)


def inst(
    service: str,
    address: str,
    *,
    port: int = 8080,
    status: str = "passing",
    source: str = "agent",
    tags: tuple = (),
    protocol: str = "http",
) -> dict:
    return {
        "service": service,
        "id": f"{service}-{address}",
        "address": address,
        "port": port,
        "status": status,
        "source": source,
        "tags": list(tags),
        "protocol": protocol,
    }


def problems() -> Problems:
    return Problems(logging.getLogger("test"))


def test_vm_instances_become_a_service_and_slices() -> None:
    views = [
        inst("billing", "192.0.2.10"),
        inst("billing", "192.0.2.11", status="warning"),
        inst("billing", "192.0.2.12", port=9090, status="critical"),
        inst("billing", "2001:db8::1"),
        inst("web-shop", "10.0.0.1", source="k8s/c1"),
    ]  # our own source: never back
    objects = desired_objects(views, RULES, problems())
    assert sorted(objects) == [
        ("endpointslices", "billing-v4-8080-0"),
        ("endpointslices", "billing-v4-9090-0"),
        ("endpointslices", "billing-v6-8080-0"),
        ("services", "billing"),
    ]
    svc = objects[("services", "billing")]
    assert "selector" not in svc["spec"]
    assert svc["spec"]["ports"] == [
        {"name": "http", "port": 8080, "targetPort": 8080, "protocol": "TCP", "appProtocol": "http"}
    ]
    assert svc["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "weft-k8s-adapter"
    v4 = objects[("endpointslices", "billing-v4-8080-0")]
    assert v4["metadata"]["labels"]["kubernetes.io/service-name"] == "billing"
    assert (
        v4["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == "weft.io/k8s-adapter"
    )
    conditions = {e["addresses"][0]: e["conditions"] for e in v4["endpoints"]}
    assert conditions["192.0.2.10"] == {"ready": True, "serving": True, "terminating": False}
    assert conditions["192.0.2.11"] == {"ready": False, "serving": True, "terminating": False}
    assert (
        objects[("endpointslices", "billing-v4-9090-0")]["endpoints"][0]["conditions"]["ready"]
        is False
    )
    assert objects[("endpointslices", "billing-v6-8080-0")]["addressType"] == "IPv6"


def test_selection_by_tag_and_name_and_invalid_names() -> None:
    rules = ExportRules(
        namespace="weft",
        cluster="c1",
        own_source="k8s/c1",
        sources=frozenset({"agent"}),
        tags=frozenset({"export"}),
    )
    views = [
        inst("a", "192.0.2.1", tags=("export",)),
        inst("b", "192.0.2.2"),
        inst("9lives", "192.0.2.3", tags=("export",)),
    ]
    assert sorted(k for k in desired_objects(views, rules, problems()) if k[0] == "services") == [
        ("services", "a")
    ]
    named = ExportRules(
        namespace="weft",
        cluster="c1",
        own_source="k8s/c1",
        sources=frozenset({"agent"}),
        services=frozenset({"b"}),
    )
    assert ("services", "b") in desired_objects(views, named, problems())
    assert ("services", "a") not in desired_objects(views, named, problems())


def test_big_services_are_cut_into_slices_of_100() -> None:
    views = [inst("big", f"192.0.{i // 250}.{i % 250 + 1}") for i in range(250)]
    slices = [k for k in desired_objects(views, RULES, problems()) if k[0] == "endpointslices"]
    assert slices == [("endpointslices", f"big-v4-8080-{i}") for i in range(3)]


def test_plan_creates_updates_and_deletes_in_a_safe_order() -> None:
    desired = desired_objects([inst("billing", "192.0.2.10")], RULES, problems())
    todo = kube_plan(desired, {})
    assert [p for p, _ in todo.creates] == ["services", "endpointslices"]

    # What the API server returns carries fields it allocated: still the same object.
    existing = {}
    for (plural, name), body in desired.items():
        stored = {**body, "metadata": {**body["metadata"], "resourceVersion": "7", "uid": "u"}}
        if plural == "services":
            stored["spec"] = {**body["spec"], "clusterIP": "10.96.0.9", "sessionAffinity": "None"}
        existing[(plural, name)] = stored
    assert not kube_plan(desired, existing)

    changed = desired_objects([inst("billing", "192.0.2.10", status="critical")], RULES, problems())
    todo = kube_plan(changed, existing)
    assert [(p, b["metadata"]["name"]) for p, b in todo.updates] == [
        ("endpointslices", "billing-v4-8080-0")
    ]
    update = todo.updates[0][1]
    assert update["metadata"]["resourceVersion"] == "7"  # optimistic concurrency
    assert update["endpoints"][0]["conditions"]["ready"] is False

    todo = kube_plan({}, existing)
    assert todo.deletes == [("endpointslices", "billing-v4-8080-0"), ("services", "billing")]


def test_service_update_keeps_the_allocated_cluster_ip() -> None:
    want = desired_objects([inst("billing", "192.0.2.10", port=9000)], RULES, problems())[
        ("services", "billing")
    ]
    have = {
        "metadata": {"name": "billing", "resourceVersion": "3", "labels": {}},
        "spec": {"clusterIP": "10.96.0.9", "ports": [{"name": "http", "port": 8080}]},
    }
    assert not same("services", have, want)
    body = merged("services", have, want)
    assert body["spec"]["clusterIP"] == "10.96.0.9"
    assert body["spec"]["ports"][0]["port"] == 9000
    assert body["metadata"]["resourceVersion"] == "3"
