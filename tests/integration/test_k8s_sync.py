"""Kubernetes -> registry, end to end: a real `weft server`, a real `weft k8s-adapter` process
and the fake API server. Pods scale, turn not-ready, and the registry follows within 2 s."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.harness import FakeKube, WeftServer, wait_until

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def fake() -> Iterator[FakeKube]:
    with FakeKube(bookmark_interval=0.5) as server:
        yield server


def health(server: WeftServer, service: str, *, passing: bool = False) -> list[dict]:
    params = {"passing": ""} if passing else {}
    resp = httpx.get(
        f"{server.url}/v1/health/service/{service}",
        headers=server.headers(),
        params=params,
        timeout=10,
    )
    resp.raise_for_status()
    return resp.json()


def addresses(entries: list[dict]) -> list[str]:
    return sorted(e["Service"]["Address"] for e in entries)


def pod_ips(fake: FakeKube, namespace: str, service: str) -> list[str]:
    return sorted(
        fake.get("pods", namespace, p)["status"]["podIP"] for p in fake.pods(namespace, service)
    )


def test_service_with_three_pods_scales_and_turns_critical(fake, server, adapters) -> None:
    fake.add_service(
        "shop",
        "web",
        replicas=3,
        port=80,
        target_port=8080,
        pod_labels={"app.kubernetes.io/version": "1.4"},
    )
    adapter = adapters.start()
    wait_until(
        lambda: len(health(server, "web-shop", passing=True)) == 3,
        timeout=20,
        what="three passing instances of web-shop",
    )
    entries = health(server, "web-shop", passing=True)
    assert addresses(entries) == pod_ips(fake, "shop", "web")
    first = entries[0]["Service"]
    assert first["Port"] == 8080
    assert first["Meta"]["k8s-namespace"] == "shop"
    assert first["Meta"]["app_kubernetes_io_version"] == "1.4"
    assert first["Meta"]["app"] == "web"
    assert first["Namespace"] == "shop"

    for replicas in (5, 2):
        started = time.monotonic()
        fake.scale("shop", "web", replicas)
        wanted = pod_ips(fake, "shop", "web")
        wait_until(
            lambda wanted=wanted: addresses(health(server, "web-shop", passing=True)) == wanted,
            timeout=10,
            interval=0.02,
            what=f"{replicas} instances",
        )
        assert time.monotonic() - started < 2.0, f"scaling to {replicas} took too long"

    pod = fake.pods("shop", "web")[0]
    ip = fake.get("pods", "shop", pod)["status"]["podIP"]
    started = time.monotonic()
    fake.set_ready("shop", pod, False)
    wait_until(
        lambda: ip not in addresses(health(server, "web-shop", passing=True)),
        timeout=10,
        interval=0.02,
        what="the not-ready pod to leave ?passing",
    )
    assert time.monotonic() - started < 2.0
    (critical,) = [e for e in health(server, "web-shop") if e["Service"]["Address"] == ip]
    assert [c["Status"] for c in critical["Checks"]] == ["critical"]
    fake.set_ready("shop", pod, True)
    wait_until(
        lambda: len(health(server, "web-shop", passing=True)) == 2,
        timeout=10,
        what="the pod to pass again",
    )
    assert adapter.status()["leader"] is True


def test_same_name_in_two_namespaces_and_two_clusters(fake, server, adapters) -> None:
    fake.add_service("prod", "web", replicas=2)
    fake.add_service("staging", "web", replicas=1)
    fake.add_service("kube-system", "dns", replicas=1)  # excluded by default
    fake.add_service("prod", "quiet", replicas=1, annotations={"weft.io/sync": "false"})
    fake.add_service(
        "prod", "billing", replicas=1, annotations={"weft.io/service-name": "payments"}
    )
    adapters.start(cluster="east")
    adapters.start(cluster="west", identity="west-1")
    wait_until(
        lambda: len(health(server, "web-prod")) == 4, timeout=20, what="web-prod from both clusters"
    )
    assert len(health(server, "web-staging")) == 2
    assert len(health(server, "payments")) == 2
    services = httpx.get(f"{server.url}/v1/catalog/services", headers=server.headers()).json()
    assert "dns-kube-system" not in services and "quiet-prod" not in services
    sources = sorted(e["Service"]["Meta"]["k8s-cluster"] for e in health(server, "web-prod"))
    assert sources == ["east", "east", "west", "west"]
