"""Kubernetes -> registry sync: time to consistent, and what it costs in registry writes.

    .venv/bin/python bench/k8s_sync.py                      # 1,000 and 10,000 endpoints
    .venv/bin/python bench/k8s_sync.py --endpoints 900,5000

Everything is real but the Kubernetes API server (the tests' fake, which speaks the real
protocol): one etcd, one `weft server`, one `weft k8s-adapter` process. For each size it
measures, from a cold start of the adapter, how long until the registry serves every
endpoint as passing; then how long a rollout-like change takes (10% of pods turn not-ready,
10% new pods appear); and counts the batch requests and etcd transactions each needed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.harness import EtcdCluster, FakeKube, K8sAdapter, WeftServer, adapter_token


def passing_count(server: WeftServer, name: str) -> tuple[int, int]:
    resp = httpx.get(f"{server.url}/v1/registry/services", headers=server.headers(), timeout=30)
    resp.raise_for_status()
    for svc in resp.json():
        if svc["name"] == name:
            return svc["passing"], svc["critical"]
    return 0, 0


def wait_for(condition, timeout: float) -> float:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise SystemExit(f"not consistent after {timeout}s")
        time.sleep(0.02)
    return time.monotonic() - started


def run_size(etcd: EtcdCluster, workdir: Path, endpoints: int) -> dict[str, float]:
    prefix = f"/bench-k8s-{endpoints}-{int(time.time())}/"
    server = WeftServer(etcd.endpoints, prefix, workdir / f"n{endpoints}").start()
    fake = FakeKube(bookmark_interval=30).start()
    adapter = None
    try:
        built = time.monotonic()
        fake.add_service("shop", "big", replicas=endpoints)
        build_time = time.monotonic() - built
        token = adapter_token(server.url, server.token or "", "bench")
        adapter = K8sAdapter(
            fake,
            server.url,
            token,
            workdir / f"a{endpoints}",
            cluster="bench",
            args=("--log-level", "warning", "--no-leader-elect"),
        )
        started = time.monotonic()
        adapter.start(timeout=120)
        wait_for(lambda: passing_count(server, "big-shop") == (endpoints, 0), 600)
        cold = time.monotonic() - started
        first = adapter.status()["registry_sync"]

        # A rollout step: 10% of the pods turn not-ready and 10% new pods appear.
        tenth = max(1, endpoints // 10)
        changed = time.monotonic()
        for pod in fake.pods("shop", "big")[:tenth]:
            obj = fake.get("pods", "shop", pod)
            obj["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
            obj["metadata"].pop("resourceVersion", None)
            fake.store.update("pods", "shop", obj)
        fake.scale("shop", "big", endpoints + tenth)
        applied = time.monotonic()
        wait_for(lambda: passing_count(server, "big-shop") == (endpoints, tenth), 600)
        change = time.monotonic() - changed
        lag = time.monotonic() - applied
        second = adapter.status()["registry_sync"]
        return {
            "endpoints": endpoints,
            "cluster_build_s": build_time,
            "cold_s": cold,
            "cold_batches": first["batches"],
            "cold_txns": first["transactions"],
            "change_s": change,
            "change_lag_s": lag,
            "change_entries": 2 * tenth,
            "change_batches": second["batches"] - first["batches"],
            "change_txns": second["transactions"] - first["transactions"],
        }
    finally:
        if adapter is not None:
            adapter.stop()
        fake.stop()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--endpoints",
        default="1000,10000",
        help="comma-separated Service sizes [default: 1000,10000]",
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.endpoints.split(",") if s.strip()]
    with tempfile.TemporaryDirectory(prefix="weft-bench-k8s-") as tmp:
        etcd = EtcdCluster(Path(tmp) / "etcd", size=1)
        etcd.start()
        try:
            rows = [run_size(etcd, Path(tmp), n) for n in sizes]
        finally:
            etcd.stop()
    print()
    print("cold start: from starting weft k8s-adapter to every endpoint passing in the registry")
    print("rollout step: 10% of pods turn not-ready and 10% new pods appear; time from the first")
    print("change (in brackets: from the last; the fake API server takes a while to make them)")
    print()
    print(
        "| endpoints | cold start | batches | etcd txns | rollout step "
        "| entries changed | batches | etcd txns |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['endpoints']:,} | {r['cold_s']:.2f} s | {r['cold_batches']} "
            f"| {r['cold_txns']} | {r['change_s']:.2f} s ({r['change_lag_s']:.2f} s) "
            f"| {r['change_entries']:,} | {r['change_batches']} | {r['change_txns']} |"
        )


if __name__ == "__main__":
    main()
