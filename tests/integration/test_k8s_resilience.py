"""The registry ends equal to the cluster after a cut watch, a 410 relist and a restart, and
malformed input from the API server never removes a healthy entry. Read from etcd itself."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from typing import Any

import pytest
import trio

from registry.etcd import EtcdClient
from tests.harness import Adapters, EtcdCluster, FakeKube, WeftServer, wait_until

pytestmark = pytest.mark.timeout(120)

State = dict[tuple[str, str, str], dict[str, Any]]


def registry_in_etcd(etcd: EtcdCluster, prefix: str) -> State:
    """Every instance key under the test's prefix, with its address, source and check states."""

    async def read() -> tuple[Any, Any]:
        async with EtcdClient(etcd.endpoints) as client:
            return (
                await client.range_all(prefix + "services/"),
                await client.range_all(prefix + "health/"),
            )

    instances, checks = trio.run(read)
    out: State = {}
    for kv in instances.kvs:
        service, node, iid = kv.key[len(prefix + "services/") :].split("/", 2)
        record = json.loads(kv.value)
        out[(service, node, iid)] = {
            "address": record.get("address"),
            "source": record.get("source"),
            "checks": [],
        }
    for kv in checks.kvs:
        service, node, iid, _ = kv.key[len(prefix + "health/") :].split("/", 3)
        # A check without its instance is a leftover too: it shows up as its own key.
        entry = out.setdefault((service, node, iid), {"orphan_check": True, "checks": []})
        entry["checks"].append(json.loads(kv.value).get("status", "critical"))
    return out


def cluster_state(fake: FakeKube, cluster: str = "c1") -> State:
    """What the registry should hold for the fake cluster's Services (default selection)."""
    out: State = {}
    for svc in fake.list("services"):
        ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
        ports = svc["spec"]["ports"]
        if ns in ("kube-system", "kube-public", "kube-node-lease") or not isinstance(ports, list):
            continue  # not synced, or planted malformed by the test
        port = ports[0]["targetPort"]
        for pod_name in fake.pods(ns, name):
            pod = fake.get("pods", ns, pod_name)
            ready = pod["status"]["conditions"][0]["status"] == "True"
            key = (
                f"{name}-{ns}",
                pod["spec"]["nodeName"],
                f"{cluster}:{ns}:{name}:{pod_name}:{port}",
            )
            out[key] = {
                "address": pod["status"]["podIP"],
                "source": f"k8s/{cluster}",
                "checks": ["passing" if ready else "critical"],
            }
    return out


def wait_consistent(fake: FakeKube, etcd: EtcdCluster, prefix: str, what: str) -> State:
    def same() -> State | None:
        want, have = cluster_state(fake), registry_in_etcd(etcd, prefix)
        return have if have == want else None

    try:
        return wait_until(same, timeout=20, interval=0.1, what=what)
    except AssertionError:
        want, have = cluster_state(fake), registry_in_etcd(etcd, prefix)
        missing = sorted(set(want) - set(have))
        extra = sorted(set(have) - set(want))
        changed = sorted(k for k in set(want) & set(have) if want[k] != have[k])
        raise AssertionError(
            f"{what}: missing {missing}, leftover {extra}, differ {changed}"
        ) from None


@pytest.fixture
def fake() -> Iterator[FakeKube]:
    # Bookmarks are rare here so a watch's version stays old enough to be compacted away.
    with FakeKube(bookmark_interval=600) as server:
        yield server


def test_cut_watches_410_relists_and_restarts_end_identical(
    fake: FakeKube, adapters: Adapters, etcd: EtcdCluster, prefix: str
) -> None:
    fake.add_service("shop", "web", replicas=3)
    fake.add_service("shop", "api", replicas=2)
    adapter = adapters.start(identity="first")
    wait_consistent(fake, etcd, prefix, "the first sync")

    # 1. Watches cut three ways; the adapter resumes from its resourceVersion.
    for mode in ("reset", "garbage", "close"):
        wait_until(lambda: fake.active_watches() == 3, timeout=15, what="three watches")
        assert fake.cut_watches(mode) == 3
        fake.scale("shop", "web", len(fake.pods("shop", "web")) + 1)
        fake.set_ready("shop", fake.pods("shop", "api")[0], mode != "reset")
        wait_consistent(fake, etcd, prefix, f"after a watch cut ({mode})")
    informers = adapter.status()["informers"]
    assert sum(i["stream_errors"] for i in informers.values()) >= 3

    # 2. Changes while disconnected, then a compaction: the old version is Gone -> relist.
    lists_before = sum(i["lists"] for i in adapter.status()["informers"].values())
    for gone_as_http in (False, True):
        fake.gone_as_http_status = gone_as_http
        wait_until(lambda: fake.active_watches() == 3, timeout=15, what="three watches")
        fake.refuse_watches = True
        fake.cut_watches("reset")
        victim = fake.pods("shop", "web")[0]
        fake.delete("pods", "shop", victim)  # a deletion a re-watch from "now" would miss
        fake.reconcile_slices("shop", "web")
        fake.scale("shop", "api", 3)
        fake.compact()
        fake.refuse_watches = False
        wait_consistent(fake, etcd, prefix, f"after 410 Gone (as HTTP status: {gone_as_http})")

    def relisted() -> bool:
        informers = adapter.status()["informers"].values()
        return sum(i["gone"] for i in informers) >= 6  # 3 kinds, twice

    wait_until(relisted, timeout=15, what="every informer to relist after 410 Gone")
    informers = adapter.status()["informers"].values()
    assert sum(i["lists"] for i in informers) >= lists_before + 6

    # 3. Killed outright; the cluster changes while no adapter runs; a new one cleans up.
    adapter.kill()
    fake.delete_service("shop", "api")
    fake.scale("shop", "web", 1)
    fake.add_service("shop", "cart", replicas=2)
    adapters.start(identity="second")
    final = wait_consistent(fake, etcd, prefix, "after a restart")
    assert {k[0] for k in final} == {"web-shop", "cart-shop"}


def test_a_graceful_restart_writes_nothing_when_nothing_changed(
    fake: FakeKube, adapters: Adapters, etcd: EtcdCluster, prefix: str
) -> None:
    fake.add_service("shop", "web", replicas=4)
    first = adapters.start(identity="one")
    wait_consistent(fake, etcd, prefix, "the first sync")
    first.signal(signal.SIGTERM)
    wait_until(lambda: not first.proc.alive(), timeout=15, what="a graceful stop")
    assert "released the Lease" in first.log()
    second = adapters.start(identity="two")
    status = second.wait_in_sync()
    sync = status["registry_sync"]
    assert sync["loads"] >= 1 and sync["batches"] == 0 and sync["registered"] == 4


def test_malformed_input_is_skipped_and_never_removes_healthy_entries(
    fake: FakeKube, adapters: Adapters, etcd: EtcdCluster, prefix: str
) -> None:
    fake.add_service("shop", "web", replicas=3)
    adapter = adapters.start()
    healthy = wait_consistent(fake, etcd, prefix, "the first sync")

    # Into live watches: an object missing required fields, an unknown kind, an unknown event
    # type, a line that is not JSON, and a MODIFIED that breaks an object we know.
    slice_name = fake.list("endpointslices", "shop")[0]["metadata"]["name"]
    assert (
        fake.inject(
            "endpointslices",
            {
                "type": "MODIFIED",
                "object": {
                    "kind": "EndpointSlice",
                    "apiVersion": "discovery.k8s.io/v1",
                    "metadata": {"name": slice_name, "namespace": "shop", "resourceVersion": "1"},
                    "addressType": "IPv4",
                    "endpoints": [{"conditions": {"ready": True}}],
                },
            },
        )
        == 1
    )
    fake.inject(
        "pods",
        {
            "type": "ADDED",
            "object": {
                "kind": "Frobnicator",
                "apiVersion": "v9",
                "metadata": {"name": "x", "namespace": "shop"},
            },
        },
    )
    fake.inject("services", {"type": "TELEPORTED", "object": {}})
    fake.inject("services", "this is not json")
    # Planted in the store: a malformed Service and Pod that every list returns from now on.
    fake.put_raw(
        "services",
        "shop",
        {
            "kind": "Service",
            "apiVersion": "v1",
            "metadata": {"name": "broken", "namespace": "shop"},
            "spec": {"ports": "eighty"},
        },
    )
    fake.put_raw("pods", "shop", {"kind": "Pod", "metadata": {"namespace": "shop"}})

    def skipped() -> bool:
        informers = adapter.status()["informers"]
        return sum(i["bad_objects"] for i in informers.values()) >= 4

    wait_until(skipped, timeout=15, what="the adapter to skip the malformed objects")
    # A relist now returns the planted objects: still skipped, nothing removed.
    wait_until(lambda: fake.active_watches() == 3, timeout=15, what="three watches")
    fake.refuse_watches = True
    fake.cut_watches("reset")
    fake.compact()
    fake.refuse_watches = False
    wait_until(
        lambda: sum(i["gone"] for i in adapter.status()["informers"].values()) >= 1,
        timeout=15,
        what="a relist",
    )
    assert registry_in_etcd(etcd, prefix) == healthy
    # ...and real changes still flow.
    fake.scale("shop", "web", 4)
    wait_consistent(fake, etcd, prefix, "a real change after the bad input")
    log = adapter.log()
    assert "Frobnicator" in log and "addresses" in log and "TELEPORTED" in log
    assert "not an event" in log


def test_a_registry_outage_is_ridden_out(
    fake: FakeKube, server: WeftServer, adapters: Adapters, etcd: EtcdCluster, prefix: str
) -> None:
    fake.add_service("shop", "web", replicas=2)
    adapter = adapters.start()
    wait_consistent(fake, etcd, prefix, "the first sync")
    server.stop()
    fake.scale("shop", "web", 4)
    fake.set_ready("shop", fake.pods("shop", "web")[0], False)
    wait_until(
        lambda: adapter.status()["registry_sync"]["errors"] >= 1,
        timeout=15,
        what="the adapter to notice the registry is gone",
    )
    server.start()
    wait_consistent(fake, etcd, prefix, "after the registry came back")
    assert adapter.proc.alive()
