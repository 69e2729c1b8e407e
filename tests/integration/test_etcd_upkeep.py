"""The leader compacts etcd's history; every server's health warns as etcd nears its quota."""

from __future__ import annotations

import httpx
import pytest

from registry.etcd import EtcdClient, EtcdRequestError, Put
from tests.harness import EtcdCluster, WeftServer, async_wait_until


async def test_the_leader_compacts_history_older_than_the_retention(
    etcd, start_server, prefix
) -> None:
    start_server("--compaction-retention", "1s", "--compaction-interval", "0.2s")
    async with EtcdClient(etcd.endpoints) as client:
        old = await client.put(prefix + "kv/probe", b"1")
        await client.put(prefix + "kv/probe", b"2")

        async def old_revision_gone() -> bool:
            try:
                await client.range(prefix + "kv/probe", revision=old)
            except EtcdRequestError as exc:
                return "compacted" in exc.message
            return False

        await async_wait_until(old_revision_gone, timeout=15, what="etcd compacted to `old`")
        # The latest value is untouched.
        assert (await client.get(prefix + "kv/probe")).value == b"2"


async def test_health_warns_at_70_percent_of_the_etcd_quota(tmp_path, prefix) -> None:
    quota = 4 * 1024 * 1024
    cluster = EtcdCluster(tmp_path / "etcd", extra_args=("--quota-backend-bytes", str(quota)))
    cluster.start()
    server = WeftServer(
        cluster.endpoints,
        prefix,
        tmp_path,
        args=("--etcd-quota-bytes", str(quota), "--etcd-status-interval", "0.2s"),
    )
    try:
        server.start()
        async with httpx.AsyncClient() as http, EtcdClient(cluster.endpoints) as client:
            health = (await http.get(server.url + "/v1/weft/health")).json()
            assert health["etcd"]["quota_bytes"] == quota
            assert health["warnings"] == []
            for i in range(36):  # ~3.2 MB: past 70 % of 4 MiB, short of the quota
                await client.txn((), [Put(f"/filler/{i}", b"\0" * 90_000)])

            async def warned() -> dict | None:
                resp = await http.get(server.url + "/v1/weft/health")
                body = resp.json()
                return body if body["warnings"] else None

            body = await async_wait_until(warned, timeout=15, what="a quota warning")
            assert body["status"] == "ok"  # a warning, not an outage
            assert body["etcd"]["db_size_bytes"] >= 0.7 * quota
            assert "quota" in body["warnings"][0] and "defragment" in body["warnings"][0]
    finally:
        server.stop()
        cluster.stop()


@pytest.mark.parametrize("flag", ["--compaction-retention=-1s", "--etcd-quota-bytes=-5"])
def test_bad_upkeep_settings_are_refused(flag) -> None:
    import subprocess

    from tests.harness._procs import weft_command

    proc = subprocess.run([*weft_command(), "server", flag], capture_output=True, timeout=30)
    assert proc.returncode == 64
    assert flag.split("=")[0].lstrip("-").replace("-", "_").encode() in proc.stderr
