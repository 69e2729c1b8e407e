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
