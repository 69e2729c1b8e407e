"""Two agents on two nodes, each with a service behind its sidecar: A calls B through the
mesh with mTLS; agents and servers come and go while traffic keeps flowing."""

from __future__ import annotations

import stat
import sys
import time
from pathlib import Path

import httpx
import pytest
import trio

from ca import KeyEncryptionKey
from tests.harness import WeftAgent, WeftServer, free_port, spawn, wait_until

TD = "mesh.test"


class Mesh:
    def __init__(self, server: WeftServer, tmp: Path) -> None:
        self.server = server
        self.tmp = tmp
        self.agents: list[WeftAgent] = []
        self.apps = []
        self.ports: dict[str, int] = {}

    def app(self, name: str, upstream: str | None = None) -> int:
        port = free_port()
        args = [sys.executable, "-m", "weft._demo_apps", "app", "--name", name, "--port", str(port)]
        if upstream:
            args += ["--upstream", upstream]
        self.apps.append(spawn(args, log_path=self.tmp / f"app-{name}.log"))
        wait_until(
            lambda: httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200,
            timeout=20,
            what=f"app {name}",
        )
        return port

    def agent(self, node: str, **extra: object) -> WeftAgent:
        resp = httpx.post(
            self.server.url + "/v1/tokens",
            json={"role": "agent", "node": node},
            headers=self.server.headers(),
        )
        resp.raise_for_status()
        agent = WeftAgent(self.server.url, resp.json()["secret"], self.tmp, node=node, extra=extra)
        self.agents.append(agent)
        return agent

    def close(self) -> None:
        for agent in self.agents:
            agent.stop()
        for app in self.apps:
            app.stop()


@pytest.fixture
def mesh(start_server, tmp_path: Path):
    kek = tmp_path / "kek"
    kek.write_text(KeyEncryptionKey.generate().to_text())
    server = start_server("--ca-kek-file", str(kek), "--ca-allow-short-leaves")
    httpx.post(
        server.url + "/v1/ca/init", json={"trust_domain": TD}, headers=server.headers()
    ).raise_for_status()
    m = Mesh(server, tmp_path)
    try:
        yield m
    finally:
        m.close()


def build_pair(mesh: Mesh, **agent_extra: object) -> tuple[WeftAgent, WeftAgent, int]:
    """Node vm-b runs `billing`; node vm-a runs `shop`, which calls billing via its sidecar.
    Returns the agents and the local port on vm-a through which billing is reached."""
    billing_app = mesh.app("billing")
    sidecar_b, sidecar_a, upstream = free_port(), free_port(), free_port()
    b = mesh.agent("vm-b", **agent_extra)
    b.define(
        "billing",
        f'name = "billing"\nport = {billing_app}\n[sidecar]\nport = '
        f'{sidecar_b}\nauthorization = {{ default = "deny", allow = ["shop"] }}\n'
        f'[[checks]]\nhttp = "http://127.0.0.1:{billing_app}/health"\ninterval = "1s"\n',
    )
    b.start()
    a = mesh.agent("vm-a", **agent_extra)
    shop_app = mesh.app("shop", upstream=f"http://127.0.0.1:{upstream}")
    a.define(
        "shop",
        f'name = "shop"\nport = {shop_app}\n[sidecar]\nport = {sidecar_a}\n'
        f'[[upstreams]]\nservice = "billing"\nlocal_port = {upstream}\n',
    )
    a.start()
    return a, b, upstream


def call(port: int) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{port}/orders", timeout=5)


def test_a_calls_b_through_both_sidecars_with_mtls(mesh: Mesh) -> None:
    _, b, upstream = build_pair(mesh)
    resp = wait_until(
        lambda: (r := call(upstream)).status_code == 200 and r,
        timeout=30,
        what="shop's sidecar to reach billing",
    )
    assert resp.json() == {"service": "billing", "path": "/orders"}
    status = b.status()
    sidecar = status["services"][0]["sidecar"]
    assert sidecar["identity"] == f"spiffe://{TD}/ns/default/svc/billing"
    assert sidecar["applied_version"] == sidecar["snapshot_version"]
    admin = sidecar["proxy"]["admin"]
    metrics = httpx.get(f"http://{admin}/metrics").text
    # B's sidecar served them inbound, to the client certificate of shop's identity.
    assert 'weft_proxy_requests_total{direction="inbound",peer="shop"}' in metrics
    config = httpx.get(f"http://{admin}/config").json()
    assert config["applied"]["version"] == sidecar["applied_version"]
    # The private key was made on the host and only the owner may read it; it shares one
    # file with its certificate (the sidecars above served mTLS from it), so the two are
    # always replaced together.
    pem = b.dir / "data" / "certs" / "billing.pem"
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in pem.read_bytes() and b"CERTIFICATE" in pem.read_bytes()


def test_killed_agent_leaves_catalog_and_comes_back_without_touching_the_other(
    mesh: Mesh,
) -> None:
    a, b, upstream = build_pair(mesh)
    wait_until(lambda: call(upstream).status_code == 200, timeout=30, what="traffic")
    a_pid = a.proc.pid
    a_version = a.status()["services"][0]["sidecar"]["applied_version"]
    b.kill()  # agent and its proxy's parent die; the proxy group too
    killed = time.monotonic()

    def billing_instances() -> list:
        return httpx.get(
            mesh.server.url + "/v1/health/service/billing", headers=mesh.server.headers()
        ).json()

    wait_until(
        lambda: billing_instances() == [],
        timeout=15,
        interval=0.2,
        what="billing to leave the catalog",
    )
    assert time.monotonic() - killed <= 5 + 2
    # A's sidecar was told (a new snapshot without endpoints): the call now fails cleanly.
    wait_until(
        lambda: call(upstream).status_code == 503,
        timeout=15,
        what="shop's sidecar to drop the dead endpoint",
    )
    b.start()
    wait_until(
        lambda: call(upstream).status_code == 200,
        timeout=30,
        what="traffic to resume after agent B restarts",
    )
    assert a.proc.pid == a_pid and a.proc.alive()
    assert a.status()["services"][0]["sidecar"]["applied_version"] > a_version


async def test_traffic_flows_while_the_server_is_down_and_renewal_recovers(
    mesh: Mesh,
) -> None:
    # A 100 s certificate renewed at 60% of its life: the renewal falls inside the outage,
    # and the certificate outlives it.
    _, b, upstream = await trio.to_thread.run_sync(
        lambda: build_pair(mesh, cert_lifetime="100s", cert_renew_fraction=0.6)
    )
    await trio.to_thread.run_sync(
        lambda: wait_until(lambda: call(upstream).status_code == 200, timeout=30, what="traffic")
    )
    sidecar = b.status()["services"][0]["sidecar"]
    serial = sidecar["certificate_serial"]
    mesh.server.stop()
    stopped = trio.current_time()
    failures = 0
    total = 0
    async with httpx.AsyncClient(timeout=5) as http:
        while trio.current_time() < stopped + 60:
            total += 1
            try:
                if (await http.get(f"http://127.0.0.1:{upstream}/orders")).status_code != 200:
                    failures += 1
            except httpx.HTTPError:
                failures += 1
            await trio.sleep(0.1)
    assert total > 300 and failures == 0
    assert "not renewed" in b.log()  # the renewal came due and failed while the CA was away
    assert b.status()["services"][0]["sidecar"]["certificate_serial"] == serial
    await trio.to_thread.run_sync(mesh.server.start)
    await trio.to_thread.run_sync(
        lambda: wait_until(
            lambda: b.status()["services"][0]["sidecar"]["certificate_serial"] != serial,
            timeout=30,
            what="renewal to succeed after the server returns",
        )
    )
    await trio.to_thread.run_sync(
        lambda: wait_until(lambda: call(upstream).status_code == 200, timeout=30, what="traffic")
    )


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_three_certificate_rotations_under_steady_traffic_lose_no_request(
    mesh: Mesh,
) -> None:
    # Two-minute certificates (valid from a minute back, for clock skew) renewed at 60% of
    # their validity: a rotation about every 48 s on both
    # sides, while a request goes through every 50 ms.
    _, b, upstream = await trio.to_thread.run_sync(
        lambda: build_pair(mesh, cert_lifetime="120s", cert_renew_fraction=0.6)
    )
    await trio.to_thread.run_sync(
        lambda: wait_until(lambda: call(upstream).status_code == 200, timeout=30, what="traffic")
    )
    first = b.status()["services"][0]["sidecar"]["certificate_renewals"]
    failures: list[str] = []
    total = 0
    async with httpx.AsyncClient(timeout=5) as http:
        while b.status()["services"][0]["sidecar"]["certificate_renewals"] < first + 3:
            total += 1
            try:
                resp = await http.get(f"http://127.0.0.1:{upstream}/orders")
                if resp.status_code != 200:
                    failures.append(f"{resp.status_code} {resp.text[:200]}")
            except httpx.HTTPError as exc:
                failures.append(repr(exc))
            await trio.sleep(0.05)
    assert total > 1000
    assert failures == []
