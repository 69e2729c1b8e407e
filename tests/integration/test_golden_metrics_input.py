"""`/v1/metrics/*` against hostile input: a bad window is a 400 naming `window`; an agent
pushing garbage gets a 400 naming the field (413 when too big, 429 when too often), and
nothing it sends grows etcd or stops the server from answering."""

from __future__ import annotations

import json

import httpx
import pytest

from registry.etcd import EtcdClient
from tests.harness import WeftServer, wait_until

pytestmark = pytest.mark.timeout(60)

LE = [0.001, 0.01, 0.1, 1.0]


def proxy(**changes: object) -> dict:
    doc = {
        "service": "api",
        "instance": "api-1",
        "started": 1000.0,
        "le": LE,
        "http": [["inbound", "web", "default", "2xx", 1.5, [1, 5, 9, 10, 10]]],
        "open": [["inbound", 2]],
        "peer_ids": [["inbound", "web", "spiffe://mesh.test/ns/default/svc/web"]],
    }
    doc.update(changes)
    return doc


SERVER_ARGS = (
    "--metrics-min-interval",
    "0.5s",
    "--metrics-resolution",
    "10s",
    "--metrics-sample-bytes",
    "4096",
)


@pytest.fixture
def started(start_server):
    return start_server(*SERVER_ARGS)


def agent_token(server: WeftServer, node: str) -> dict[str, str]:
    resp = httpx.post(
        server.url + "/v1/tokens", json={"role": "agent", "node": node}, headers=server.headers()
    )
    resp.raise_for_status()
    return {"X-Consul-Token": resp.json()["secret"]}


def lease_of(server: WeftServer, headers: dict[str, str]) -> str:
    resp = httpx.post(server.url + "/v1/registry/leases", json={"ttl": 30}, headers=headers)
    resp.raise_for_status()
    return resp.json()["id"]


def test_a_bad_window_is_a_400_naming_the_window(started: WeftServer) -> None:
    for window in ("NaN", "0", "10h", "garbage", "-1s", "1e999", "5s", "inf", ""):
        for view in ("stat?", "edges?", "routes?service=api&"):
            resp = httpx.get(
                f"{started.url}/v1/metrics/{view}window={window or '%00'}",
                headers=started.headers(),
            )
            assert resp.status_code == 400, (view, window, resp.text)
            assert resp.json()["error"]["field"] == "window"
    ok = httpx.get(f"{started.url}/v1/metrics/stat?window=10s", headers=started.headers())
    assert ok.status_code == 200 and ok.json()["rows"] == []


def test_other_bad_parameters_name_their_field(started: WeftServer) -> None:
    paths = httpx.get(started.url + "/v1/openapi.json").json()["paths"]
    for view in ("stat", "edges", "routes", "proxies", "targets", "push"):
        assert f"/v1/metrics/{view}" in paths  # declared, so documented
    assert any(p["name"] == "window" for p in paths["/v1/metrics/stat"]["get"]["parameters"])
    for query, field in (
        ("stat?by=pod", "by"),
        ("stat?service=Not%20A%20Name", "service"),
        ("stat?to=..", "to"),
        ("routes", "service"),
    ):
        resp = httpx.get(f"{started.url}/v1/metrics/{query}", headers=started.headers())
        assert resp.status_code == 400, (query, resp.text)
        assert resp.json()["error"]["field"] == field


async def test_garbage_pushes_are_refused_by_field_and_store_nothing(
    started: WeftServer, etcd_client: EtcdClient, prefix: str, start_server
) -> None:
    headers = agent_token(started, "vm-x")
    lease = lease_of(started, headers)
    url = started.url + "/v1/metrics/push"

    async def keys() -> list[str]:
        result = await etcd_client.range(f"{prefix}metrics/", prefix=True)
        return sorted(kv.key[len(prefix) :] for kv in result.kvs)

    garbage: list[tuple[object, str]] = [
        ({"lease": lease}, "proxies"),
        ({"lease": "zz", "proxies": []}, "lease"),
        ({"lease": lease, "proxies": [], "extra": 1}, "extra"),
        ({"lease": lease, "proxies": "x"}, "proxies"),
        ({"lease": lease, "proxies": [proxy()] * 65}, "proxies"),
        ({"lease": lease, "proxies": [proxy(), proxy()]}, "proxies[1].instance"),
        ({"lease": lease, "proxies": [proxy(service="Bad Name")]}, "proxies[0].service"),
        ({"lease": lease, "proxies": [proxy(le=[0.1, 0.01])]}, "proxies[0].le"),
        ({"lease": lease, "proxies": [proxy(le=[0.1] * 40)]}, "proxies[0].le"),
        ({"lease": lease, "proxies": [proxy(started=-1)]}, "proxies[0].started"),
        ({"lease": lease, "proxies": [proxy(admin="a b")]}, "proxies[0].admin"),
        ({"lease": lease, "proxies": [proxy(extra=1)]}, "proxies[0].extra"),
        (
            {"lease": lease, "proxies": [proxy(http=[["sideways", "w", "d", "2xx", 0, [0] * 5]])]},
            "proxies[0].http[0][0]",
        ),
        (
            {
                "lease": lease,
                "proxies": [proxy(http=[["inbound", "w", "d", "2xx", 0, [3, 2, 2, 2, 2]]])],
            },
            "proxies[0].http[0][5]",
        ),
        (
            {"lease": lease, "proxies": [proxy(http=[["inbound", "w", "d", "2xx", 0, [-1] * 5]])]},
            "proxies[0].http[0][5][0]",
        ),
        (
            {"lease": lease, "proxies": [proxy(http=[["inbound", "w", "d", "2xx", 0, [1, 2]]])]},
            "proxies[0].http[0][5]",
        ),
        (
            {"lease": lease, "proxies": [proxy(http=[["inbound", "w", "d", "9xx", 0, [0] * 5]])]},
            "proxies[0].http[0][3]",
        ),
        (
            {
                "lease": lease,
                "proxies": [proxy(http=[["inbound", "w" * 200, "d", "2xx", 0, [0] * 5]])],
            },
            "proxies[0].http[0][1]",
        ),
        (
            {"lease": lease, "proxies": [proxy(peer_ids=[["inbound", "web", "spiffe://x/evil"]])]},
            "proxies[0].peer_ids[0][2]",
        ),
        (
            {
                "lease": lease,
                "proxies": [proxy(http=[["inbound", "w", "d", "2xx", 10**30, [0] * 5]])],
            },
            "proxies[0].http[0][4]",
        ),
    ]
    for body, field in garbage:
        resp = httpx.post(url, content=json.dumps(body), headers=headers)
        assert resp.status_code == 400, (field, resp.text)
        assert resp.json()["error"]["field"] == field, (field, resp.text)
    for raw in (b"{", b'{"lease": NaN}', b"[]", b'"x"'):
        resp = httpx.post(url, content=raw, headers=headers)
        assert resp.status_code == 400, (raw, resp.text)
    # Over metrics_sample_bytes (4 KiB here): 413, naming what to shrink.
    many = [["inbound", f"peer{i}", "default", "2xx", 1.0, [1, 1, 1, 1, 1]] for i in range(200)]
    resp = httpx.post(url, json={"lease": lease, "proxies": [proxy(http=many)]}, headers=headers)
    assert resp.status_code == 413 and resp.json()["error"]["field"] == "proxies", resp.text
    # Only an agent token, and only with its own node's lease.
    other = agent_token(started, "vm-y")
    resp = httpx.post(url, json={"lease": lease, "proxies": [proxy()]}, headers=other)
    assert resp.status_code == 403 and "lease" in resp.json()["error"]["message"]
    resp = httpx.post(url, json={"lease": lease, "proxies": []}, headers=started.headers())
    assert resp.status_code == 403
    assert await keys() == []

    # A good push lands in its two slots; pushing again and again overwrites them (429 when
    # sooner than the server's minimum interval) rather than growing anything.
    resp = httpx.post(url, json={"lease": lease, "proxies": [proxy()]}, headers=headers)
    assert resp.status_code == 200, resp.text
    first = await keys()
    assert len(first) == 2 and all(k.startswith("metrics/vm-x/") for k in first)
    resp = httpx.post(url, json={"lease": lease, "proxies": [proxy()]}, headers=headers)
    assert resp.status_code == 429 and int(resp.headers["Retry-After"]) >= 1
    assert await keys() == first
    stored = await etcd_client.range(f"{prefix}metrics/", prefix=True)
    assert all(len(kv.value) <= 4096 for kv in stored.kvs)
    health = httpx.get(started.url + "/v1/weft/health")
    assert health.status_code == 200

    # Every server answers the same: a second one reads the samples the first stored.
    second = start_server(*SERVER_ARGS)
    grown = proxy(http=[["inbound", "web", "default", "2xx", 3.0, [2, 10, 18, 20, 20]]])
    wait_until(
        lambda: (
            httpx.post(url, json={"lease": lease, "proxies": [grown]}, headers=headers).status_code
            == 200
        ),
        timeout=5,
        what="the minimum interval to pass",
    )

    def rows(server: WeftServer) -> list:
        resp = httpx.get(server.url + "/v1/metrics/stat?window=10s", headers=started.headers())
        return resp.json()["rows"]

    wait_until(lambda: rows(second) == rows(started) != [], timeout=10, what="the same rows")
    [row] = rows(second)
    assert row["service"] == "api" and row["requests"] == 10 and row["success_rate"] == 1.0
    views = {
        view: httpx.get(
            f"{second.url}/v1/metrics/{view}&window=10s", headers=started.headers()
        ).json()["rows"]
        for view in ("stat?by=instance", "edges?service=web")
    }
    assert [(r["service"], r["instance"]) for r in views["stat?by=instance"]] == [("api", "api-1")]
    [edge] = views["edges?service=web"]
    assert (edge["from"], edge["to"], edge["client_id"]) == (
        "web",
        "api",
        "spiffe://mesh.test/ns/default/svc/web",
    )
    # The samples are on the agent's lease: revoking it takes them away.
    httpx.delete(started.url + f"/v1/registry/leases/{lease}", headers=headers).raise_for_status()
    assert await keys() == []
