"""The optional etcd role: site.yml makes one etcd cluster of the `etcd` group's hosts from
Debian's etcd-server (installed with apt inside the hosts, so this test needs the Debian
mirror), and weft server finds its endpoints from that group. Run by `make test-hosts`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import wait_until

from .ansible_fleet import Fleet

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]
ETCDCTL = Path(sys.executable).with_name("etcdctl")


def etcdctl(endpoint: str, *args: str) -> str:
    result = subprocess.run([str(ETCDCTL), "--endpoints", endpoint, *args],
                            capture_output=True, text=True, timeout=30)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_etcd_role_makes_a_cluster_of_the_group_and_the_server_uses_it(
    start_host, etcd, prefix, tmp_path
) -> None:
    # Agents without sidecars: this test is about etcd, not the data plane.
    fleet = Fleet(start_host, etcd, prefix, tmp_path, sidecars=False)
    fleet.write_inventory(etcd_hosts=("alpha", "beta"))
    site = fleet.run("site.yml")
    assert site.returncode == 0, site.explain()
    urls = {name: f"http://127.0.0.1:{fleet.etcd_ports[name][0]}" for name in fleet.hosts}
    for name, host in fleet.hosts.items():
        assert host.unit_property("etcd.service", "ActiveState") == "active", name
    members = json.loads(etcdctl(urls["beta"], "member", "list", "-w", "json"))["members"]
    assert sorted(m["name"] for m in members) == ["alpha", "beta"]
    assert sorted(u for m in members for u in m["clientURLs"]) == sorted(urls.values())
    server_toml = fleet.alpha.read_text("/etc/weft/server.toml")
    assert f'etcd_endpoints = ["{urls["alpha"]}", "{urls["beta"]}"]' in server_toml, server_toml
    wait_until(
        lambda: sum(i["status"] == "passing" for i in fleet.get("/v1/registry/instances")) == 4,
        timeout=60,
        what="both agents' services to pass, stored in the hosts' etcd cluster",
    )
    # The registry's data is in the cluster (read here through beta's member), not in the
    # session's etcd.
    keys = etcdctl(urls["beta"], "get", "--prefix", prefix, "--keys-only").split()
    assert any("/services/web/beta/" in key for key in keys), keys
    assert etcdctl(etcd.endpoints[0], "get", "--prefix", prefix, "--keys-only").split() == []

    again = fleet.run("site.yml")
    assert again.returncode == 0, again.explain()
    assert again.changed() == {"alpha": 0, "beta": 0}, again.explain()
