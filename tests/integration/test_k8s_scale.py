"""A 900-endpoint Service costs registry writes per batch, not per endpoint: counted by the
batch endpoint's `transactions` and, independently, by etcd's own revision."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import httpx
import pytest
import trio

from registry.etcd import EtcdClient
from tests.harness import Adapters, EtcdCluster, FakeKube, WeftServer, wait_until

pytestmark = pytest.mark.timeout(120)

ENDPOINTS = 900
BATCH = 500


@pytest.fixture
def fake() -> Iterator[FakeKube]:
    with FakeKube(bookmark_interval=1.0) as server:
        yield server


def etcd_revision(etcd: EtcdCluster) -> int:
    async def read() -> int:
        async with EtcdClient(etcd.endpoints) as client:
            return (await client.range("/", count_only=True)).revision

    return trio.run(read)


def counts(server: WeftServer, name: str) -> dict:
    resp = httpx.get(f"{server.url}/v1/registry/services", headers=server.headers(), timeout=10)
    resp.raise_for_status()
    return next((s for s in resp.json() if s["name"] == name), {})


def test_900_endpoints_sync_in_batches(
    fake: FakeKube, server: WeftServer, adapters: Adapters, etcd: EtcdCluster
) -> None:
    fake.add_service("shop", "big", replicas=ENDPOINTS)
    assert len(fake.list("endpointslices", "shop")) == 9  # 100 endpoints a slice
    before = etcd_revision(etcd)
    adapter = adapters.start("--batch-size", str(BATCH))
    wait_until(
        lambda: counts(server, "big-shop").get("passing") == ENDPOINTS,
        timeout=60,
        what="900 passing instances",
    )
    status = adapter.wait_in_sync()["registry_sync"]
    writes = etcd_revision(etcd) - before
    assert status["upserts"] == ENDPOINTS
    assert status["batches"] == -(-ENDPOINTS // BATCH) == 2
    # Each instance is two keys (record and check); the registry packs ~120 ops per etcd
    # transaction, so 900 endpoints take ~15 transactions, not 900 (or 1,800).
    assert status["transactions"] <= 20
    # etcd agrees: its revision moved once per transaction (the Lease lives in Kubernetes,
    # the adapter holds no etcd lease; a little slack for the registry's own bookkeeping).
    assert status["transactions"] <= writes <= status["transactions"] + 3

    # A third of the pods turn not-ready at once (a bad rollout): one batch, a few txns.
    for pod in fake.pods("shop", "big")[:300]:
        fake.store.update("pods", "shop", _not_ready(fake.get("pods", "shop", pod)))
    fake.reconcile_slices("shop", "big")
    wait_until(
        lambda: counts(server, "big-shop").get("critical") == 300,
        timeout=30,
        what="300 critical instances",
    )
    after = adapter.wait_in_sync()["registry_sync"]
    assert after["upserts"] - status["upserts"] == 300
    assert after["batches"] - status["batches"] <= 3  # one batch, or a few if events split
    assert after["transactions"] - status["transactions"] <= 10

    # A full resync of an unchanged cluster writes nothing at all.
    adapter.signal(signal.SIGHUP)
    wait_until(
        lambda: adapter.status()["registry_sync"]["loads"] >= 2, timeout=20, what="the resync"
    )
    wait_until(
        lambda: all(i["lists"] >= 2 for i in adapter.status()["informers"].values()),
        timeout=20,
        what="every kind to be listed again",
    )
    final = adapter.wait_in_sync()["registry_sync"]
    assert final["batches"] == after["batches"]


def _not_ready(pod: dict) -> dict:
    pod["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    pod["metadata"].pop("resourceVersion", None)
    return pod
