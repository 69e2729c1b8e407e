"""A server whose etcd watch broke past a compaction re-reads the registry and catches up."""

from __future__ import annotations

import httpx
import trio

from registry.etcd import EtcdClient
from tests.harness import Relay, WeftServer, async_wait_until


async def test_server_recovers_from_a_compacted_watch(etcd, prefix, tmp_path) -> None:
    relay = Relay("127.0.0.1", etcd.members[0].client_port)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(relay.serve)
        direct = WeftServer(etcd.endpoints, prefix, tmp_path).start()
        behind = WeftServer([f"http://127.0.0.1:{port}"], prefix, tmp_path, bootstrap=False)
        behind.token = direct.token
        try:
            await trio.to_thread.run_sync(behind.start)
            async with httpx.AsyncClient(headers=direct.headers()) as http:

                async def sees(server: WeftServer, name: str) -> bool:
                    resp = await http.get(f"{server.url}/v1/catalog/services")
                    return name in resp.json()

                await http.put(
                    direct.url + "/v1/agent/service/register", json={"Name": "before", "Port": 1}
                )
                await async_wait_until(
                    lambda: sees(behind, "before"),
                    timeout=10,
                    what="the relayed server to see the first write",
                )
                relay.pause()  # the relayed server loses etcd
                await http.put(
                    direct.url + "/v1/agent/service/register", json={"Name": "during", "Port": 2}
                )
                await http.put(direct.url + "/v1/agent/service/deregister/before")
                async with EtcdClient(etcd.endpoints) as client:
                    revision = (await client.range("/", count_only=True)).revision
                    await client.call("/v3/kv/compaction", {"revision": str(revision)})
                relay.resume()
                await async_wait_until(
                    lambda: sees(behind, "during"),
                    timeout=20,
                    what="the relayed server to catch up after compaction",
                )
                assert not await sees(behind, "before")
        finally:
            behind.stop()
            direct.stop()
            nursery.cancel_scope.cancel()
    assert "re-reading the registry" in behind.log()


class _StallProbe:
    """The longest time the trio loop went without waking a task that sleeps 1 ms."""

    def __init__(self) -> None:
        self.longest = 0.0

    async def run(self) -> None:
        while True:
            before = trio.current_time()
            await trio.sleep(0.001)
            self.longest = max(self.longest, trio.current_time() - before - 0.001)


def _records(keys, n: int, generation: int) -> list:
    from registry._model import Check, Instance, Status, encode_check, encode_instance
    from registry.etcd import Put

    ops = []
    for i in range(n):
        inst = Instance(
            service=f"svc{i % 50}", id=f"i{i}", node=f"n{i % 100}", meta={"gen": str(generation)}
        )
        check = Check(
            id=f"c{i}",
            node=inst.node,
            service=inst.service,
            instance=inst.id,
            status=Status.PASSING,
        )
        ops.append(Put(keys.instance(inst.service, inst.node, inst.id), encode_instance(inst)))
        ops.append(Put(keys.check(inst.service, inst.node, inst.id, check.id), encode_check(check)))
    return ops


async def _put_all(client: EtcdClient, ops: list) -> None:
    for i in range(0, len(ops), 100):
        await client.txn((), ops[i : i + 100])


async def test_resync_of_5000_instances_after_compaction_keeps_the_loop_answering(
    etcd, prefix
) -> None:
    from registry._fanout import Hub
    from registry._keys import Keys
    from registry._mirror import Mirror
    from registry._sync import MirrorSync

    keys = Keys(prefix)
    async with EtcdClient(etcd.endpoints, timeout=30) as client:
        await _put_all(client, _records(keys, 5000, 0))
        mirror = Mirror(keys)
        sync = MirrorSync(client, mirror, Hub())
        async with trio.open_nursery() as nursery:
            await nursery.start(sync.run)
            nursery.cancel_scope.cancel()  # the watch is gone, as in a partition
        await _put_all(client, _records(keys, 4000, 1))  # 1,000 stay as they were
        await client.delete(keys.instance("svc0", "n0", "i0"))
        revision = (await client.range("/", count_only=True)).revision
        await client.call("/v3/kv/compaction", {"revision": str(revision)})
        probe = _StallProbe()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(probe.run)
            with trio.fail_after(20):
                await sync._reload()
            await trio.sleep(0.01)  # the probe records the last stall
            nursery.cancel_scope.cancel()
        await client.delete(prefix, prefix=True)
    generations = [
        inst.meta["gen"] for insts in mirror.instances.values() for inst in insts.values()
    ]
    assert len(generations) == 4999
    assert generations.count("1") == 3999 and generations.count("0") == 1000
    assert mirror.revision >= revision
    # The bound: the health endpoint keeps answering within a second throughout.
    assert probe.longest < 1.0, f"the loop stalled {probe.longest:.2f}s during the resync"


async def test_recursive_delete_of_15000_kv_keys_is_applied_without_stalling(etcd, prefix) -> None:
    from registry._fanout import Hub
    from registry._keys import Keys
    from registry._mirror import Mirror
    from registry._sync import MirrorSync
    from registry.etcd import Put

    keys = Keys(prefix)
    async with EtcdClient(etcd.endpoints, timeout=30) as client:
        await _put_all(client, [Put(keys.kv(f"tree/{i:05d}"), b"v" * 32) for i in range(15000)])
        await client.put(keys.kv("other"), b"stays")
        mirror = Mirror(keys)
        probe = _StallProbe()
        async with trio.open_nursery() as nursery:
            await nursery.start(MirrorSync(client, mirror, Hub()).run)
            assert len(mirror.kv) == 15001
            nursery.start_soon(probe.run)
            _, revision = await client.delete(keys.kv("tree/"), prefix=True)
            with trio.fail_after(20):
                while mirror.revision < revision:
                    await trio.sleep(0.005)
            await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
        await client.delete(prefix, prefix=True)
    assert list(mirror.kv) == ["other"]
    assert mirror.kv_prefix_index("tree/") == revision
    assert probe.longest < 1.0, f"the loop stalled {probe.longest:.2f}s applying the delete"
