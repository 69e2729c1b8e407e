"""--to-k8s: a VM service registered agent-style appears in the cluster as a selector-less
Service plus EndpointSlice, follows its health, and disappears when deregistered."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from kubernetes import client, config

from tests.harness import Adapters, FakeKube, WeftServer, wait_until

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def fake() -> Iterator[FakeKube]:
    with FakeKube() as server:
        server.ensure_namespace("weft")
        yield server


def agent_token(server: WeftServer, node: str) -> str:
    resp = httpx.post(
        f"{server.url}/v1/tokens", headers=server.headers(), json={"role": "agent", "node": node}
    )
    resp.raise_for_status()
    return resp.json()["secret"]


def register(server: WeftServer, token: str, body: dict) -> None:
    resp = httpx.put(
        f"{server.url}/v1/registry/instances", headers={"X-Consul-Token": token}, json=body
    )
    resp.raise_for_status()


def slice_endpoints(fake: FakeKube, service: str) -> dict[str, bool]:
    out = {}
    for s in fake.list("endpointslices", "weft", {"kubernetes.io/service-name": service}):
        for ep in s["endpoints"]:
            out[ep["addresses"][0]] = ep["conditions"]["ready"]
    return out


def test_vm_service_is_published_follows_health_and_goes_away(
    fake: FakeKube, server: WeftServer, adapters: Adapters, tmp_path: Path
) -> None:
    vm1, vm2 = agent_token(server, "vm-1"), agent_token(server, "vm-2")
    register(
        server,
        vm1,
        {
            "service": "billing",
            "id": "billing-1",
            "address": "192.0.2.10",
            "port": 8080,
            "checks": [{"id": "billing-ttl", "ttl": "60s", "status": "passing"}],
        },
    )
    adapter = adapters.start("--to-k8s", "--to-k8s-namespace", "weft")
    wait_until(
        lambda: slice_endpoints(fake, "billing") == {"192.0.2.10": True},
        timeout=15,
        what="billing to be published",
    )

    # What a pod's client sees, read with the official client: a Service without selector.
    api = config.new_client_from_config(config_file=str(fake.write_kubeconfig(tmp_path / "kc")))
    svc = client.CoreV1Api(api).read_namespaced_service("billing", "weft")
    assert svc.spec.selector is None and svc.spec.cluster_ip
    assert [(p.name, p.port) for p in svc.spec.ports] == [("http", 8080)]
    (eps,) = (
        client.DiscoveryV1Api(api)
        .list_namespaced_endpoint_slice("weft", label_selector="kubernetes.io/service-name=billing")
        .items
    )
    assert eps.address_type == "IPv4" and eps.ports[0].port == 8080

    register(
        server,
        vm2,
        {"service": "billing", "id": "billing-2", "address": "192.0.2.11", "port": 8080},
    )
    wait_until(
        lambda: slice_endpoints(fake, "billing") == {"192.0.2.10": True, "192.0.2.11": True},
        timeout=10,
        what="the second VM",
    )
    httpx.put(
        f"{server.url}/v1/registry/checks/vm-1/billing-ttl",
        headers={"X-Consul-Token": vm1},
        json={"status": "critical", "output": "down"},
    ).raise_for_status()
    wait_until(
        lambda: slice_endpoints(fake, "billing").get("192.0.2.10") is False,
        timeout=10,
        what="the critical VM to be not ready",
    )

    # Repaired after a hand deletion, on SIGHUP (or the next resync).
    fake.delete("services", "weft", "billing")
    adapter.signal(signal.SIGHUP)
    wait_until(lambda: fake.list("services", "weft"), timeout=10, what="the Service back")

    # Kubernetes' own services never flow back as VM services, nor the published ones.
    services = httpx.get(f"{server.url}/v1/catalog/services", headers=server.headers()).json()
    assert "billing-weft" not in services

    for token, node, iid in ((vm1, "vm-1", "billing-1"), (vm2, "vm-2", "billing-2")):
        httpx.delete(
            f"{server.url}/v1/registry/instances/billing/{node}/{iid}",
            headers={"X-Consul-Token": token},
        ).raise_for_status()
    wait_until(
        lambda: not fake.list("services", "weft") and not fake.list("endpointslices", "weft"),
        timeout=10,
        what="billing to be unpublished",
    )
    # (The counter moves when the API server's answer arrives, just after the object went.)
    wait_until(lambda: adapter.status()["to_k8s"]["deletes"] >= 2, timeout=5, what="deletes")


def test_only_selected_instances_are_published_and_foreign_objects_left_alone(
    fake: FakeKube, server: WeftServer, adapters: Adapters
) -> None:
    vm = agent_token(server, "vm-1")
    for name, address, tags in (
        ("billing", "192.0.2.10", ["k8s"]),
        ("ledger", "192.0.2.12", ["k8s"]),
        ("audit", "192.0.2.13", []),  # not tagged: stays out of the cluster
    ):
        register(
            server,
            vm,
            {"service": name, "id": f"{name}-1", "address": address, "port": 80, "tags": tags},
        )
    # Someone else's Service of a published name: reported, never touched.
    fake.apply(
        "services",
        {"metadata": {"name": "ledger", "namespace": "weft"}, "spec": {"ports": [{"port": 1}]}},
    )
    fake.add_service("shop", "web", replicas=1)  # synced in, but never published back out
    adapter = adapters.start("--to-k8s", "--to-k8s-namespace", "weft", "--to-k8s-tags", "k8s")
    wait_until(lambda: "192.0.2.10" in slice_endpoints(fake, "billing"), timeout=15, what="billing")
    wait_until(
        lambda: "not managed by weft-k8s-adapter" in adapter.log(),
        timeout=10,
        what="the foreign ledger Service to be reported",
    )
    wait_until(
        lambda: (
            len(
                httpx.get(
                    f"{server.url}/v1/health/service/web-shop", headers=server.headers()
                ).json()
            )
            == 1
        ),
        timeout=10,
        what="web-shop in the registry",
    )
    assert sorted(s["metadata"]["name"] for s in fake.list("services", "weft")) == [
        "billing",
        "ledger",
    ]
    assert fake.get("services", "weft", "ledger")["spec"]["ports"] == [{"port": 1}]
    assert slice_endpoints(fake, "ledger") == {}
