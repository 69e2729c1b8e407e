"""py-consul (the maintained Python Consul client) against a real `weft server` and etcd."""

from __future__ import annotations

import threading
import time
from urllib.parse import urlsplit

import consul
import pytest

from tests.harness import WeftServer, wait_until


def consul_client(server: WeftServer, token: str | None = None) -> consul.Consul:
    url = urlsplit(server.url)
    return consul.Consul(host=url.hostname, port=url.port, token=token or server.token)


def test_register_ttl_pass_and_read_passing(server: WeftServer) -> None:
    c = consul_client(server)
    c.agent.service.register(
        "billing",
        service_id="billing-1",
        port=9000,
        tags=["v2"],
        check=consul.Check.ttl("30s"),
    )
    _, entries = c.health.service("billing", passing=True)
    assert entries == []  # a TTL check starts critical, as in Consul

    c.agent.check.ttl_pass("service:billing-1", notes="warmed up")
    index, entries = c.health.service("billing", passing=True)
    assert int(index) >= 1  # py-consul hands the header back as a string
    assert [e["Service"]["ID"] for e in entries] == ["billing-1"]
    entry = entries[0]
    assert entry["Service"]["Port"] == 9000
    assert entry["Service"]["Tags"] == ["v2"]
    assert entry["Checks"][0]["Status"] == "passing"
    assert entry["Checks"][0]["Output"] == "warmed up"
    assert entry["Node"]["Address"]  # Prometheus falls back to the node's address

    services = c.agent.services()
    assert services["billing-1"]["Service"] == "billing"
    assert c.agent.self()["Config"]["Datacenter"] == "dc1"


def test_blocking_catalog_query_wakes_on_new_registration(server: WeftServer) -> None:
    c = consul_client(server)
    c.agent.service.register("first", port=1000)
    index, services = c.catalog.services()
    assert "first" in services

    woke: dict[str, object] = {}

    def block() -> None:
        started = time.monotonic()
        woke["result"] = c.catalog.services(index=index, wait="30s")
        woke["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=block)
    thread.start()
    try:
        # The query must really be parked on the server before the write.
        wait_until(lambda: _waiting(server) >= 1, timeout=10, what="the blocking query")
        c.agent.service.register("second", port=2000)
        thread.join(timeout=15)
    finally:
        thread.join(timeout=40)
    new_index, new_services = woke["result"]  # type: ignore[misc]
    assert "second" in new_services
    assert int(new_index) > int(index)
    assert woke["seconds"] < 10  # woken by the change, not by the 30 s wait


def test_blocking_query_returns_same_index_at_wait_end(server: WeftServer) -> None:
    c = consul_client(server)
    c.agent.service.register("quiet", port=1000)
    index, _ = c.catalog.services()
    started = time.monotonic()
    again, _ = c.catalog.services(index=index, wait="1s")
    elapsed = time.monotonic() - started
    assert again == index
    assert 1.0 <= elapsed < 1.0 + 1 / 16 + 1.5  # wait plus at most wait/16 jitter


def test_kv_round_trip_through_consul_client(server: WeftServer) -> None:
    c = consul_client(server)
    assert c.kv.put("config/db/url", "postgres://db") is True
    index, entry = c.kv.get("config/db/url")
    assert entry["Value"] == b"postgres://db"
    assert int(index) == entry["ModifyIndex"]
    _, missing = c.kv.get("config/nope")
    assert missing is None
    assert c.kv.put("config/db/url", "x", cas=0) is False  # exists already
    assert c.kv.put("config/db/url", "y", cas=entry["ModifyIndex"]) is True
    _, keys = c.kv.get("config/", keys=True)
    assert keys == ["config/db/url"]
    c.kv.delete("config/", recurse=True)
    _, gone = c.kv.get("config/db/url")
    assert gone is None


def test_deregister_removes_service_and_checks(server: WeftServer) -> None:
    c = consul_client(server)
    c.agent.service.register("temp", service_id="temp-1", port=1, check=consul.Check.ttl("9s"))
    assert "service:temp-1" in c.agent.checks()
    c.agent.service.deregister("temp-1")
    assert "temp-1" not in c.agent.services()
    assert "service:temp-1" not in c.agent.checks()
    _, entries = c.health.service("temp")
    assert entries == []


def test_wrong_token_is_refused(server: WeftServer) -> None:
    c = consul_client(server, token="weft_not-a-real-token")
    with pytest.raises(consul.ACLPermissionDenied):
        c.agent.service.register("nope", port=1)


def _waiting(server: WeftServer) -> int:
    import httpx

    return httpx.get(server.url + "/v1/weft/health").json()["blocking_queries"]
