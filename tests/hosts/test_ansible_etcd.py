"""The optional etcd role: site.yml makes one etcd cluster of the `etcd` group's hosts from
Debian's etcd-server (installed with apt inside the hosts, so this test needs the Debian
mirror), with peer and client TLS and client-certificate authentication, bound to the host's
address; weft server reaches it with the role's client certificate and serves HTTPS with a
certificate from Weft's CA, which the agents verify. Run by `make test-hosts`."""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.harness import wait_until

from .ansible_fleet import Fleet

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]
ETCDCTL = Path(sys.executable).with_name("etcdctl")
PKI_SCRIPT = Path(__file__).parents[2] / "ansible" / "roles" / "etcd" / "files" / "etcd_pki.py"


def etcdctl(endpoint: str, pki: Path, *args: str) -> str:
    tls = ["--cacert", str(pki / "ca.pem"), "--cert", str(pki / "client-weft-server.pem"),
           "--key", str(pki / "client-weft-server.key")]  # fmt: skip
    result = subprocess.run([str(ETCDCTL), "--endpoints", endpoint, *tls, *args],
                            capture_output=True, text=True, timeout=30)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def put(url: str, key: str) -> str:
    """curl arguments for a write of `key` = "x" through etcd's JSON gateway."""
    body = json.dumps({"key": b64(key), "value": b64("x")})
    return f"-X POST {url}/v3/kv/put -d '{body}'"


def test_the_etcd_role_makes_a_tls_cluster_and_the_server_serves_https_to_verifying_agents(
    start_host, etcd, prefix, tmp_path
) -> None:
    # Agents without sidecars: this test is about etcd and the control plane's TLS.
    fleet = Fleet(start_host, etcd, prefix, tmp_path, sidecars=False)
    fleet.write_inventory(etcd_hosts=("alpha", "beta"))
    site = fleet.run("site.yml")
    assert site.returncode == 0, site.explain()
    pki = fleet.secrets / "etcd"
    assert oct(pki.stat().st_mode & 0o777) == "0o700"
    urls = {name: f"https://127.0.0.1:{fleet.etcd_ports[name][0]}" for name in fleet.hosts}
    for name, host in fleet.hosts.items():
        assert host.unit_property("etcd.service", "ActiveState") == "active", name
        # Bound to the host's address (127.0.0.1 for these hosts), never all addresses.
        assert "0.0.0.0" not in host.read_text("/etc/default/etcd")
        for port in fleet.etcd_ports[name][:2]:
            listening = host.run(f"ss -Hltn 'sport = :{port}'", check=True).stdout.split()
            assert f"127.0.0.1:{port}" in listening, listening
            assert not {f"*:{port}", f"0.0.0.0:{port}", f"[::]:{port}"} & set(listening)
    members = json.loads(etcdctl(urls["beta"], pki, "member", "list", "-w", "json"))["members"]
    assert sorted(m["name"] for m in members) == ["alpha", "beta"]
    assert sorted(u for m in members for u in m["clientURLs"]) == sorted(urls.values())
    assert all(u.startswith("https://") for m in members for u in m["peerURLs"])

    server_toml = fleet.alpha.read_text("/etc/weft/server.toml")
    assert f'etcd_endpoints = ["{urls["alpha"]}", "{urls["beta"]}"]' in server_toml, server_toml
    assert 'etcd_cert_file = "/etc/weft/etcd/cert.pem"' in server_toml, server_toml
    assert 'tls_cert_file = "/etc/weft/tls/server.pem"' in server_toml, server_toml
    # The agents verify the servers' HTTPS and registered through it.
    agent_toml = fleet.beta.read_text("/etc/weft/agent.toml")
    assert f'servers = ["https://127.0.0.1:{fleet.server_port}"]' in agent_toml, agent_toml
    assert 'ca_file = "/etc/weft/server-ca.pem"' in agent_toml, agent_toml
    wait_until(
        lambda: sum(i["status"] == "passing" for i in fleet.get("/v1/registry/instances")) == 4,
        timeout=60,
        what="both agents' services to pass, registered over verified HTTPS",
    )
    assert fleet.beta.run("/opt/weft/bin/weft maint list -o json", check=True).stdout.strip()

    # The server's certificate is the Weft CA's: the bundle the agents got is the CA's roots,
    # and a client trusting anything else (etcd's CA here) is refused the handshake.
    roots = httpx.get(fleet.server_url + "/v1/ca/roots", verify=fleet.verify).json()
    assert (fleet.secrets / "server-ca.pem").read_text() == roots["bundle_pem"]
    with pytest.raises(httpx.ConnectError):
        httpx.get(fleet.server_url + "/v1/ca/roots", verify=ssl.create_default_context(
            cafile=str(pki / "ca.pem")))  # fmt: skip
    plain = fleet.beta.run(
        f"curl -sS --max-time 10 http://127.0.0.1:{fleet.server_port}/v1/ca/roots"
    )
    assert "bundle_pem" not in plain.stdout

    # From an agent host (beta runs one; agents hold no etcd credentials): a write to etcd
    # without a client certificate is refused, over TLS or plain HTTP, and nothing is written.
    assert not fleet.beta.exists("/etc/weft/etcd")
    intruder = put(urls["alpha"], prefix + "intruder")
    no_cert = fleet.beta.run(f"curl -sS --max-time 10 --cacert /etc/etcd/pki/ca.pem {intruder}")
    assert no_cert.returncode != 0, no_cert.stdout
    assert '"revision"' not in no_cert.stdout
    plain_etcd = fleet.beta.run(f"curl -sS --max-time 10 {intruder.replace('https:', 'http:')}")
    assert '"revision"' not in plain_etcd.stdout
    # A client certificate from another CA (made with the role's own script) is refused too.
    foreign = tmp_path / "foreign-pki"
    subprocess.run([sys.executable, str(PKI_SCRIPT), str(foreign), "--client", "weft-server"],
                   check=True, capture_output=True, timeout=60)  # fmt: skip
    fleet.beta.copy_in(foreign / "client-weft-server.pem", "/root/foreign.pem")
    fleet.beta.copy_in(foreign / "client-weft-server.key", "/root/foreign.key")
    other_ca = fleet.beta.run(
        "curl -sS --max-time 10 --cacert /etc/etcd/pki/ca.pem --cert /root/foreign.pem "
        f"--key /root/foreign.key {intruder}"
    )
    assert other_ca.returncode != 0 and '"revision"' not in other_ca.stdout, other_ca.stdout
    assert etcdctl(urls["beta"], pki, "get", prefix + "intruder").strip() == ""
    # With the role's client certificate the same write works.
    fleet.beta.copy_in(pki / "client-weft-server.pem", "/root/etcd-client.pem")
    fleet.beta.copy_in(pki / "client-weft-server.key", "/root/etcd-client.key")
    with_cert = fleet.beta.run(
        "curl -sS --max-time 10 --cacert /etc/etcd/pki/ca.pem --cert /root/etcd-client.pem "
        f"--key /root/etcd-client.key {put(urls['alpha'], prefix + 'allowed')}"
    )
    assert with_cert.returncode == 0 and '"revision"' in with_cert.stdout, with_cert.stderr
    allowed = etcdctl(urls["beta"], pki, "get", prefix + "allowed", "--print-value-only")
    assert allowed.strip() == "x"
    fleet.beta.run("rm -f /root/etcd-client.pem /root/etcd-client.key", check=True)

    # The registry's data is in the cluster (read here through beta's member), not in the
    # session's etcd.
    keys = etcdctl(urls["beta"], pki, "get", "--prefix", prefix, "--keys-only").split()
    assert any("/services/web/beta/" in key for key in keys), keys
    session = subprocess.run(
        [str(ETCDCTL), "--endpoints", etcd.endpoints[0], "get", "--prefix", prefix, "--keys-only"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert session.stdout.split() == []

    again = fleet.run("site.yml")
    assert again.returncode == 0, again.explain()
    assert again.changed() == {"alpha": 0, "beta": 0}, again.explain()
