"""An external service in a real sidecar (snapshot v4, from a file): requests to its host
through the forward proxy get the same route timeouts, retries and metrics as a mesh
upstream, and a mesh service's route may send to it by name.

    client ──HTTP_PROXY──► web's sidecar ──plain HTTP──► "partner" (an app outside the mesh)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from .test_proxy_support import Background, HttpApp, Mesh, ProxyProc, proxies

pytestmark = pytest.mark.timeout(60)


@dataclass
class World:
    web: ProxyProc
    partner: HttpApp

    def client(self) -> httpx.Client:
        proxy = f"http://127.0.0.1:{self.web.listener('forward')}"
        return httpx.Client(proxy=proxy, trust_env=False, timeout=10)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    directory = tmp_path_factory.mktemp("egress")
    mesh = Mesh(directory)
    partner = HttpApp("partner")
    with Background() as bg:
        port = bg.start(partner.serve)
        doc = mesh.snapshot("web", forward_proxy=True)
        doc["schema"] = "weft.proxy.snapshot/v4"
        doc["outbound"] = "registry-only"
        doc["external"] = [
            {
                "name": "partner",
                "hosts": ["api.partner.test"],
                "port": port,
                "protocol": "http",
                "addresses": ["127.0.0.1"],
                "routes": [
                    {"name": "slow", "match": [{"path": {"exact": "/sleep"}}], "timeout_ms": 300},
                    {"name": "retried", "retry": {"attempts": 3, "on": [503]}},
                ],
                "failure_accrual": {"consecutive_failures": 1000},
            }
        ]
        # A mesh service whose only route sends to the external service by name.
        books = mesh.upstream("books", [], listen=False)
        books["routes"] = [{"name": "outside", "backends": [{"upstream": "partner"}]}]
        doc["upstreams"] = [books]
        web = ProxyProc(directory, "web", doc)
        with proxies(web):
            yield World(web, partner)


def test_an_external_service_gets_its_routes_retries_and_metrics(world: World) -> None:
    port = world.partner.port
    with world.client() as client:
        answers = [
            client.get(f"http://api.partner.test:{port}/orders?failevery=2").status_code
            for _ in range(10)
        ]
    assert answers == [200] * 10  # every 2nd answer is a 503, retried on the same address
    assert world.web.metric("weft_proxy_retries_total", upstream="partner", route="retried") >= 5
    assert (
        world.web.metric(
            "weft_proxy_requests_total", direction="outbound", peer="partner", route="retried"
        )
        == 10
    )
    assert world.partner.seen[-1].headers.get("host", "").startswith("api.partner.test")


def test_an_external_routes_timeout_answers_504_at_the_timeout(world: World) -> None:
    with world.client() as client:
        started = time.monotonic()
        answer = client.get(f"http://api.partner.test:{world.partner.port}/sleep?s=3")
        took = time.monotonic() - started
    assert answer.status_code == 504
    assert took < 2.0


def test_a_mesh_route_may_send_to_an_external_service_by_name(world: World) -> None:
    before = len(world.partner.seen)
    with world.client() as client:
        answer = client.get("http://books/catalog")
    assert answer.status_code == 200, answer.text
    assert world.partner.seen[before].target == "/catalog"


def test_a_port_the_external_service_does_not_declare_is_refused_in_registry_only(
    world: World,
) -> None:
    with world.client() as client:
        answer = client.get("http://api.partner.test:1/orders")
    assert answer.status_code == 403
    assert "'api.partner.test:1'" in answer.text and "registry-only" in answer.text
