"""Traffic CRDs converted per target service, under the adapter's own names: a real `weft
k8s-adapter` against the fake API server, syncing into a real `weft server` on real etcd.
Two HTTPRoutes on one Service make one merged Route (read back through the API), and deleting
one recomputes it; Linkerd's HTTPRoute and the Gateway API's, served side by side, each make
their own Route; a VirtualService for `reviews` in namespace `bookinfo` routes what the
adapter registered for that Service, whatever its name template or annotation says."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.harness import FakeKube, WeftServer, wait_until
from tests.harness.fake_kube import Adapters

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def fake() -> Iterator[FakeKube]:
    with FakeKube(bookmark_interval=0.5) as kube:
        yield kube


def resources(server: WeftServer) -> dict[tuple[str, str], dict[str, Any]]:
    resp = httpx.get(f"{server.url}/v1/resources", headers=server.headers(), timeout=10)
    resp.raise_for_status()
    return {(r["kind"], r["metadata"]["name"]): r for r in resp.json()["resources"]}


def catalog(server: WeftServer) -> set[str]:
    resp = httpx.get(f"{server.url}/v1/catalog/services", headers=server.headers(), timeout=10)
    resp.raise_for_status()
    return set(resp.json())


def http_route(
    name: str, path: str, service: str = "web", group: str = "gateway.networking.k8s.io/v1"
) -> dict[str, Any]:
    return {
        "apiVersion": group,
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {
            "parentRefs": [{"group": "core", "kind": "Service", "name": service, "port": 80}],
            "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": path}}]}],
        },
    }


def rule_names(server: WeftServer, route: str) -> list[str] | None:
    found = resources(server).get(("Route", route))
    return None if found is None else [r["name"] for r in found["spec"]["rules"]]


def test_two_httproutes_on_one_service_sync_as_one_merged_route(
    fake: FakeKube, server: WeftServer, adapters: Adapters
) -> None:
    fake.install_crds("httproutes.gateway.networking.k8s.io")
    fake.add_service("shop", "web", replicas=1)
    adapter = adapters.start()  # the default template: `web` in `shop` is `web-shop`
    fake.apply("httproutes", http_route("books", "/books"))
    fake.apply("httproutes", http_route("authors", "/authors"))
    wait_until(
        lambda: rule_names(server, "web-shop") == ["authors", "books"],
        timeout=15,
        what=f"one Route with both HTTPRoutes' rules:\n{adapter.tail()}",
    )
    assert "web-shop" in catalog(server)  # the very service the adapter registered
    route = resources(server)[("Route", "web-shop")]
    assert route["spec"]["service"] == "web-shop" and route["metadata"]["source"] == "k8s/c1"
    assert route["metadata"]["labels"]["weft.io/k8s-object"] == (
        "HTTPRoute shop/authors, HTTPRoute shop/books"
    )
    fake.delete("httproutes", "shop", "authors")
    wait_until(
        lambda: rule_names(server, "web-shop") == ["books"],
        timeout=10,
        what=f"the Route recomputed without the deleted HTTPRoute:\n{adapter.tail()}",
    )


GATEWAY_ROUTES = "httproutes.gateway.networking.k8s.io"
LINKERD_ROUTES = "httproutes.policy.linkerd.io"


def test_linkerds_httproute_and_the_gateway_apis_of_one_name_sync_side_by_side(
    fake: FakeKube, server: WeftServer, adapters: Adapters
) -> None:
    """Both HTTPRoute CRDs served at once (they share the plural `httproutes`), an object of
    each named `shop/books`: each makes its own Route, and deleting one takes only its Route."""
    fake.install_crds(GATEWAY_ROUTES, LINKERD_ROUTES)
    fake.add_service("shop", "web", replicas=1)
    fake.add_service("shop", "api", replicas=1)
    adapter = adapters.start()
    fake.apply(GATEWAY_ROUTES, http_route("books", "/books", service="web"))
    linkerd = http_route("books", "/v1", service="api", group="policy.linkerd.io/v1beta3")
    linkerd["metadata"]["annotations"] = {"timeout.linkerd.io/request": "2s"}
    fake.apply(LINKERD_ROUTES, linkerd)
    wait_until(
        lambda: {("Route", "web-shop"), ("Route", "api-shop")} <= set(resources(server)),
        timeout=15,
        what=f"a Route from each HTTPRoute:\n{adapter.tail()}",
    )
    synced = resources(server)
    web, api = synced[("Route", "web-shop")], synced[("Route", "api-shop")]
    assert web["metadata"]["labels"]["weft.io/k8s-object"] == "HTTPRoute shop/books"
    assert api["metadata"]["labels"]["weft.io/k8s-object"] == (
        "HTTPRoute.policy.linkerd.io shop/books"
    )
    assert [r["match"] for r in web["spec"]["rules"]] == [[{"path": {"segmentPrefix": "/books"}}]]
    assert [r["match"] for r in api["spec"]["rules"]] == [[{"path": {"segmentPrefix": "/v1"}}]]
    assert [r.get("timeout") for r in api["spec"]["rules"]] == ["2s"]  # Linkerd's annotation
    assert {web["metadata"]["source"], api["metadata"]["source"]} == {"k8s/c1"}
    assert adapter.status()["traffic"]["watched"] == {
        "HTTPRoute": "gateway.networking.k8s.io/v1",
        "HTTPRoute.policy.linkerd.io": "policy.linkerd.io/v1beta3",
    }

    fake.delete(LINKERD_ROUTES, "shop", "books")
    wait_until(
        lambda: ("Route", "api-shop") not in resources(server),
        timeout=10,
        what=f"the Linkerd HTTPRoute's Route removed with it:\n{adapter.tail()}",
    )
    assert resources(server)[("Route", "web-shop")] == web  # untouched, not even rewritten
    assert fake.get(GATEWAY_ROUTES, "shop", "books")["spec"]["parentRefs"][0]["name"] == "web"


def test_a_virtualservice_routes_what_the_adapter_registered_under_its_own_template(
    fake: FakeKube, server: WeftServer, adapters: Adapters
) -> None:
    fake.install_crds("virtualservices", "destinationrules")
    fake.add_service("bookinfo", "reviews", replicas=1)
    fake.add_service(
        "bookinfo", "ratings", replicas=1, annotations={"weft.io/service-name": "stars"}
    )
    adapter = adapters.start("--name-template", "{namespace}-{name}")
    for host in ("reviews", "ratings"):
        fake.apply(
            "virtualservices",
            {
                "apiVersion": "networking.istio.io/v1",
                "kind": "VirtualService",
                "metadata": {"name": host, "namespace": "bookinfo"},
                "spec": {
                    "hosts": [host],
                    "http": [{"timeout": "2s", "route": [{"destination": {"host": host}}]}],
                },
            },
        )
    fake.apply(
        "destinationrules",
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": {"name": "reviews", "namespace": "bookinfo"},
            "spec": {
                "host": "reviews.bookinfo.svc.cluster.local",
                "subsets": [{"name": "v1", "labels": {"version": "v1"}}],
                "trafficPolicy": {"loadBalancer": {"simple": "LEAST_REQUEST"}},
            },
        },
    )
    wanted = {
        ("Route", "bookinfo-reviews"),
        ("Route", "stars"),
        ("Subset", "bookinfo-reviews-v1"),
        ("ServiceDefaults", "bookinfo-reviews"),
    }
    wait_until(
        lambda: wanted <= set(resources(server)),
        timeout=15,
        what=f"the objects synced under the adapter's names:\n{adapter.tail()}",
    )
    assert {"bookinfo-reviews", "stars"} <= catalog(server)
    synced = resources(server)
    assert synced[("Route", "bookinfo-reviews")]["spec"]["service"] == "bookinfo-reviews"
    backends = synced[("Route", "stars")]["spec"]["rules"][0]["backends"]
    assert [b["service"] for b in backends] == ["stars"]
    assert synced[("Subset", "bookinfo-reviews-v1")]["spec"]["service"] == "bookinfo-reviews"
    assert ("Route", "reviews") not in synced and ("Route", "ratings") not in synced
    # The DestinationRule's ServiceDefaults is the adapter's like the rest, and goes with it.
    defaults = synced[("ServiceDefaults", "bookinfo-reviews")]
    assert defaults["metadata"]["source"] == "k8s/c1" and defaults["spec"]["balancer"]
    fake.delete("destinationrules", "bookinfo", "reviews")
    wait_until(
        lambda: (
            not {("ServiceDefaults", "bookinfo-reviews"), ("Subset", "bookinfo-reviews-v1")}
            & set(resources(server))
        ),
        timeout=10,
        what=f"the DestinationRule's resources removed with it:\n{adapter.tail()}",
    )
    assert ("Route", "bookinfo-reviews") in resources(server)
