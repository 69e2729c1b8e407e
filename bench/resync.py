"""Resync after a compacted watch, and a large recursive KV delete: time and event-loop stalls.

    .venv/bin/python bench/resync.py [--sizes 1000,4000,5000] [--kv-delete 30000]

Starts its own etcd (a real process on loopback) and, in this process, one server's Mirror and
MirrorSync on a fresh prefix. For each size it loads N instances (each with one check), changes
every record behind the mirror's back, compacts etcd past the mirror's revision and lets the
sync notice: that is the resync a server does after its watch fell behind a compaction. A probe
task sleeping 1 ms meanwhile records how long the trio loop went without running it (the
longest stall is what a health check or a blocking query would have waited).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from registry._fanout import Hub  # noqa: E402
from registry._keys import Keys  # noqa: E402
from registry._mirror import Mirror  # noqa: E402
from registry._model import Check, Instance, Status, encode_check, encode_instance  # noqa: E402
from registry._sync import MirrorSync  # noqa: E402
from registry.etcd import EtcdClient, Put  # noqa: E402
from tests.harness import EtcdCluster  # noqa: E402


class StallProbe:
    """Longest gap between wake-ups of a task that asks to sleep 1 ms."""

    def __init__(self) -> None:
        self.longest = 0.0

    async def run(self) -> None:
        while True:
            before = time.perf_counter()
            await trio.sleep(0.001)
            self.longest = max(self.longest, time.perf_counter() - before - 0.001)


async def put_all(client: EtcdClient, ops: list[Put]) -> None:
    for i in range(0, len(ops), 100):
        await client.txn((), ops[i : i + 100])


def records(keys: Keys, n: int, generation: int) -> list[Put]:
    ops = []
    for i in range(n):
        inst = Instance(
            service=f"svc{i % 50}",
            id=f"i{i}",
            node=f"n{i % 200}",
            port=1000 + i,
            meta={"gen": str(generation)},
        )
        check = Check(
            id=f"c{i}",
            node=inst.node,
            service=inst.service,
            instance=inst.id,
            status=Status.PASSING,
            output=f"gen {generation}",
        )
        ops.append(Put(keys.instance(inst.service, inst.node, inst.id), encode_instance(inst)))
        ops.append(Put(keys.check(inst.service, inst.node, inst.id, check.id), encode_check(check)))
    return ops


async def resync(client: EtcdClient, n: int) -> tuple[float, float]:
    keys = Keys(f"/bench-resync-{n}-{time.monotonic_ns()}/")
    await put_all(client, records(keys, n, 0))
    mirror, hub = Mirror(keys), Hub()
    sync = MirrorSync(client, mirror, hub)
    probe = StallProbe()
    async with trio.open_nursery() as nursery:
        await nursery.start(sync.run)
        # The sync's watch is live: stop it from seeing the next changes by cancelling it, as a
        # partition would, then rewrite everything and compact the history it would need.
        nursery.cancel_scope.cancel()
    await put_all(client, records(keys, n, 1))
    revision = (await client.range(keys.prefix, prefix=True, count_only=True)).revision
    await client.call("/v3/kv/compaction", {"revision": str(revision)})
    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(probe.run)
        await sync._reload()
        elapsed = time.perf_counter() - started
        await trio.sleep(0.01)  # let the probe wake and record the stall it just suffered
        nursery.cancel_scope.cancel()
    assert all(
        inst.meta.get("gen") == "1"
        for insts in mirror.instances.values()
        for inst in insts.values()
    )
    await client.delete(keys.prefix, prefix=True)
    return elapsed, probe.longest


async def kv_delete(client: EtcdClient, n: int) -> tuple[float, float]:
    """A recursive delete of n KV keys as the server's watch sees it."""
    keys = Keys(f"/bench-kvdel-{time.monotonic_ns()}/")
    await put_all(client, [Put(keys.kv(f"tree/{i:06d}"), b"v" * 64) for i in range(n)])
    mirror, hub = Mirror(keys), Hub()
    sync = MirrorSync(client, mirror, hub)
    probe = StallProbe()
    async with trio.open_nursery() as nursery:
        await nursery.start(sync.run)
        nursery.start_soon(probe.run)
        started = time.perf_counter()
        _, revision = await client.delete(keys.kv("tree/"), prefix=True)
        while mirror.revision < revision or mirror.kv:
            await trio.sleep(0.001)
        elapsed = time.perf_counter() - started
        await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    return elapsed, probe.longest


async def main(sizes: list[int], kv_keys: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cluster = EtcdCluster(Path(tmp) / "etcd")
        cluster.start()
        try:
            async with EtcdClient(cluster.endpoints, timeout=30) as client:
                print("| instances (+1 check each) | resync time | longest loop stall |")
                print("|---|---|---|")
                for n in sizes:
                    elapsed, stall = await resync(client, n)
                    print(f"| {n:,} | {elapsed:.2f} s | {stall * 1000:.0f} ms |")
                if kv_keys:
                    elapsed, stall = await kv_delete(client, kv_keys)
                    print(
                        f"\nrecursive KV delete of {kv_keys:,} keys: applied in {elapsed:.2f} s, "
                        f"longest loop stall {stall * 1000:.0f} ms"
                    )
        finally:
            cluster.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,4000,5000")
    parser.add_argument("--kv-delete", type=int, default=30000)
    args = parser.parse_args()
    trio.run(main, [int(s) for s in args.sizes.split(",")], args.kv_delete)
