"""Instances that outlive (or don't outlive) their owners, servers, and checks."""

from __future__ import annotations

import sys
import time

import httpx

from registry.etcd import EtcdClient
from tests.harness import WeftServer, spawn, wait_until


def passing_ids(server: WeftServer, service: str) -> list[str]:
    resp = httpx.get(
        f"{server.url}/v1/health/service/{service}",
        headers=server.headers(),
        params={"passing": ""},
    )
    resp.raise_for_status()
    return sorted(e["Service"]["ID"] for e in resp.json())


def all_ids(server: WeftServer, service: str) -> list[str]:
    resp = httpx.get(f"{server.url}/v1/health/service/{service}", headers=server.headers())
    resp.raise_for_status()
    return sorted(e["Service"]["ID"] for e in resp.json())


def test_two_servers_share_registrations_and_wake_each_others_waiters(start_server) -> None:
    one = start_server()
    two = start_server()
    two.token = one.token  # the token lives in etcd, so it works on both
    httpx.put(
        f"{one.url}/v1/agent/service/register",
        headers=one.headers(),
        json={"Name": "shared", "ID": "shared-1", "Port": 80},
    ).raise_for_status()
    wait_until(
        lambda: all_ids(two, "shared") == ["shared-1"],
        timeout=5,
        what="server two to see server one's registration",
    )

    index = int(
        httpx.get(f"{two.url}/v1/catalog/services", headers=two.headers()).headers["X-Consul-Index"]
    )
    with httpx.Client(timeout=40) as waiter_http:
        import threading

        result: dict[str, object] = {}

        def wait_on_two() -> None:
            started = time.monotonic()
            resp = waiter_http.get(
                f"{two.url}/v1/catalog/services",
                headers=two.headers(),
                params={"index": index, "wait": "30s"},
            )
            result["elapsed"] = time.monotonic() - started
            result["services"] = resp.json()
            result["index"] = int(resp.headers["X-Consul-Index"])

        thread = threading.Thread(target=wait_on_two)
        thread.start()
        wait_until(
            lambda: httpx.get(f"{two.url}/v1/weft/health").json()["blocking_queries"],
            timeout=10,
            what="the query to block on server two",
        )
        httpx.put(
            f"{one.url}/v1/agent/service/register",
            headers=one.headers(),
            json={"Name": "later", "Port": 81},
        ).raise_for_status()
        thread.join(timeout=35)
    assert "later" in result["services"]  # type: ignore[operator]
    assert result["index"] > index  # type: ignore[operator]
    assert result["elapsed"] < 10  # type: ignore[operator]


def test_killed_lease_owner_takes_its_instances_along(server: WeftServer, tmp_path) -> None:
    ready = tmp_path / "lease-ready"
    owner = spawn(
        [
            sys.executable,
            "-m",
            "tests.harness.lease_client",
            server.url,
            server.token or "",
            "ephemeral",
            "3",
            "10",
            str(ready),
        ],
        log_path=tmp_path / "lease-client.log",
    )
    try:
        wait_until(
            lambda: ready.exists() and ready.read_text(),
            timeout=15,
            what="the lease client to register",
        )
        assert all_ids(server, "ephemeral") == ["ephemeral-0", "ephemeral-1", "ephemeral-2"]
        assert owner.alive()
        owner.kill()
        killed_at = time.monotonic()
        wait_until(
            lambda: all_ids(server, "ephemeral") == [],
            timeout=15,
            interval=0.1,
            what="the dead owner's instances to leave the catalog",
        )
        assert time.monotonic() - killed_at <= 10 + 2
    finally:
        owner.stop()


def test_lease_keepalive_keeps_instances_past_the_ttl(server: WeftServer) -> None:
    import trio

    from registry.client import RegistryClient

    async def scenario() -> None:
        async with RegistryClient(server.url, token=server.token) as client:
            lease = await client.grant_lease(5)
            await client.register(
                {"service": "kept", "id": "kept-1", "port": 1, "node": "n1", "lease": lease}
            )
            deadline = trio.current_time() + 8  # well past the 5 s TTL
            while trio.current_time() < deadline:
                await client.keepalive(lease)
                await trio.sleep(1)
            instances, _ = await client.service("kept")
            assert [i["id"] for i in instances] == ["kept-1"]
            assert instances[0]["lease"] == lease
            await client.revoke(lease)
            instances, _ = await client.service("kept")
            assert instances == []

    trio.run(scenario)


def test_ttl_check_turns_critical_then_service_is_deregistered(server: WeftServer) -> None:
    httpx.put(
        f"{server.url}/v1/agent/service/register",
        headers=server.headers(),
        json={
            "Name": "cron",
            "ID": "cron-1",
            "Port": 1,
            "Check": {"TTL": "2s", "Status": "passing", "DeregisterCriticalServiceAfter": "3s"},
        },
    ).raise_for_status()
    assert passing_ids(server, "cron") == ["cron-1"]
    started = time.monotonic()
    wait_until(
        lambda: passing_ids(server, "cron") == [], timeout=10, what="the TTL check to expire"
    )
    critical_after = time.monotonic() - started
    assert 1.5 <= critical_after <= 5
    check = httpx.get(f"{server.url}/v1/health/service/cron", headers=server.headers()).json()[0][
        "Checks"
    ][0]
    assert check["Status"] == "critical"
    assert check["Output"] == "TTL expired"
    wait_until(
        lambda: all_ids(server, "cron") == [],
        timeout=10,
        what="DeregisterCriticalServiceAfter to remove the service",
    )
    assert time.monotonic() - started >= 2 + 3 - 0.5


async def test_server_kill_9_loses_nothing_acknowledged(start_server, etcd, prefix) -> None:
    server = start_server()
    acknowledged = []
    async with httpx.AsyncClient(headers=server.headers()) as http:
        for i in range(50):
            resp = await http.put(
                f"{server.url}/v1/agent/service/register",
                json={"Name": "durable", "ID": f"d-{i}", "Port": 1000 + i},
            )
            if resp.status_code == 200:
                acknowledged.append(f"d-{i}")
            resp = await http.put(f"{server.url}/v1/kv/durable/{i}", content=f"v{i}".encode())
            assert resp.json() is True
    server.kill()
    server.start()
    async with httpx.AsyncClient(headers=server.headers()) as http:
        entries = (await http.get(f"{server.url}/v1/health/service/durable")).json()
        assert sorted(e["Service"]["ID"] for e in entries) == sorted(acknowledged)
        keys = (await http.get(f"{server.url}/v1/kv/durable/", params={"keys": ""})).json()
        assert len(keys) == 50
    # And it is in etcd itself, not only in some server's memory.
    async with EtcdClient(etcd.endpoints) as client:
        stored = await client.range(prefix + "services/durable/", prefix=True)
        assert len(stored.kvs) == len(acknowledged) == 50
