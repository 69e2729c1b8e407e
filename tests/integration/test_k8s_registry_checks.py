"""The registry contract the Kubernetes adapter relies on: adapter-run checks and batches."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.harness import WeftServer, wait_until

pytestmark = pytest.mark.timeout(60)


def _adapter_token(server: WeftServer, source: str) -> str:
    resp = httpx.post(
        f"{server.url}/v1/tokens",
        headers=server.headers(),
        json={"role": "adapter", "source": source},
    )
    resp.raise_for_status()
    return resp.json()["secret"]


def _upsert(server: WeftServer, token: str, status: str) -> dict:
    body = {
        "upserts": [
            {
                "service": "web-prod",
                "id": "c1:prod:web-1:8080",
                "node": "worker-1",
                "address": "10.0.0.1",
                "port": 8080,
                "source": "k8s/c1",
                "checks": [{"name": "Kubernetes readiness", "ttl": "1s", "status": status}],
            }
        ],
        "deletes": [],
    }
    resp = httpx.post(
        f"{server.url}/v1/registry/batch", headers={"X-Consul-Token": token}, json=body
    )
    resp.raise_for_status()
    return resp.json()


def _check(server: WeftServer) -> dict:
    resp = httpx.get(f"{server.url}/v1/registry/services/web-prod", headers=server.headers())
    resp.raise_for_status()
    (instance,) = resp.json()["instances"]
    (check,) = instance["checks"]
    return check


def test_adapter_check_status_follows_every_upsert_and_never_expires(start_server) -> None:
    server = start_server("--reap-interval", "0.1s")
    token = _adapter_token(server, "k8s/c1")
    assert _upsert(server, token, "passing")["transactions"] >= 1
    check = _check(server)
    assert (check["runner"], check["status"]) == ("adapter", "passing")
    # Server-run TTL checks of 1 s would be critical by now; the adapter's are not the
    # server's to expire (the adapter reports readiness, it does not heartbeat).
    started = time.monotonic()
    while time.monotonic() - started < 2.0:
        assert _check(server)["status"] == "passing"
        time.sleep(0.2)

    _upsert(server, token, "critical")
    assert _check(server)["status"] == "critical"
    since = _check(server)["status_since"]
    _upsert(server, token, "critical")  # an unchanged status keeps its history
    assert _check(server)["status_since"] == since
    _upsert(server, token, "passing")
    wait_until(
        lambda: _check(server)["status"] == "passing",
        timeout=5,
        what="the adapter's passing status to replace critical",
    )


def test_adapter_token_may_not_touch_another_source(server: WeftServer) -> None:
    token = _adapter_token(server, "k8s/other")
    body = {
        "upserts": [{"service": "web-prod", "id": "x", "node": "n", "port": 1, "source": "k8s/c1"}],
        "deletes": [],
    }
    resp = httpx.post(
        f"{server.url}/v1/registry/batch", headers={"X-Consul-Token": token}, json=body
    )
    assert resp.status_code == 403
    assert "k8s/other" in resp.json()["error"]["message"]


async def test_concurrent_batches_each_report_their_own_transactions(
    server: WeftServer,
) -> None:
    import trio

    token = _adapter_token(server, "k8s/c1")

    def upserts(group: str) -> list[dict]:
        return [
            {
                "service": f"svc-{group}",
                "id": f"{group}-{i}",
                "node": "n1",
                "port": 80,
                "address": "10.0.0.1",
                "source": "k8s/c1",
                "checks": [{"name": "Kubernetes readiness", "ttl": "1h", "status": "passing"}],
            }
            for i in range(300)
        ]

    answers: dict[str, int] = {}
    async with httpx.AsyncClient(headers={"X-Consul-Token": token}, timeout=30) as http:

        async def send(group: str) -> None:
            resp = await http.post(
                f"{server.url}/v1/registry/batch", json={"upserts": upserts(group), "deletes": []}
            )
            resp.raise_for_status()
            answers[group] = resp.json()["transactions"]

        async with trio.open_nursery() as nursery:
            for group in "ab":
                nursery.start_soon(send, group)
    # 300 instances x 2 keys in transactions of at most 120 operations: 5 each, not 10.
    assert answers == {"a": 5, "b": 5}
