"""site.yml on two real systemd hosts reached over SSH: alpha (weft server + agent) and beta
(agent), etcd being the test session's on the machine's loopback. Run by `make test-hosts`."""

from __future__ import annotations

import re
import socket
import ssl
import stat

import httpx
import pytest

from tests.harness import wait_until

from .ansible_fleet import Fleet

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]


def instances_by_node(fleet: Fleet) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for inst in fleet.get("/v1/registry/instances"):
        if inst["status"] == "passing":
            out.setdefault(inst["node"], []).append(inst["service"])
    return {node: sorted(services) for node, services in out.items()}


def test_site_yml_brings_up_a_meshed_pair_then_changes_nothing_then_uninstalls(
    start_host, etcd, prefix, tmp_path
) -> None:
    fleet = Fleet(start_host, etcd, prefix, tmp_path)
    fleet.write_inventory()
    first = fleet.run("site.yml")
    assert first.returncode == 0, first.explain()
    assert first.changed()["alpha"] > 0 and first.changed()["beta"] > 0

    # Both units run under systemd; the server only where it belongs.
    for name, host in fleet.hosts.items():
        assert host.unit_property("weft-agent.service", "ActiveState") == "active", name
        assert host.unit_property("weft-agent.service", "UnitFileState") == "enabled", name
    assert fleet.alpha.unit_property("weft-server.service", "ActiveState") == "active"
    assert fleet.beta.unit_property("weft-server.service", "LoadState") == "not-found"

    # The controller keeps the CA's key-encryption key and the operator token, 0600; the
    # bootstrap token is gone from the server; each node has its own agent token.
    for secret in ("ca.kek", "operator.token"):
        assert stat.S_IMODE((fleet.secrets / secret).stat().st_mode) == 0o600, secret
    assert not fleet.alpha.exists("/var/lib/weft/bootstrap.token")
    tokens = fleet.get("/v1/tokens")
    assert sorted(t["node"] for t in tokens if t["role"] == "agent") == ["alpha", "beta"]
    assert fleet.get("/v1/ca/status")["trust_domain"] == "weft.test"

    # Both agents registered their services, and every check passes.
    wait_until(
        lambda: instances_by_node(fleet) == {"alpha": ["api", "web"], "beta": ["api", "web"]},
        timeout=60,
        what="both agents' services to pass in the registry",
    )

    # From host 1, through web's sidecar, api answers from host 2 (mTLS between the sidecars).
    upstream = fleet.ports["alpha"].web_upstream
    seen: set[str] = set()

    def reached_beta() -> bool:
        result = fleet.alpha.run(f"curl -sS --max-time 10 http://127.0.0.1:{upstream}/")
        if result.ok:
            seen.add(result.stdout.strip())
        return "api@beta" in seen

    wait_until(reached_beta, timeout=60, interval=0.2, what="alpha to reach api on beta")
    assert seen <= {"api@alpha", "api@beta"}, seen
    assert_sidecar_demands_mesh_certificates(fleet.ports["beta"].api_sidecar)
    # beta's api sidecar counted those requests as coming from web's verified identity.
    metrics = sidecar_metrics(fleet, "beta", "api")
    # (the proxy's HTTP metrics carry a route label since the traffic resources landed)
    assert re.search(r'^weft_proxy_requests_total\{direction="inbound",peer="web"[,}].* [1-9]',
                     metrics, re.MULTILINE), metrics[-3000:]  # fmt: skip

    # Converged: a second run changes nothing on either host.
    second = fleet.run("site.yml")
    assert second.returncode == 0, second.explain()
    assert second.changed() == {"alpha": 0, "beta": 0}, second.explain()

    # A dry run limited to one host reports on that host only and changes nothing.
    dry = fleet.run("site.yml", "--check", "--limit", "beta")
    assert dry.returncode == 0, dry.explain()
    assert dry.changed() == {"beta": 0}, dry.explain()

    # uninstall.yml takes it all away again: units, files, user, tokens, registrations.
    gone = fleet.run("uninstall.yml")
    assert gone.returncode == 0, gone.explain()
    for name, host in fleet.hosts.items():
        assert host.unit_property("weft-agent.service", "LoadState") == "not-found", name
        for path in ("/opt/weft", "/etc/weft", "/var/lib/weft"):
            assert not host.exists(path), f"{name}:{path}"
        assert not host.run("getent passwd weft").ok, name
    assert fleet.alpha.unit_property("weft-server.service", "LoadState") == "not-found"


def sidecar_metrics(fleet: Fleet, host: str, service: str) -> str:
    """The /metrics of a sidecar, found through its agent's status (all on shared loopback)."""
    status = httpx.get(f"http://127.0.0.1:{fleet.ports[host].agent}/v1/agent/status").json()
    [entry] = [s for s in status["services"] if s["name"] == service]
    return httpx.get(f"http://{entry['sidecar']['proxy']['admin']}/metrics", timeout=10).text


def assert_sidecar_demands_mesh_certificates(port: int) -> None:
    """A client without a mesh certificate gets nothing from a sidecar's mTLS port."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        try:
            with context.wrap_socket(raw) as tls:
                tls.sendall(b"GET / HTTP/1.1\r\nHost: api\r\n\r\n")
                answer = tls.recv(1024)
        except (ssl.SSLError, OSError):
            return
    assert not answer.startswith(b"HTTP/1.1 200"), answer
