"""weft-agent.service under a real systemd (PID 1 of a test host), installed by site.yml:
`systemctl start` returns only once the agent is READY, the watchdog restarts a hung agent,
and `systemctl reload` applies a changed service definition (and refuses a bad one)."""

from __future__ import annotations

import json

import pytest

from tests.harness import wait_until
from tests.harness.hosts import unique_free_port

from .ansible_fleet import Fleet

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]


def agent_status(fleet: Fleet, name: str) -> dict:
    port = fleet.ports[name].agent
    result = fleet.hosts[name].run(f"curl -sf http://127.0.0.1:{port}/v1/agent/status")
    assert result.ok, result.stderr
    return json.loads(result.stdout)


def test_agent_unit_ready_watchdog_and_reload(start_host, etcd, prefix, tmp_path) -> None:
    fleet = Fleet(start_host, etcd, prefix, tmp_path)
    # Agent tokens are scoped to their services: the token may also register `extra`, the
    # definition the reload below adds (else the registry refuses it, as it should).
    fleet.write_inventory(weft_agent_token_services=["api", "web", "extra"])
    run = fleet.run("site.yml")
    assert run.returncode == 0, run.explain()
    host = fleet.beta

    # `systemctl start` blocks until READY=1: registered, and every sidecar configured.
    host.systemctl("stop", "weft-agent.service")
    host.systemctl("start", "weft-agent.service", timeout=180)
    # The moment `start` returns, the agent already reports itself ready.
    status = agent_status(fleet, "beta")
    assert status["ready"] is True, status
    assert status["connected"] is True
    for service in status["services"]:
        sidecar = service["sidecar"]
        assert sidecar["applied_version"] == sidecar["snapshot_version"], service
    assert host.unit_property("weft-agent.service", "ActiveState") == "active"
    assert "proxies configured" in host.unit_property("weft-agent.service", "StatusText")

    # A hung agent stops its WATCHDOG=1 pings; systemd kills and restarts it.
    before = host.unit_properties("weft-agent.service", "MainPID", "NRestarts")
    assert host.run(f"kill -STOP {before['MainPID']}").ok
    wait_until(
        lambda: (
            (
                props := host.unit_properties(
                    "weft-agent.service", "MainPID", "NRestarts", "ActiveState"
                )
            )["ActiveState"]
            == "active"
            and props["MainPID"] not in ("0", before["MainPID"])
            and int(props["NRestarts"]) > int(before["NRestarts"])
        ),
        timeout=120,
        interval=1,
        what="the watchdog to restart the hung agent",
    )
    assert "Watchdog timeout" in host.journal("weft-agent.service")
    wait_until(
        lambda: agent_status(fleet, "beta")["ready"],
        timeout=120,
        what="the restarted agent to be ready",
    )

    # `systemctl reload` applies a new service definition...
    extra_port = unique_free_port()
    host.write_file(
        "/etc/weft/services.d/extra.toml",
        f'name = "extra"\nport = {extra_port}\ntags = ["reloaded"]\n',
        mode=0o640,
    )
    assert host.run("chgrp weft /etc/weft/services.d/extra.toml").ok
    host.systemctl("reload", "weft-agent.service")

    def extra_nodes() -> list[str]:
        return [e["Node"]["Node"] for e in fleet.get("/v1/health/service/extra")]

    wait_until(
        lambda: extra_nodes() == ["beta"],
        timeout=60,
        what="the reloaded definition to be registered",
    )
    # ...and refuses a bad one, keeping the set it had.
    host.write_file("/etc/weft/services.d/broken.toml", 'name = "broken"\n', mode=0o640)
    assert host.run("chgrp weft /etc/weft/services.d/broken.toml").ok
    host.systemctl("reload", "weft-agent.service")
    wait_until(
        lambda: "reload refused" in host.journal("weft-agent.service"),
        timeout=30,
        what="the refusal in the journal",
    )
    assert "broken.toml: port: is required" in host.journal("weft-agent.service")
    assert host.unit_property("weft-agent.service", "ActiveState") == "active"
    assert extra_nodes() == ["beta"]
    assert fleet.get("/v1/health/service/broken") == []
