"""Kubernetes objects -> registry entries, selection and names: the adapter's pure core."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from k8s_adapter._entry import CHECK_NAME, Entry
from k8s_adapter._mapping import MappingContext, choose_port, service_entries
from k8s_adapter._naming import Namer, instance_id, meta_key, node_name
from k8s_adapter._problems import Problems
from k8s_adapter._selection import Selection
from lightkube.resources.core_v1 import Pod, Service
from lightkube.resources.discovery_v1 import EndpointSlice


def service(
    ns: str = "shop",
    name: str = "web",
    *,
    annotations: dict | None = None,
    labels: dict | None = None,
    ports: list[dict] | None = None,
    **spec: Any,
) -> Any:
    return Service.from_dict(
        {
            "metadata": {
                "name": name,
                "namespace": ns,
                "annotations": annotations or {},
                "labels": labels or {},
                "resourceVersion": "1",
            },
            "spec": {
                "ports": ports if ports is not None else [{"name": "http", "port": 80}],
                **spec,
            },
        }
    )


def endpoint(
    ip: str,
    pod: str | None,
    *,
    ready: bool | None = True,
    node: str = "node-a",
    terminating: bool = False,
) -> dict:
    ep: dict[str, Any] = {
        "addresses": [ip],
        "nodeName": node,
        "conditions": {"ready": ready, "terminating": terminating},
    }
    if pod:
        ep["targetRef"] = {"kind": "Pod", "name": pod, "namespace": "shop"}
    return ep


def eps(
    name: str,
    endpoints: list[dict],
    *,
    port: int = 8080,
    port_name: str = "http",
    family: str = "IPv4",
    service_name: str = "web",
) -> Any:
    return EndpointSlice.from_dict(
        {
            "metadata": {
                "name": name,
                "namespace": "shop",
                "resourceVersion": "1",
                "labels": {"kubernetes.io/service-name": service_name},
            },
            "addressType": family,
            "endpoints": endpoints,
            "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
        }
    )


def pod(
    name: str,
    *,
    labels: dict | None = None,
    annotations: dict | None = None,
    host_ip: str = "192.168.0.1",
) -> Any:
    return Pod.from_dict(
        {
            "metadata": {
                "name": name,
                "namespace": "shop",
                "labels": labels or {},
                "annotations": annotations or {},
                "resourceVersion": "1",
            },
            "spec": {"containers": [{"name": "app"}], "nodeName": "node-a"},
            "status": {"podIP": "10.0.0.1", "hostIP": host_ip},
        }
    )


@pytest.fixture
def ctx() -> MappingContext:
    return MappingContext("c1", "weft.example", Problems(logging.getLogger("test")))


def test_ready_endpoints_pass_and_others_are_critical(ctx) -> None:
    slices = [
        eps(
            "web-1",
            [
                endpoint("10.0.0.1", "web-a"),
                endpoint("10.0.0.2", "web-b", ready=False),
                endpoint("10.0.0.3", "web-c", ready=None),  # nil means ready (discovery/v1)
                endpoint("10.0.0.4", "web-d", terminating=True, ready=False),
            ],
        )
    ]
    entries = service_entries("web-shop", service(), slices, {}, ctx)
    status = {e.address: e.status for e in entries.values()}
    assert status == {
        "10.0.0.1": "passing",
        "10.0.0.2": "critical",
        "10.0.0.3": "passing",
        "10.0.0.4": "critical",
    }
    first = next(e for e in entries.values() if e.address == "10.0.0.1")
    assert first.port == 8080 and first.node == "node-a" and first.namespace == "shop"
    assert first.id == "c1:shop:web:web-a:8080"
    assert first.protocol == "http"


def test_pod_labels_become_meta_and_sidecars_get_an_identity(ctx) -> None:
    pods = {
        ("shop", "web-a"): pod(
            "web-a",
            labels={"app.kubernetes.io/name": "web", "tier": "front"},
            annotations={"weft.io/sidecar-port": "15001"},
        )
    }
    (entry,) = service_entries(
        "web-shop", service(), [eps("s", [endpoint("10.0.0.1", "web-a")])], pods, ctx
    ).values()
    meta = dict(entry.meta)
    assert meta["app_kubernetes_io_name"] == "web" and meta["tier"] == "front"
    assert meta["k8s-pod"] == "web-a" and meta["k8s-cluster"] == "c1"
    assert entry.node_address == "192.168.0.1"
    assert entry.sidecar_port == 15001
    assert entry.identity == "spiffe://weft.example/ns/shop/svc/web-shop"
    body = entry.registration("k8s/c1")
    assert body["source"] == "k8s/c1" and body["sidecar_port"] == 15001
    assert body["checks"][0]["name"] == CHECK_NAME and body["checks"][0]["status"] == "passing"


def test_sidecar_without_trust_domain_is_reported_not_guessed(caplog) -> None:
    ctx = MappingContext("c1", "", Problems(logging.getLogger("test.k8s")))
    pods = {("shop", "web-a"): pod("web-a", annotations={"weft.io/sidecar-port": "15001"})}
    slices = [eps("s", [endpoint("10.0.0.1", "web-a")])]
    with caplog.at_level(logging.WARNING):
        (entry,) = service_entries("web-shop", service(), slices, pods, ctx).values()
        service_entries("web-shop", service(), slices, pods, ctx)
    assert entry.sidecar_port == 0 and entry.identity == ""
    assert sum("trust_domain" in r.getMessage() for r in caplog.records) == 1  # logged once


def test_an_endpoint_listed_twice_is_one_instance_and_ready_wins(ctx) -> None:
    slices = [
        eps("a", [endpoint("10.0.0.1", "web-a", ready=False)]),
        eps("b", [endpoint("10.0.0.1", "web-a", ready=True)]),
    ]
    (entry,) = service_entries("web-shop", service(), slices, {}, ctx).values()
    assert entry.status == "passing"


def test_port_choice_by_annotation_and_protocol_rules(ctx) -> None:
    ports = [
        {"name": "metrics", "port": 9090},
        {"name": "grpc", "port": 9000, "appProtocol": "grpc"},
    ]
    assert choose_port(service(ports=ports)).protocol == "tcp"
    chosen = choose_port(service(ports=ports, annotations={"weft.io/port": "grpc"}))
    assert (chosen.name, chosen.protocol) == ("grpc", "tcp")
    assert (
        choose_port(
            service(ports=ports, annotations={"weft.io/port": "9090", "weft.io/protocol": "http"})
        ).protocol
        == "http"
    )
    assert "names no port" in choose_port(
        service(ports=ports, annotations={"weft.io/port": "nope"})
    )
    assert "no ports" in choose_port(service(ports=[]))
    slices = [eps("a", [endpoint("10.0.0.1", "p")], port_name="metrics", port=9191)]
    (entry,) = service_entries("x", service(ports=ports), slices, {}, ctx).values()
    assert entry.port == 9191  # the slice's (target) port, not the Service port


def test_slices_without_the_chosen_port_or_not_ip_are_skipped(ctx) -> None:
    slices = [
        eps("a", [endpoint("10.0.0.1", "p")], port_name="other"),
        eps("b", [endpoint("db.example", "q")], family="FQDN"),
    ]
    assert service_entries("web-shop", service(), slices, {}, ctx) == {}


def test_selection_rules() -> None:
    sel = Selection.of((), ("kube-system",), default_sync=True)
    assert sel.decide(service()).sync
    assert not sel.decide(service(ns="kube-system")).sync
    assert not sel.decide(service(annotations={"weft.io/sync": "false"})).sync
    assert not sel.decide(service(labels={"app.kubernetes.io/managed-by": "weft-k8s-adapter"})).sync
    assert not sel.decide(service(type="ExternalName", externalName="x.example")).sync
    opt_in = Selection.of(("shop",), (), default_sync=False)
    assert not opt_in.decide(service()).sync
    assert opt_in.decide(service(annotations={"weft.io/sync": "True"})).sync
    assert not opt_in.decide(service(ns="other", annotations={"weft.io/sync": "true"})).sync
    odd = opt_in.decide(service(annotations={"weft.io/sync": "maybe"}))
    assert not odd.sync and "neither true nor false" in odd.reason


def test_default_names_keep_namespaces_apart() -> None:
    namer = Namer("{name}-{namespace}", "c1")
    assert namer.service_name("prod", "web") == "web-prod"
    assert namer.service_name("staging", "web") == "web-staging"
    assert namer.service_name("prod", "web", override="payments") == "payments"
    with pytest.raises(ValueError, match="not a DNS label"):
        namer.service_name("prod", "web", override="Not_OK")
    long = namer.service_name("a-very-long-namespace-name-for-testing", "a-long-service-name-too")
    assert len(long) <= 63 and long.startswith("a-long-service-name-too-a-very")


@given(
    st.lists(
        st.tuples(
            st.from_regex(r"[a-z]([a-z0-9-]{0,40}[a-z0-9])?", fullmatch=True),
            st.from_regex(r"[a-z]([a-z0-9-]{0,50}[a-z0-9])?", fullmatch=True),
        ),
        min_size=2,
        max_size=20,
        unique=True,
    )
)
def test_long_names_stay_dns_labels_and_distinct_when_shortened(pairs) -> None:
    namer = Namer("{name}-{namespace}", "c1")
    names = {}
    for ns, name in pairs:
        mapped = namer.service_name(ns, name)
        assert 1 <= len(mapped) <= 63
        names.setdefault(mapped, set()).add(f"{name}-{ns}")
    # Different (namespace, name) only share a registry name when the template text is equal.
    assert all(len(texts) == 1 for texts in names.values())


def test_registry_ids_nodes_and_meta_keys_are_valid() -> None:
    iid = instance_id("c1", "ns", "svc", "p" * 250, 8080)
    assert len(iid) <= 128 and "@" in iid
    assert instance_id("c1", "ns", "svc", "pod", 80) != instance_id("c2", "ns", "svc", "pod", 80)
    assert node_name(None, "c1") == "k8s-c1"
    assert node_name("ip-10-0-0-1.eu-west-1.compute.internal", "c1").endswith("internal")
    assert meta_key("app.kubernetes.io/name") == "app_kubernetes_io_name"


def test_entry_round_trips_through_the_registry_view() -> None:
    entry = Entry(
        service="web-shop",
        id="c1:shop:web:p:80",
        node="n",
        namespace="shop",
        address="10.0.0.1",
        node_address="192.168.0.1",
        port=80,
        tags=("a",),
        meta=(("k", "v"),),
        status="critical",
    )
    body = entry.registration("k8s/c1")
    view = {
        **body,
        "checks": [{"name": CHECK_NAME, "status": "critical", "runner": "adapter"}],
        "status": "critical",
    }
    assert Entry.from_view(view) == entry
    view["checks"].append({"name": "someone else's", "status": "passing"})
    assert Entry.from_view(view).status == ""  # not what the adapter wrote: rewrite it
