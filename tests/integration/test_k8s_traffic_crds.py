"""Istio's traffic CRDs in a cluster steer VM sidecars: the fake API server serves a
VirtualService and a DestinationRule, a real `weft k8s-adapter` syncs them into a real `weft
server` on real etcd, and a VM agent's real sidecar obeys them within 3 s (and forgets them
within 3 s of their deletion). Bad objects and operator-applied resources are left alone.
A ServiceEntry is an ExternalService in the registry within 3 s, and gone as fast once deleted."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness import FakeKube, WeftServer, free_port, wait_until
from tests.harness.fake_kube import Adapters, adapter_token

from .test_agent_mesh import Mesh, mesh  # noqa: F401 - the fixture
from .test_agent_traffic import served_by
from .test_k8s_cli import weft

pytestmark = pytest.mark.timeout(120)

# The VM services are `reviews`...: the adapter names a cluster's `reviews` the same (not
# `reviews-bookinfo`, its default), so the cluster's objects address the VMs' instances.
SAME_NAMES = ("--name-template", "{name}")

SUBSETS = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "DestinationRule",
    "metadata": {"name": "reviews", "namespace": "bookinfo"},
    "spec": {
        "host": "reviews.bookinfo.svc.cluster.local",
        "subsets": [
            {"name": "v1", "labels": {"version": "v1"}},
            {"name": "v2", "labels": {"version": "v2"}},
        ],
    },
}


def canary(name: str = "reviews", host: str = "reviews") -> dict:  # type: ignore[type-arg]
    """`end-user: jason` to subset v2; everyone else 100/0 to v1 (a weighted split)."""
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": "bookinfo"},
        "spec": {
            "hosts": [host],
            "http": [
                {
                    "match": [{"headers": {"end-user": {"exact": "jason"}}}],
                    "route": [{"destination": {"host": host, "subset": "v2"}}],
                },
                {
                    "route": [
                        {"destination": {"host": host, "subset": "v1"}, "weight": 100},
                        {"destination": {"host": host, "subset": "v2"}, "weight": 0},
                    ]
                },
            ],
        },
    }


@pytest.fixture
def fake() -> Iterator[FakeKube]:
    with FakeKube(bookmark_interval=0.5) as kube:
        kube.ensure_namespace("bookinfo")
        yield kube


def resources(server: WeftServer) -> dict[tuple[str, str], dict]:  # type: ignore[type-arg]
    resp = httpx.get(f"{server.url}/v1/resources", headers=server.headers(), timeout=10)
    resp.raise_for_status()
    return {(r["kind"], r["metadata"]["name"]): r for r in resp.json()["resources"]}


def test_a_virtualservice_in_the_cluster_steers_a_vm_sidecar_within_3s(
    mesh: Mesh,  # noqa: F811 - the fixture
    fake: FakeKube,
    tmp_path: Path,
) -> None:
    fake.install_crds("virtualservices", "destinationrules")
    adapters = Adapters(fake, mesh.server.url, mesh.server.token or "", tmp_path / "adapters")
    try:
        adapter = adapters.start(*SAME_NAMES)
        fake.apply("destinationrules", SUBSETS)
        for node, version in (("vm-b", "v1"), ("vm-c", "v2")):
            app = mesh.app(f"reviews-{version}")
            agent = mesh.agent(node)
            agent.define(
                "reviews",
                f'name = "reviews"\nport = {app}\nmeta = {{ version = "{version}" }}\n'
                f"[sidecar]\nport = {free_port()}\n",
            )
            agent.start()
        upstream = free_port()
        page = mesh.agent("vm-a")
        page.define(
            "productpage",
            f'name = "productpage"\nport = {mesh.app("productpage")}\n'
            f"[sidecar]\nport = {free_port()}\n"
            f'[[upstreams]]\nservice = "reviews"\nlocal_port = {upstream}\n',
        )
        page.start()
        wait_until(
            lambda: set(served_by(upstream, "/x", 10)) == {"reviews-v1", "reviews-v2"},
            timeout=40,
            what="productpage's sidecar to reach both reviews instances",
        )
        wait_until(
            lambda: ("Subset", "reviews-v2") in resources(mesh.server),
            timeout=10,
            what=f"the DestinationRule's subsets in the registry:\n{adapter.tail()}",
        )
        synced = resources(mesh.server)[("Subset", "reviews-v2")]
        assert synced["metadata"]["source"] == "k8s/c1"
        assert synced["spec"] == {"service": "reviews", "subset": "v2", "meta": {"version": "v2"}}

        def steered() -> bool:
            return served_by(upstream, "/r", 10) == {"reviews-v1": 10} and served_by(
                upstream, "/r", 5, **{"end-user": "jason"}
            ) == {"reviews-v2": 5}

        started = time.monotonic()
        fake.apply("virtualservices", canary())
        wait_until(steered, timeout=10, interval=0.05, what="the VirtualService in the sidecar")
        took = time.monotonic() - started
        assert took < 3.0, f"the VirtualService took {took:.2f}s to reach the sidecar"
        assert served_by(upstream, "/r", 40) == {"reviews-v1": 40}
        route = resources(mesh.server)[("Route", "reviews")]
        assert route["metadata"]["labels"]["weft.io/k8s-object"] == (
            "VirtualService bookinfo/reviews"
        )

        started = time.monotonic()
        fake.delete("virtualservices", "bookinfo", "reviews")
        wait_until(
            lambda: set(served_by(upstream, "/r", 10)) == {"reviews-v1", "reviews-v2"},
            timeout=10,
            interval=0.05,
            what="the sidecar to forget the VirtualService",
        )
        took = time.monotonic() - started
        assert took < 3.0, f"the deletion took {took:.2f}s to reach the sidecar"
        assert ("Route", "reviews") not in resources(mesh.server)
    finally:
        adapters.stop_all()


def test_an_invalid_object_is_skipped_named_and_changes_nothing(
    fake: FakeKube, server: WeftServer, adapters: Adapters
) -> None:
    fake.install_crds("virtualservices")
    bad = canary("broken", host="ratings")
    bad["spec"]["http"][0]["match"] = [{"uri": {"regex": "/books/(("}}]
    fake.apply("virtualservices", bad)
    adapter = adapters.start(*SAME_NAMES)
    good = canary("good", host="details")
    good["spec"]["http"][1]["corsPolicy"] = {"allowOrigins": [{"exact": "https://a.example"}]}
    fake.apply("virtualservices", good)
    wait_until(
        lambda: ("Route", "details") in resources(server),
        timeout=10,
        what=f"the valid VirtualService synced:\n{adapter.tail()}",
    )
    warned = [x for x in adapter.log().splitlines() if "VirtualService bookinfo/good" in x]
    assert any("http[1].corsPolicy is not supported and is ignored" in x for x in warned)
    assert any("note:" in x and "Istio" in x for x in warned)  # the implicit retries, said
    wait_until(
        lambda: "VirtualService bookinfo/broken skipped" in adapter.log(),
        timeout=5,
        what="the skipped object logged",
    )
    line = next(x for x in adapter.log().splitlines() if "bookinfo/broken skipped" in x)
    assert "spec.rules[0].match[0].path.regex" in line and "not a valid regex" in line
    assert set(resources(server)) == {("Route", "details")}
    metrics = httpx.get(f"{adapter.url}/metrics", timeout=5).text
    assert "weft_k8s_traffic_objects_skipped_total 1.0" in metrics
    assert "weft_k8s_traffic_import_warnings_total 1.0" in metrics

    # Made valid, it is synced; made invalid again, the last good version stays as it was.
    fake.apply("virtualservices", canary("broken", host="ratings"))
    wait_until(lambda: ("Route", "ratings") in resources(server), timeout=10, what="fixed")
    before = resources(server)[("Route", "ratings")]
    fake.apply("virtualservices", bad)
    wait_until(
        lambda: adapter.log().count("VirtualService bookinfo/broken skipped") >= 2,
        timeout=5,
        what="the second skip logged",
    )
    assert resources(server)[("Route", "ratings")] == before


def test_the_adapter_never_touches_an_operator_applied_resource(
    fake: FakeKube, server: WeftServer, adapters: Adapters
) -> None:
    operator_route = {
        "apiVersion": "weft.dev/v1",
        "kind": "Route",
        "metadata": {"name": "reviews"},
        "spec": {"service": "reviews", "rules": [{"name": "mine"}]},
    }
    httpx.post(
        f"{server.url}/v1/resources",
        json={"resources": [operator_route]},
        headers=server.headers(),
        timeout=10,
    ).raise_for_status()
    before = resources(server)[("Route", "reviews")]
    fake.install_crds("virtualservices", "destinationrules")
    fake.apply("virtualservices", canary())
    fake.apply("destinationrules", SUBSETS)
    adapter = adapters.start(*SAME_NAMES)
    wait_until(
        lambda: ("Subset", "reviews-v1") in resources(server),
        timeout=10,
        what=f"the DestinationRule synced:\n{adapter.tail()}",
    )
    wait_until(
        lambda: "VirtualService bookinfo/reviews skipped" in adapter.log(),
        timeout=5,
        what="the VirtualService skipped",
    )
    assert "Route reviews belongs to an operator" in adapter.log()
    assert resources(server)[("Route", "reviews")] == before
    assert "source" not in before["metadata"]

    # The registry holds the same line against the adapter's token itself.
    token = {"X-Consul-Token": adapter.token}
    replace = httpx.post(
        f"{server.url}/v1/resources",
        json={
            "resources": [
                {**operator_route, "spec": {"service": "reviews", "rules": [{"name": "x"}]}}
            ]
        },
        headers=token,
        timeout=10,
    )
    assert replace.status_code == 403 and "belongs to an operator" in replace.text
    delete = httpx.delete(f"{server.url}/v1/resources/Route/reviews", headers=token, timeout=10)
    assert delete.status_code == 403
    assert resources(server)[("Route", "reviews")] == before
    # ...and between clusters: another source's resource is not this adapter's either.
    other = {"X-Consul-Token": adapter_token(server.url, server.token or "", "c2")}
    theirs = {**operator_route, "metadata": {"name": "ratings"}}
    theirs["spec"] = {"service": "ratings", "rules": [{"name": "c2"}]}
    httpx.post(
        f"{server.url}/v1/resources", json={"resources": [theirs]}, headers=other, timeout=10
    ).raise_for_status()
    assert resources(server)[("Route", "ratings")]["metadata"]["source"] == "k8s/c2"
    refused = httpx.post(
        f"{server.url}/v1/resources", json={"resources": [theirs]}, headers=token, timeout=10
    )
    assert refused.status_code == 403 and "belongs to source 'k8s/c2'" in refused.text

    # The VirtualService going away does not take the operator's Route with it.
    fake.delete("virtualservices", "bookinfo", "reviews")
    fake.delete("destinationrules", "bookinfo", "reviews")
    wait_until(
        lambda: ("Subset", "reviews-v1") not in resources(server),
        timeout=10,
        what="the DestinationRule's subsets removed",
    )
    assert resources(server)[("Route", "reviews")] == before


def test_a_restart_removes_what_vanished_and_a_late_crd_is_watched(
    fake: FakeKube, server: WeftServer, adapters: Adapters
) -> None:
    fake.install_crds("virtualservices")
    fake.apply("virtualservices", canary("a", host="alpha"))
    fake.apply("virtualservices", canary("b", host="beta"))
    first = adapters.start("--resync", "2s", *SAME_NAMES)
    wait_until(
        lambda: {("Route", "alpha"), ("Route", "beta")} <= set(resources(server)),
        timeout=10,
        what="both VirtualServices synced",
    )
    assert "DestinationRule (networking.istio.io) is not served" in first.log()
    first.stop()

    fake.delete("virtualservices", "bookinfo", "a")  # while no adapter runs
    fake.install_crds("destinationrules")
    second = adapters.start("--resync", "2s", *SAME_NAMES)
    wait_until(
        lambda: ("Route", "alpha") not in resources(server),
        timeout=10,
        what=f"the vanished object's Route removed at resync:\n{second.tail()}",
    )
    assert ("Route", "beta") in resources(server)

    fake.install_crds("trafficsplits")  # appears while the adapter runs
    fake.apply(
        "trafficsplits",
        {
            "apiVersion": "split.smi-spec.io/v1alpha4",
            "kind": "TrafficSplit",
            "metadata": {"name": "gamma", "namespace": "bookinfo"},
            "spec": {"service": "gamma", "backends": [{"service": "gamma-v1", "weight": 1}]},
        },
    )
    wait_until(
        lambda: ("Route", "gamma") in resources(server),
        timeout=10,
        what=f"the late CRD watched within a resync:\n{second.tail()}",
    )
    assert second.status()["traffic"]["watched"]["TrafficSplit"] == "split.smi-spec.io/v1alpha4"

    # Decommissioning the cluster takes its traffic resources along, and nothing else.
    second.stop()
    operator = {
        "apiVersion": "weft.dev/v1",
        "kind": "ServiceDefaults",
        "metadata": {"name": "beta"},
        "spec": {"timeout": "1s"},
    }
    httpx.post(
        f"{server.url}/v1/resources",
        json={"resources": [operator]},
        headers=server.headers(),
        timeout=10,
    ).raise_for_status()
    purged = weft(
        "k8s-adapter",
        "--cluster",
        "c1",
        "--registry",
        server.url,
        "--purge",
        env={"WEFT_K8S_REGISTRY_TOKEN": second.token},
    )
    assert purged.returncode == 0, purged.stderr
    assert "removed 2 traffic resources of source k8s/c1" in purged.stdout
    assert set(resources(server)) == {("ServiceDefaults", "beta")}


def test_an_operator_takes_a_synced_resource_over_by_changing_it(
    fake: FakeKube, server: WeftServer, adapters: Adapters
) -> None:
    fake.install_crds("virtualservices")
    fake.apply("virtualservices", canary())
    adapter = adapters.start(*SAME_NAMES)
    wait_until(lambda: ("Route", "reviews") in resources(server), timeout=10, what="synced")
    synced = resources(server)[("Route", "reviews")]
    assert synced["metadata"]["source"] == "k8s/c1"

    def apply(doc: dict) -> list[dict]:  # type: ignore[type-arg]
        resp = httpx.post(
            f"{server.url}/v1/resources",
            json={"resources": [doc]},
            headers=server.headers(),
            timeout=10,
        )
        resp.raise_for_status()
        return list(resp.json()["results"])

    # What `weft get -o yaml | weft apply -f -` sends back changes nothing, the owner included.
    assert apply(synced)[0]["action"] == "unchanged"
    assert resources(server)[("Route", "reviews")]["metadata"]["source"] == "k8s/c1"

    # An operator's change takes it over; from then on the adapter leaves it alone.
    mine = {**synced, "spec": {**synced["spec"], "unmatched": "default"}}
    assert apply(mine)[0]["action"] == "configured"
    taken = resources(server)[("Route", "reviews")]
    assert "source" not in taken["metadata"] and taken["spec"]["unmatched"] == "default"
    changed = canary()
    changed["spec"]["http"][0]["match"][0]["headers"]["end-user"]["exact"] = "sam"
    fake.apply("virtualservices", changed)
    fake.delete("virtualservices", "bookinfo", "reviews")
    fake.apply("virtualservices", canary("other", host="other"))
    wait_until(lambda: ("Route", "other") in resources(server), timeout=10, what="later sync")
    assert resources(server)[("Route", "reviews")] == taken
    assert adapter.status()["traffic"]["resources"] == 1


def service_entry(name: str, *hosts: str, port: int = 443, protocol: str = "TLS") -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": name, "namespace": "bookinfo"},
        "spec": {
            "hosts": list(hosts),
            "location": "MESH_EXTERNAL",
            "ports": [{"number": port, "name": protocol.lower(), "protocol": protocol}],
            "resolution": "DNS",
        },
    }


def test_a_serviceentry_in_the_cluster_is_an_externalservice_in_the_registry_until_deleted(
    fake: FakeKube, server: WeftServer, adapters: Adapters
) -> None:
    fake.install_crds("serviceentries")
    adapter = adapters.start()
    adapter.wait_in_sync()

    started = time.monotonic()
    fake.apply("serviceentries", service_entry("payments", "api.payments.example.com"))
    wait_until(
        lambda: ("ExternalService", "payments") in resources(server),
        timeout=10,
        interval=0.05,
        what=f"the ServiceEntry's ExternalService in the registry:\n{adapter.tail()}",
    )
    took = time.monotonic() - started
    assert took < 3.0, f"the ServiceEntry took {took:.2f}s to reach the registry"
    synced = resources(server)[("ExternalService", "payments")]
    assert synced["spec"] == {
        "hosts": ["api.payments.example.com"],
        "ports": [{"port": 443, "protocol": "tls"}],
        "resolution": "dns",
    }
    assert synced["metadata"]["source"] == "k8s/c1"
    assert synced["metadata"]["labels"]["weft.io/k8s-object"] == "ServiceEntry bookinfo/payments"
    assert adapter.status()["traffic"]["watched"]["ServiceEntry"] == "networking.istio.io/v1"

    # Changed in the cluster, changed in the registry.
    fake.apply(
        "serviceentries",
        service_entry("payments", "api.payments.example.com", "eu.payments.example.com"),
    )
    wait_until(
        lambda: (
            resources(server)[("ExternalService", "payments")]["spec"]["hosts"]
            == ["api.payments.example.com", "eu.payments.example.com"]
        ),
        timeout=10,
        what=f"the ServiceEntry's new host in the registry:\n{adapter.tail()}",
    )

    started = time.monotonic()
    fake.delete("serviceentries", "bookinfo", "payments")
    wait_until(
        lambda: ("ExternalService", "payments") not in resources(server),
        timeout=10,
        interval=0.05,
        what=f"the ExternalService removed with its ServiceEntry:\n{adapter.tail()}",
    )
    took = time.monotonic() - started
    assert took < 3.0, f"the deletion took {took:.2f}s to reach the registry"
    assert resources(server) == {}


def test_a_serviceentry_leaves_an_operators_externalservice_alone_and_goes_when_it_vanishes(
    fake: FakeKube, server: WeftServer, adapters: Adapters
) -> None:
    operator = {
        "apiVersion": "weft.dev/v1",
        "kind": "ExternalService",
        "metadata": {"name": "stripe"},
        "spec": {"hosts": ["api.stripe.com"], "ports": [{"port": 443, "protocol": "https"}]},
    }
    httpx.post(
        f"{server.url}/v1/resources",
        json={"resources": [operator]},
        headers=server.headers(),
        timeout=10,
    ).raise_for_status()
    before = resources(server)[("ExternalService", "stripe")]
    fake.install_crds("serviceentries")
    fake.apply("serviceentries", service_entry("stripe", "api.stripe.com"))
    fake.apply(
        "serviceentries", service_entry("maps", "maps.example.com", port=80, protocol="HTTP")
    )
    first = adapters.start("--resync", "2s")
    wait_until(
        lambda: ("ExternalService", "maps") in resources(server),
        timeout=10,
        what=f"the other ServiceEntry synced:\n{first.tail()}",
    )
    wait_until(
        lambda: "ServiceEntry bookinfo/stripe skipped" in first.log(),
        timeout=5,
        what="the ServiceEntry that would replace the operator's skipped",
    )
    assert "ExternalService stripe belongs to an operator" in first.log()
    assert resources(server)[("ExternalService", "stripe")] == before
    first.stop()

    fake.delete("serviceentries", "bookinfo", "maps")  # while no adapter runs
    fake.delete("serviceentries", "bookinfo", "stripe")
    second = adapters.start("--resync", "2s")
    wait_until(
        lambda: ("ExternalService", "maps") not in resources(server),
        timeout=10,
        what=f"the vanished ServiceEntry's ExternalService removed:\n{second.tail()}",
    )
    second.wait_in_sync()
    assert resources(server) == {("ExternalService", "stripe"): before}
