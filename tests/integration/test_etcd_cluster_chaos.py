"""A server on a three-member etcd cluster under steady registrations and blocking queries:
kill -9 one member, then the leader, then restart both. No acknowledged write is lost and
blocking queries keep waking whenever the cluster has a quorum."""

from __future__ import annotations

import json
import urllib.request

import httpx
import trio

from tests.harness import EtcdCluster, WeftServer, async_wait_until
from tests.harness._etcd import EtcdMember


def _status(member: EtcdMember) -> dict:
    request = urllib.request.Request(member.url + "/v3/maintenance/status", data=b"{}")
    with urllib.request.urlopen(request, timeout=2) as resp:
        return json.loads(resp.read())


def _leader(members: list[EtcdMember]) -> EtcdMember:
    for member in members:
        try:
            status = _status(member)
        except OSError:
            continue
        if status.get("leader") == status["header"]["member_id"]:
            return member
    raise AssertionError("no etcd member says it leads")


async def test_no_acknowledged_write_is_lost_when_members_and_the_leader_die(
    tmp_path, prefix
) -> None:
    cluster = EtcdCluster(tmp_path / "cluster", size=3)
    cluster.start()
    server = WeftServer(cluster.endpoints, prefix, tmp_path, args=("--staleness-bound", "3s"))
    acked: list[str] = []
    wakes: list[float] = []
    try:
        await trio.to_thread.run_sync(server.start)
        async with httpx.AsyncClient(headers=server.headers(), timeout=8) as http:

            async def register_steadily() -> None:
                i = 0
                while True:
                    iid = f"steady-{i}"
                    i += 1
                    try:
                        resp = await http.put(
                            server.url + "/v1/agent/service/register",
                            json={"Name": "steady", "ID": iid, "Port": 1000 + i % 50000},
                        )
                    except httpx.HTTPError:
                        continue
                    if resp.status_code == 200:
                        acked.append(iid)
                    else:
                        await trio.sleep(0.1)  # refused (no quorum): pace the retries
                    await trio.sleep(0.02)

            async def block_steadily() -> None:
                index = 0
                while True:
                    try:
                        resp = await http.get(
                            server.url + "/v1/health/service/steady",
                            params={"index": index, "wait": "3s"},
                        )
                    except httpx.HTTPError:
                        await trio.sleep(0.2)
                        continue
                    new = int(resp.headers.get("X-Consul-Index", 0))
                    if resp.status_code == 200 and new > index:
                        index = new
                        wakes.append(trio.current_time())

            async def progress_since(mark: float, what: str) -> None:
                done = len(acked)

                async def moving() -> bool:
                    return len(acked) >= done + 20 and sum(w > mark for w in wakes) >= 3

                await async_wait_until(moving, timeout=25, interval=0.1, what=what)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(register_steadily)
                nursery.start_soon(block_steadily)
                await progress_since(trio.current_time(), "registrations on a healthy cluster")

                follower = next(m for m in cluster.members if m is not _leader(cluster.members))
                follower.kill()
                await progress_since(trio.current_time(), "progress with one member dead")

                live = [m for m in cluster.members if m is not follower]
                leader = await trio.to_thread.run_sync(_leader, live)
                leader.kill()  # now no quorum: writes are refused, none may be acknowledged

                async def says_unhealthy() -> bool:
                    resp = await http.get(server.url + "/v1/weft/health")
                    return resp.status_code == 503

                await async_wait_until(says_unhealthy, timeout=20, what="503 without quorum")

                for member in (follower, leader):
                    await trio.to_thread.run_sync(cluster.restart_member, member)
                await progress_since(trio.current_time(), "progress after both restarted")
                nursery.cancel_scope.cancel()

            # Every acknowledged registration is in the catalog, and in etcd itself.
            async def all_there() -> bool:
                resp = await http.get(server.url + "/v1/catalog/service/steady")
                return {e["ServiceID"] for e in resp.json()} >= set(acked)

            await async_wait_until(all_there, timeout=15, what="every acknowledged write")
        from registry.etcd import EtcdClient

        async with EtcdClient(cluster.endpoints) as client:
            stored = await client.range_all(prefix + "services/steady/")
            ids = {kv.key.rsplit("/", 1)[-1] for kv in stored.kvs}
            lost = set(acked) - ids
            assert not lost, f"{len(lost)} acknowledged registrations lost: {sorted(lost)[:5]}"
        assert len(acked) >= 60
    finally:
        server.stop()
        cluster.stop()
