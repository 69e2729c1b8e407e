"""One host cannot take another service's traffic, and one bad record cannot freeze the mesh:
real server, real etcd, two agents with scoped tokens, real sidecar proxies and apps."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import httpx
import pytest

from ca import KeyEncryptionKey
from registry._keys import Keys
from registry._model import Instance, encode_instance
from registry.etcd import EtcdClient
from tests.harness import Proc, WeftAgent, WeftServer, free_port, spawn, wait_until

TD = "mesh.test"


class Mesh:
    def __init__(self, server: WeftServer, tmp: Path) -> None:
        self.server = server
        self.tmp = tmp
        self.procs: list[WeftAgent | Proc] = []

    def app(self, name: str) -> int:
        port = free_port()
        args = [sys.executable, "-m", "weft._demo_apps", "app", "--name", name, "--port", str(port)]
        self.procs.append(spawn(args, log_path=self.tmp / f"app-{name}-{port}.log"))
        wait_until(
            lambda: httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200,
            timeout=20,
            what=f"app {name}",
        )
        return port

    def agent(self, node: str, services: list[str]) -> WeftAgent:
        resp = httpx.post(
            self.server.url + "/v1/tokens",
            json={"role": "agent", "node": node, "services": services},
            headers=self.server.headers(),
        )
        resp.raise_for_status()
        agent = WeftAgent(self.server.url, resp.json()["secret"], self.tmp, node=node)
        self.procs.append(agent)
        return agent

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


@pytest.fixture
def mesh(start_server, tmp_path: Path):
    kek = tmp_path / "kek"
    kek.write_text(KeyEncryptionKey.generate().to_text())
    server = start_server("--ca-kek-file", str(kek))
    httpx.post(
        server.url + "/v1/ca/init", json={"trust_domain": TD}, headers=server.headers()
    ).raise_for_status()
    m = Mesh(server, tmp_path)
    try:
        yield m
    finally:
        m.close()


def sidecar_service(
    name: str, app: int, sidecar: int, upstream: tuple[str, int] | None = None
) -> str:
    text = f'name = "{name}"\nport = {app}\n[sidecar]\nport = {sidecar}\n'
    if upstream:
        text += f'[[upstreams]]\nservice = "{upstream[0]}"\nlocal_port = {upstream[1]}\n'
    return text


def start_pair(mesh: Mesh, *, a_extra: str = "") -> tuple[WeftAgent, WeftAgent, int, int]:
    """vm-b runs `payments` (token: payments); vm-a runs `shop` calling payments through its
    sidecar (token: shop). Returns the agents, shop's local port for payments, B's sidecar."""
    b = mesh.agent("vm-b", ["payments"])
    sidecar_b = free_port()
    b.define("payments", sidecar_service("payments", mesh.app("payments"), sidecar_b))
    b.start()
    a = mesh.agent("vm-a", ["shop"])
    upstream = free_port()
    a.define("shop", sidecar_service("shop", mesh.app("shop"), free_port(), ("payments", upstream)))
    if a_extra:
        a.define("payments", a_extra)
    a.start()
    wait_until(
        lambda: httpx.get(f"http://127.0.0.1:{upstream}/pay", timeout=5).status_code == 200,
        timeout=40,
        what="shop's sidecar to reach payments",
    )
    return a, b, upstream, sidecar_b


def test_a_node_whose_token_excludes_payments_never_receives_payments_traffic(
    mesh: Mesh,
) -> None:
    # vm-a's host defines its own `payments` (an impostor app) beside `shop`.
    impostor = mesh.app("impostor")
    a, _, upstream, _ = start_pair(mesh, a_extra=sidecar_service("payments", impostor, free_port()))
    status = a.status()
    assert "'payments'" in status["refused"]["payments"]  # 403, naming the service
    shop_entry = next(s for s in status["services"] if s["name"] == "shop")
    assert shop_entry["sidecar"]["applied_version"]  # the rest of the host works
    assert "the registry refused to register payments" in a.log()
    nodes = {
        e["Node"]
        for e in httpx.get(
            mesh.server.url + "/v1/catalog/service/payments", headers=mesh.server.headers()
        ).json()
    }
    assert nodes == {"vm-b"}
    for _ in range(20):
        resp = httpx.get(f"http://127.0.0.1:{upstream}/pay", timeout=5)
        assert resp.status_code == 200 and resp.json()["service"] == "payments"
    impostor_log = (mesh.tmp / f"app-impostor-{impostor}.log").read_text()
    assert "/pay" not in impostor_log
    # Nor does vm-a hold a payments certificate: the CA refused its CSR too.
    payments_entry = next(s for s in status["services"] if s["name"] == "payments")
    assert not payments_entry["sidecar"]["certificate_serial"]
    assert not (a.dir / "data" / "certs" / "payments.pem").exists()
    # ... and runs no sidecar for it.
    wait_until(
        lambda: (
            next(s for s in a.status()["services"] if s["name"] == "payments")["sidecar"]["proxy"]
            is None
        ),
        timeout=10,
        what="no payments sidecar on vm-a",
    )


async def test_a_bad_instance_on_one_node_does_not_stop_other_sidecars_updates(
    mesh: Mesh, etcd, prefix: str
) -> None:
    a, _, upstream, sidecar_b = start_pair(mesh)
    shop = next(s for s in a.status()["services"] if s["name"] == "shop")
    admin = shop["sidecar"]["proxy"]["admin"]

    def endpoints() -> list[tuple[str, int]]:
        config = httpx.get(f"http://{admin}/config", timeout=5).json()
        upstreams = (config.get("snapshot") or {}).get("upstreams", [])
        return sorted(
            (e["address"], e["port"])
            for u in upstreams
            if u["name"] == "payments"
            for e in u["endpoints"]
        )

    assert endpoints() == [("127.0.0.1", sidecar_b)]
    # An instance a proxy would refuse (an identity no SPIFFE check accepts), stored straight
    # in etcd as an old server or a hand edit could, on a third node.
    keys = Keys(prefix)
    async with EtcdClient(etcd.endpoints) as client:
        await client.put(
            keys.instance("payments", "vm-c", "payments-bad"),
            encode_instance(
                Instance(
                    service="payments",
                    id="payments-bad",
                    node="vm-c",
                    address="127.0.0.3",
                    port=9,
                    sidecar_port=sidecar_b,
                    identity="x",
                )
            ),
        )
    # Then a real change the shop sidecar must still get: another payments instance (B's
    # sidecar, reached at another loopback address), registered by an operator.
    httpx.put(
        mesh.server.url + "/v1/registry/instances",
        json={
            "service": "payments",
            "id": "payments-2",
            "node": "vm-d",
            "address": "127.0.0.2",
            "port": 9,
            "sidecar_port": sidecar_b,
        },
        headers=mesh.server.headers(),
    ).raise_for_status()
    wait_until(
        lambda: endpoints() == [("127.0.0.1", sidecar_b), ("127.0.0.2", sidecar_b)],
        timeout=10,
        what="the shop sidecar to apply the new endpoint without the bad one",
    )
    config = httpx.get(f"http://{admin}/config", timeout=5).json()
    assert config["last_result"]["accepted"] is True, config["last_result"]
    metrics = httpx.get(f"http://{a.address}/v1/agent/metrics", timeout=5).text
    assert 'weft_agent_instances_dropped_total{service="payments",reason="identity"} 1' in metrics
    assert "dropping instance payments-bad of payments on node vm-c" in a.log()
    for _ in range(10):
        assert httpx.get(f"http://127.0.0.1:{upstream}/pay", timeout=5).status_code == 200


def test_the_agent_warns_when_a_sidecar_app_listens_beyond_loopback(mesh: Mesh) -> None:
    # A real app bound to every address, behind a sidecar: callable around the sidecar.
    with socket.socket() as exposed:
        exposed.bind(("0.0.0.0", 0))
        exposed.listen()
        port = exposed.getsockname()[1]
        agent = mesh.agent("vm-e", ["ledger"])
        agent.define("ledger", sidecar_service("ledger", port, free_port()))
        agent.start(wait=False)
        wait_until(
            lambda: "ledger's application listens on 0.0.0.0 port" in agent.log(),
            timeout=30,
            what="the exposure warning",
        )
    assert "bind it to 127.0.0.1" in agent.log()
