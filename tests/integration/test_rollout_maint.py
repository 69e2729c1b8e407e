"""Maintenance mode as the rollout uses it: `weft maint` against a real server, and the agent's
local API forwarding Consul's `PUT /v1/agent/maintenance` for its node."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import httpx
import pytest

from tests.harness import WeftAgent, WeftServer, wait_until


def agent_token(server: WeftServer, node: str) -> str:
    resp = httpx.post(
        server.url + "/v1/tokens", json={"role": "agent", "node": node}, headers=server.headers()
    )
    resp.raise_for_status()
    return resp.json()["secret"]


def weft(*args: str, token: str | None = None, address: str | None = None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEFT_")}
    if token:
        env["WEFT_TOKEN"] = token
    if address:
        env["WEFT_ADDR"] = address
    return subprocess.run(
        [sys.executable, "-m", "weft", *args], env=env, capture_output=True, text=True, timeout=60
    )


def passing_nodes(server: WeftServer, service: str) -> list[str]:
    resp = httpx.get(
        f"{server.url}/v1/registry/services/{service}",
        params={"passing": ""},
        headers=server.headers(),
    )
    resp.raise_for_status()
    return sorted(i["node"] for i in resp.json()["instances"])


def maintenance(server: WeftServer) -> dict:
    resp = httpx.get(f"{server.url}/v1/registry/maintenance", headers=server.headers())
    resp.raise_for_status()
    return resp.json()


@pytest.fixture
def agent(server: WeftServer, tmp_path):
    app = socket.socket()
    app.bind(("127.0.0.1", 0))
    app.listen()
    port = app.getsockname()[1]
    started = WeftAgent(server.url, agent_token(server, "vm-1"), tmp_path, node="vm-1")
    started.define(
        "cache",
        f'name = "cache"\nport = {port}\nprotocol = "tcp"\n'
        f'[[checks]]\ntcp = "127.0.0.1:{port}"\ninterval = "1s"\n',
    )
    try:
        started.start()
        wait_until(
            lambda: passing_nodes(server, "cache") == ["vm-1"],
            timeout=20,
            what="the cache instance to pass",
        )
        yield started
    finally:
        started.stop()
        app.close()


def test_maint_on_takes_the_node_out_of_passing_and_off_brings_it_back(
    server: WeftServer, agent: WeftAgent
) -> None:
    on = weft("maint", "on", "--node", "vm-1", "--reason", "kernel upgrade",
              token=server.token, address=server.url)  # fmt: skip
    assert on.returncode == 0, on.stderr
    assert on.stdout.strip() == "vm-1: maintenance on (kernel upgrade)"
    assert maintenance(server)["vm-1"]["reason"] == "kernel upgrade"
    assert passing_nodes(server, "cache") == []
    listed = weft("maint", "list", "-o", "json", token=server.token, address=server.url)
    assert json.loads(listed.stdout)["vm-1"]["reason"] == "kernel upgrade"
    table = weft("maint", "list", token=server.token, address=server.url)
    assert "vm-1" in table.stdout and "kernel upgrade" in table.stdout

    off = weft("maint", "off", "--node", "vm-1", token=server.token, address=server.url)
    assert off.returncode == 0, off.stderr
    assert maintenance(server) == {}
    assert passing_nodes(server, "cache") == ["vm-1"]


def test_an_agent_token_acts_on_its_own_node_only(server: WeftServer, agent: WeftAgent) -> None:
    on = weft("maint", "on", token=agent.token, address=server.url)
    assert on.returncode == 0, on.stderr
    assert list(maintenance(server)) == ["vm-1"]
    other = weft("maint", "on", "--node", "vm-2", token=agent.token, address=server.url)
    assert other.returncode == 1
    assert "refused" in other.stderr and "403" in other.stderr
    assert weft("maint", "off", token=agent.token, address=server.url).returncode == 0
    assert maintenance(server) == {}
    # An operator token is bound to no node: it must say which.
    unbound = weft("maint", "on", token=server.token, address=server.url)
    assert unbound.returncode == 64
    assert "give --node" in unbound.stderr


def test_maint_reads_servers_node_and_token_from_agent_toml(
    server: WeftServer, agent: WeftAgent, tmp_path
) -> None:
    config = tmp_path / "agent.toml"
    token_file = tmp_path / "agent.token"
    token_file.write_text(agent.token + "\n")
    config.write_text(
        f'servers = ["{server.url}"]\nnode_name = "vm-1"\ntoken_file = "{token_file}"\n'
    )
    on = weft("maint", "on", "--agent-config", str(config), "--reason", "from the host")
    assert on.returncode == 0, on.stderr
    assert maintenance(server)["vm-1"]["reason"] == "from the host"
    assert weft("maint", "off", "--agent-config", str(config)).returncode == 0
    assert maintenance(server) == {}


def test_the_agent_forwards_consul_maintenance_for_its_node(
    server: WeftServer, agent: WeftAgent
) -> None:
    url = f"http://{agent.address}/v1/agent/maintenance"
    refused = httpx.put(url, params={"enable": "true"})
    assert refused.status_code == 403
    bad = httpx.put(url, params={"enable": "yes"}, headers={"X-Consul-Token": agent.token})
    assert bad.status_code == 400 and "enable" in bad.text
    on = httpx.put(
        url,
        params={"enable": "true", "reason": "via the agent"},
        headers={"X-Consul-Token": agent.token},
    )
    assert on.status_code == 200, on.text
    assert maintenance(server)["vm-1"]["reason"] == "via the agent"
    assert passing_nodes(server, "cache") == []
    off = httpx.put(url, params={"enable": "false"}, headers={"X-Consul-Token": agent.token})
    assert off.status_code == 200
    assert passing_nodes(server, "cache") == ["vm-1"]
