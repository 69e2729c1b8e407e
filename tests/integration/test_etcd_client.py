"""registry.etcd against a real etcd: KV, txns, leases, watches, fail-over, auth, TLS."""

from __future__ import annotations

import httpx
import pytest
import trio

from registry.etcd import (
    Compare,
    Delete,
    EtcdClient,
    EtcdCompacted,
    EtcdLeaseNotFound,
    EtcdUnavailable,
    Put,
    prefix_end,
)
from tests.harness import EtcdCluster, Relay, async_wait_until, free_port


def test_prefix_end_increments_last_byte() -> None:
    assert prefix_end("/weft/") == b"/weft0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") == b"\0"


async def test_put_get_range_delete(etcd_client: EtcdClient, prefix: str) -> None:
    rev1 = await etcd_client.put(prefix + "a", b"1")
    rev2 = await etcd_client.put(prefix + "b", b"2")
    await etcd_client.put(prefix + "bz/c", b"3")
    assert rev2 > rev1
    kv = await etcd_client.get(prefix + "a")
    assert kv is not None and kv.value == b"1" and kv.mod_revision == rev1
    assert await etcd_client.get(prefix + "missing") is None

    everything = await etcd_client.range(prefix, prefix=True)
    assert [kv.key for kv in everything.kvs] == [prefix + "a", prefix + "b", prefix + "bz/c"]
    assert everything.revision >= rev2

    deleted, _ = await etcd_client.delete(prefix + "b", prefix=True)
    assert deleted == 2
    left = await etcd_client.range(prefix, prefix=True)
    assert [kv.key for kv in left.kvs] == [prefix + "a"]


async def test_range_all_pages_at_one_revision(etcd_client: EtcdClient, prefix: str) -> None:
    await etcd_client.txn(success=[Put(f"{prefix}k{i:03d}", b"x") for i in range(120)])
    result = await etcd_client.range_all(prefix, page=25)
    assert len(result.kvs) == 120
    assert len({kv.key for kv in result.kvs}) == 120


async def test_txn_is_all_or_nothing(etcd_client: EtcdClient, prefix: str) -> None:
    first = await etcd_client.txn(
        compare=[Compare("version", prefix + "x", "=", 0)],
        success=[Put(prefix + "x", b"1"), Put(prefix + "y", b"1")],
    )
    assert first.succeeded
    second = await etcd_client.txn(
        compare=[Compare("version", prefix + "x", "=", 0)],
        success=[Put(prefix + "x", b"2"), Delete(prefix + "y")],
    )
    assert not second.succeeded
    x = await etcd_client.get(prefix + "x")
    y = await etcd_client.get(prefix + "y")
    assert x is not None and x.value == b"1"
    assert y is not None and y.value == b"1"


async def test_lease_expiry_removes_attached_keys(etcd_client: EtcdClient, prefix: str) -> None:
    lease = await etcd_client.lease_grant(2)
    await etcd_client.put(prefix + "owned", b"v", lease=lease)
    assert (await etcd_client.get(prefix + "owned")) is not None

    async def gone() -> bool:
        return await etcd_client.get(prefix + "owned") is None

    await async_wait_until(gone, timeout=6, what="leased key to expire")
    with pytest.raises(EtcdLeaseNotFound):
        await etcd_client.lease_keepalive(lease)


async def test_lease_keepalive_and_revoke(etcd_client: EtcdClient, prefix: str) -> None:
    async with etcd_client.lease(2) as lease:
        await etcd_client.put(prefix + "kept", b"v", lease=lease)
        with trio.fail_after(10):
            await trio.sleep(3)  # longer than the TTL: only the keepalive keeps the key
        assert (await etcd_client.get(prefix + "kept")) is not None
    assert await etcd_client.get(prefix + "kept") is None  # revoked on exit
    with pytest.raises(EtcdLeaseNotFound):
        await etcd_client.put(prefix + "late", b"v", lease=lease)


async def test_watch_delivers_puts_and_deletes_in_order(
    etcd_client: EtcdClient, prefix: str
) -> None:
    start = (await etcd_client.range(prefix, prefix=True)).revision + 1
    async with etcd_client.watch(prefix, start_revision=start, prev_kv=True) as events:
        await etcd_client.put(prefix + "a", b"1")
        await etcd_client.put(prefix + "a", b"2")
        await etcd_client.delete(prefix + "a")
        seen = []
        with trio.fail_after(5):
            async for batch in events:
                seen.extend(
                    (e.type, e.kv.value, e.prev_kv.value if e.prev_kv else None)
                    for e in batch.events
                )
                if len(seen) == 3:
                    break
    assert seen == [("PUT", b"1", None), ("PUT", b"2", b"1"), ("DELETE", b"", b"2")]


async def test_watch_resumes_after_broken_stream_without_losing_events(
    etcd: EtcdCluster, prefix: str
) -> None:
    relay = Relay("127.0.0.1", etcd.members[0].client_port)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(relay.serve)
        writer = EtcdClient(etcd.endpoints)
        watcher = EtcdClient([f"http://127.0.0.1:{port}"])
        start = (await writer.range(prefix, prefix=True)).revision + 1
        keys: list[str] = []
        async with watcher.watch(prefix, start_revision=start, liveness_interval=0.5) as events:
            await writer.put(prefix + "k0", b"0")
            with trio.fail_after(5):
                batch = await events.receive()
                keys.extend(e.kv.key for e in batch.events)
            assert relay.cut() >= 1
            for i in range(1, 6):  # written while the stream is down
                await writer.put(prefix + f"k{i}", b"x")
            with trio.fail_after(10):
                async for batch in events:
                    keys.extend(e.kv.key for e in batch.events)
                    if len(keys) >= 6:
                        break
        assert keys == [prefix + f"k{i}" for i in range(6)]
        assert relay.connections >= 2  # it really reconnected
        await writer.aclose()
        await watcher.aclose()
        nursery.cancel_scope.cancel()


async def test_watch_reports_compaction_clearly(etcd_client: EtcdClient, prefix: str) -> None:
    first = await etcd_client.put(prefix + "c", b"1")
    await etcd_client.put(prefix + "c", b"2")
    latest = await etcd_client.put(prefix + "c", b"3")
    await etcd_client.call("/v3/kv/compaction", {"revision": str(latest), "physical": True})
    with pytest.raises(EtcdCompacted) as info:
        async with etcd_client.watch(prefix, start_revision=first) as events:
            with trio.fail_after(5):
                await events.receive()
    assert info.value.compact_revision == latest
    assert "compacted" in str(info.value)


async def test_fails_over_from_a_dead_endpoint(etcd: EtcdCluster, prefix: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    async with EtcdClient([dead, *etcd.endpoints]) as client:
        await client.put(prefix + "f", b"1")
        assert (await client.get(prefix + "f")) is not None


async def test_all_endpoints_down_is_one_clear_error() -> None:
    dead = [f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"]
    async with EtcdClient(dead, timeout=1) as client:
        with pytest.raises(EtcdUnavailable) as info:
            await client.get("/x")
    for endpoint in dead:
        assert endpoint in str(info.value)


async def test_auth_token_is_obtained_and_used(tmp_path) -> None:
    cluster = EtcdCluster(tmp_path / "auth-etcd")
    cluster.start()
    try:
        async with httpx.AsyncClient(base_url=cluster.url) as http:
            for path, body in [
                ("/v3/auth/user/add", {"name": "root", "password": "rootpw"}),
                ("/v3/auth/user/grant", {"user": "root", "role": "root"}),
                ("/v3/auth/enable", {}),
            ]:
                (await http.post(path, json=body)).raise_for_status()
            anonymous = await http.post("/v3/kv/range", json={"key": "eA=="})
            assert anonymous.status_code != 200
        async with EtcdClient(cluster.endpoints, username="root", password="rootpw") as client:
            await client.put("/auth/k", b"v")
            kv = await client.get("/auth/k")
            assert kv is not None and kv.value == b"v"
        from registry.etcd import EtcdAuthError

        async with EtcdClient(cluster.endpoints, username="root", password="wrong") as client:
            with pytest.raises(EtcdAuthError, match="root"):
                await client.get("/auth/k")
    finally:
        cluster.stop()
