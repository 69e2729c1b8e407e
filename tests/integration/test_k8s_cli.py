"""`weft k8s-adapter` as a command: bad configuration exits 64 naming the field, a token of
the wrong kind is refused, --purge removes one cluster's entries only, and in-cluster
service-account credentials (HTTPS, token file, pod namespace) work."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest
import trio
from k8s_adapter import Adapter, AdapterSettings

from tests.harness import (
    Adapters,
    FakeKube,
    K8sAdapter,
    WeftServer,
    adapter_token,
    async_wait_until,
    wait_until,
)
from tests.harness._procs import weft_command

pytestmark = pytest.mark.timeout(90)


def weft(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*weft_command(), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_bad_configuration_exits_64_naming_the_field(tmp_path: Path) -> None:
    result = weft("k8s-adapter")
    assert result.returncode == 64 and "cluster" in result.stderr
    result = weft("k8s-adapter", "--cluster", "c1", "--batch-size", "lots")
    assert result.returncode == 64 and "batch_size (from --batch-size)" in result.stderr
    config = tmp_path / "adapter.toml"
    config.write_text('cluster = "c1"\nlease_duration = "2s"\nrenew_deadline = "5s"\n')
    result = weft("k8s-adapter", "-c", str(config))
    assert result.returncode == 64 and "lease_duration" in result.stderr
    result = weft(
        "k8s-adapter",
        env={"WEFT_K8S_CLUSTER": "c1", "WEFT_K8S_KUBECONFIG": str(tmp_path / "missing")},
    )
    assert result.returncode == 64 and "kubeconfig" in result.stderr


def test_a_token_of_the_wrong_kind_is_refused_before_any_write(
    fake: FakeKube, server: WeftServer, tmp_path: Path
) -> None:
    fake.add_service("shop", "web", replicas=1)
    other = adapter_token(server.url, server.token or "", "c2")
    for token, words in (
        (server.token or "", "operator token"),
        (other, "bound to source 'k8s/c2'"),
    ):
        adapter = K8sAdapter(fake, server.url, token, tmp_path, identity=f"wrong-{len(words)}")
        adapter.start()
        wait_until(
            lambda adapter=adapter: not adapter.proc.alive(),
            timeout=20,
            what="the adapter to give up",
        )
        assert adapter.proc.popen.returncode == 64
        assert "registry_token" in adapter.log() and words in adapter.log()
        assert "k8s/c1" in adapter.log()
    assert httpx.get(f"{server.url}/v1/registry/instances", headers=server.headers()).json() == []


def test_purge_removes_this_clusters_entries_and_nothing_else(
    fake: FakeKube, server: WeftServer, adapters: Adapters
) -> None:
    fake.add_service("shop", "web", replicas=3)
    agent = httpx.post(
        f"{server.url}/v1/tokens", headers=server.headers(), json={"role": "agent", "node": "vm-1"}
    ).json()["secret"]
    httpx.put(
        f"{server.url}/v1/registry/instances",
        headers={"X-Consul-Token": agent},
        json={"service": "web-shop", "id": "vm-web", "port": 80},
    ).raise_for_status()
    mine = adapters.start()
    other = adapters.start(cluster="c2", identity="other-cluster")
    mine.wait_in_sync()
    other.wait_in_sync()
    mine.stop()

    def sources() -> list[str]:
        views = httpx.get(f"{server.url}/v1/registry/instances", headers=server.headers()).json()
        return sorted(v["source"] for v in views)

    assert sources() == ["agent", *["k8s/c1"] * 3, *["k8s/c2"] * 3]
    token = adapter_token(server.url, server.token or "", "c1")
    result = weft(
        "k8s-adapter",
        "--cluster",
        "c1",
        "--registry",
        server.url,
        "--purge",
        env={"WEFT_K8S_REGISTRY_TOKEN": token},
    )
    assert result.returncode == 0, result.stderr
    assert "removed 3 instances of source k8s/c1" in result.stdout
    assert sources() == ["agent", *["k8s/c2"] * 3]


async def test_in_cluster_service_account_over_https(server: WeftServer, tmp_path: Path) -> None:
    with FakeKube(tls=True) as fake:
        fake.add_service("shop", "web", replicas=2)
        fake.ensure_namespace("weft-system")
        sa = fake.write_service_account(tmp_path / "serviceaccount", namespace="weft-system")
        port = fake.url.rsplit(":", 1)[1]
        settings = AdapterSettings(
            cluster="c1",
            registry=(server.url,),
            health_listen="127.0.0.1:0",
            registry_token=adapter_token(server.url, server.token or "", "c1"),
            lease_duration=3.0,
            renew_deadline=2.0,
            retry_period=0.4,
            coalesce=0.02,
        )
        settings.validate()
        adapter = Adapter(
            settings,
            service_account_dir=sa,
            environ={"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": port},
        )
        assert adapter.creds.server == fake.url and adapter.creds.description.startswith(
            "in-cluster"
        )
        async with httpx.AsyncClient(headers=server.headers()) as http, trio.open_nursery() as n:
            await n.start(adapter.run)

            async def synced() -> bool:
                resp = await http.get(
                    f"{server.url}/v1/health/service/web-shop", params={"passing": ""}
                )
                return len(resp.json()) == 2

            await async_wait_until(synced, timeout=20, what="two instances via in-cluster creds")
            # The Lease went to the pod's own namespace (from the service-account files).
            lease = fake.get("leases", "weft-system", "weft-k8s-adapter-c1")
            assert lease["spec"]["holderIdentity"] == adapter.identity
            await adapter.stop()
            n.cancel_scope.cancel()
        assert (
            fake.get("leases", "weft-system", "weft-k8s-adapter-c1")["spec"]["holderIdentity"] == ""
        )
