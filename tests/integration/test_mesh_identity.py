"""Who may claim a service: derived identities and service-scoped tokens on a real server.

An agent token is bound to a node and a set of services; registering, or getting a
certificate for, any other service is a 403 naming it, and an identity a client sends is
refused unless it is the one the server derives. Adapter tokens stay off VM nodes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import consul
import httpx
import pytest
from cryptography import x509

from ca import KeyEncryptionKey, SpiffeId, make_key_and_csr
from registry.etcd import EtcdClient
from tests.harness import WeftServer, wait_until

TD = "mesh.test"


@pytest.fixture
def kek_file(tmp_path: Path) -> Path:
    path = tmp_path / "kek"
    path.write_text(KeyEncryptionKey.generate().to_text())
    return path


@pytest.fixture
def mesh(start_server, kek_file: Path) -> WeftServer:
    server = start_server("--ca-kek-file", str(kek_file))
    httpx.post(
        server.url + "/v1/ca/init", json={"trust_domain": TD}, headers=server.headers()
    ).raise_for_status()
    return server


def new_token(server: WeftServer, **body: object) -> dict:
    resp = httpx.post(server.url + "/v1/tokens", json=body, headers=server.headers())
    assert resp.status_code == 200, resp.text
    return resp.json()


def put(server: WeftServer, secret: str, body: dict) -> httpx.Response:
    return httpx.put(
        server.url + "/v1/registry/instances", json=body, headers={"X-Consul-Token": secret}
    )


def sign(server: WeftServer, secret: str, service: str) -> httpx.Response:
    csr = make_key_and_csr(SpiffeId(TD, "default", service)).csr_pem.decode()
    return httpx.post(
        server.url + "/v1/ca/sign",
        json={"csr": csr, "service": service},
        headers={"X-Consul-Token": secret},
    )


def instances(server: WeftServer, service: str) -> list[dict]:
    resp = httpx.get(server.url + f"/v1/registry/services/{service}", headers=server.headers())
    return resp.json()["instances"]


def weft(server: WeftServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WEFT_ADDR": server.url, "WEFT_TOKEN": server.token or ""}
    return subprocess.run(
        [sys.executable, "-m", "weft", *args], capture_output=True, text=True, env=env, timeout=60
    )


def test_agent_token_registering_a_service_outside_its_set_is_403_naming_it(
    mesh: WeftServer,
) -> None:
    a = new_token(mesh, role="agent", node="node-a", services=["web"], service_prefix=["shop-"])
    assert a["services"] == ["web"] and a["service_prefix"] == ["shop-"] and "warning" not in a
    secret = a["secret"]
    refused = put(mesh, secret, {"service": "payments", "port": 8443, "sidecar_port": 21000})
    assert refused.status_code == 403
    assert "'payments'" in refused.json()["error"]["message"]
    consul_api = httpx.put(
        mesh.url + "/v1/agent/service/register",
        json={"Name": "payments", "Port": 8443},
        headers={"X-Consul-Token": secret},
    )
    assert consul_api.status_code == 403 and "'payments'" in consul_api.text
    for service in ("web", "shop-cart"):  # its name and its prefix
        assert put(mesh, secret, {"service": service, "port": 8080}).status_code == 200
    assert instances(mesh, "payments") == []
    acl = httpx.get(mesh.url + "/v1/acl/token/self", headers={"X-Consul-Token": secret}).json()
    assert acl["ServiceIdentities"] == [{"ServiceName": "web"}]


def test_csr_for_a_service_outside_the_set_is_403_even_with_an_instance_on_the_node(
    mesh: WeftServer,
) -> None:
    secret = new_token(mesh, role="agent", node="node-a", services=["web"])["secret"]
    # An operator put `payments` on node-a: the node holds it, the token still may not sign.
    httpx.put(
        mesh.url + "/v1/registry/instances",
        json={"service": "payments", "port": 8443, "node": "node-a"},
        headers=mesh.headers(),
    ).raise_for_status()
    put(mesh, secret, {"service": "web", "port": 8080}).raise_for_status()
    denied = sign(mesh, secret, "payments")
    assert denied.status_code == 403, denied.text
    assert "'payments'" in denied.json()["error"]["message"]
    assert "certificate_pem" not in denied.text
    leaf = httpx.get(
        mesh.url + "/v1/agent/connect/ca/leaf/payments", headers={"X-Consul-Token": secret}
    )
    assert leaf.status_code == 403 and "'payments'" in leaf.text
    assert sign(mesh, secret, "web").status_code == 200


def test_instance_with_a_foreign_identity_is_400_naming_the_field(mesh: WeftServer) -> None:
    secret = new_token(mesh, role="agent", node="node-a", services=["web"])["secret"]
    base = {"service": "web", "port": 8080, "sidecar_port": 21000}
    for claimed in (
        f"spiffe://{TD}/ns/default/svc/payments",  # another service's
        "spiffe://other.test/ns/default/svc/web",  # another mesh's
        f"spiffe://{TD}/ns/prod/svc/web",  # another namespace's
    ):
        refused = put(mesh, secret, {**base, "identity": claimed})
        assert refused.status_code == 400, (claimed, refused.text)
        assert refused.json()["error"]["field"] == "identity"
        assert f"spiffe://{TD}/ns/default/svc/web" in refused.json()["error"]["message"]
    assert instances(mesh, "web") == []
    # The right one may be sent (older agents do); leaving it out gets the same.
    put(mesh, secret, {**base, "identity": f"spiffe://{TD}/ns/default/svc/web"}).raise_for_status()
    put(mesh, secret, {**base, "id": "web-2"}).raise_for_status()
    assert {i["identity"] for i in instances(mesh, "web")} == {f"spiffe://{TD}/ns/default/svc/web"}


def test_unscoped_agent_token_keeps_working_with_a_warning_until_token_update_scopes_it(
    mesh: WeftServer,
) -> None:
    legacy = new_token(mesh, role="agent", node="node-a")
    assert "services" not in legacy and "no service set" in legacy["warning"]
    secret = legacy["secret"]
    assert put(mesh, secret, {"service": "payments", "port": 8443}).status_code == 200
    assert sign(mesh, secret, "payments").status_code == 200
    log = mesh.dir / "server.log"
    wait_until(lambda: "has no service set" in log.read_text(), timeout=5)
    assert log.read_text().count(f"agent token {legacy['accessor']}") == 1  # once, not per call
    updated = weft(mesh, "token", "update", legacy["accessor"], "--services", "web,api-*")
    assert updated.returncode == 0, updated.stderr
    assert "web,api-*" in updated.stdout
    # The same secret, now scoped.
    assert put(mesh, secret, {"service": "cache", "port": 6379}).status_code == 403
    assert sign(mesh, secret, "payments").status_code == 403
    assert put(mesh, secret, {"service": "api-v2", "port": 8080}).status_code == 200
    listed = weft(mesh, "token", "list")
    assert "web,api-*" in listed.stdout and "any (unscoped)" not in listed.stdout
    bad = weft(mesh, "token", "update", legacy["accessor"], "--services", "Not_A_Name")
    assert bad.returncode != 0 and "services[0]" in bad.stderr
    operator = httpx.get(mesh.url + "/v1/tokens/self", headers=mesh.headers()).json()
    for accessor, status in ((operator["accessor"], 400), ("0123456789abcdef", 404)):
        resp = httpx.patch(
            mesh.url + f"/v1/tokens/{accessor}", json={"services": ["web"]}, headers=mesh.headers()
        )
        assert resp.status_code == status, resp.text
    not_operator = httpx.patch(
        mesh.url + f"/v1/tokens/{legacy['accessor']}",
        json={"services": ["payments"]},
        headers={"X-Consul-Token": secret},
    )
    assert not_operator.status_code == 403
    assert put(mesh, secret, {"service": "payments", "port": 8443}).status_code == 403


async def test_require_agent_services_refuses_unscoped_tokens(
    start_server, etcd_client: EtcdClient, prefix: str
) -> None:
    server = start_server("--require-agent-services")
    refused = httpx.post(
        server.url + "/v1/tokens",
        json={"role": "agent", "node": "node-a"},
        headers=server.headers(),
    )
    assert refused.status_code == 400 and refused.json()["error"]["field"] == "services"
    # A token record from before service sets, as an old version stored it.
    scoped = new_token(server, role="agent", node="node-a", services=["web"])
    stored = await etcd_client.range(prefix + "tokens/", prefix=True)
    kv = next(kv for kv in stored.kvs if json.loads(kv.value)["role"] == "agent")
    record = json.loads(kv.value)
    assert record["services"] == ["web"]
    del record["services"], record["service_prefix"]
    await etcd_client.put(kv.key, json.dumps(record).encode())

    def refused_as_legacy() -> bool:
        resp = put(server, scoped["secret"], {"service": "web", "port": 8080})
        return resp.status_code == 403 and "weft token update" in resp.text

    wait_until(refused_as_legacy, timeout=5)


def test_adapter_token_cannot_touch_vm_nodes_maintenance_or_checks(mesh: WeftServer) -> None:
    vm = new_token(mesh, role="agent", node="vm-1", services=["db"])["secret"]
    put(
        mesh, vm, {"service": "db", "port": 5432, "checks": [{"id": "db-ttl", "ttl": "30s"}]}
    ).raise_for_status()
    adapter = new_token(mesh, role="adapter", source="k8s/prod")["secret"]
    put(
        mesh,
        adapter,
        {
            "service": "web",
            "id": "pod-1",
            "port": 80,
            "node": "k8s-node-1",
            "checks": [{"id": "ready", "ttl": "1h"}],
        },
    ).raise_for_status()
    headers = {"X-Consul-Token": adapter}
    maint = httpx.put(
        mesh.url + "/v1/registry/maintenance/vm-1",
        json={"enable": True, "reason": "x"},
        headers=headers,
    )
    assert maint.status_code == 403 and "'agent'" in maint.text and "vm-1" in maint.text
    check = httpx.put(
        mesh.url + "/v1/registry/checks/vm-1/db-ttl", json={"status": "critical"}, headers=headers
    )
    assert check.status_code == 403
    db = instances(mesh, "db")[0]
    assert db["status"] != "maintenance"
    assert [c["status"] for c in db["checks"]] == ["critical"]  # untouched: still its initial
    assert httpx.get(mesh.url + "/v1/registry/maintenance", headers=headers).json() == {}
    onto_vm = put(mesh, adapter, {"service": "web", "id": "pod-2", "port": 80, "node": "vm-1"})
    assert onto_vm.status_code == 403 and "vm-1" in onto_vm.text
    # Its own node and its own checks stay its to write.
    own = httpx.put(
        mesh.url + "/v1/registry/checks/k8s-node-1/ready",
        json={"status": "passing"},
        headers=headers,
    )
    assert own.status_code == 200, own.text
    own_maint = httpx.put(
        mesh.url + "/v1/registry/maintenance/k8s-node-1", json={"enable": True}, headers=headers
    )
    assert own_maint.status_code == 200, own_maint.text


def test_py_consul_connect_calls(mesh: WeftServer) -> None:
    secret = new_token(mesh, role="agent", node="node-a", services=["web", "api"])["secret"]
    url = urlsplit(mesh.url)
    c = consul.Consul(host=url.hostname, port=url.port, token=secret)
    c.agent.service.register("web", service_id="web-1", port=8080, extra_checks=[])
    # A service registered with a sidecar, as Consul Connect registers one.
    httpx.put(
        mesh.url + "/v1/agent/service/register",
        json={
            "Name": "api",
            "ID": "api-1",
            "Port": 9090,
            "Connect": {"SidecarService": {"Port": 21001}},
        },
        headers={"X-Consul-Token": secret},
    ).raise_for_status()
    _, sidecars = c.health.connect("api")
    assert [s["Service"]["Kind"] for s in sidecars] == ["connect-proxy"]
    proxy = sidecars[0]["Service"]
    assert proxy["Service"] == "api-sidecar-proxy" and proxy["Port"] == 21001
    assert proxy["Proxy"]["DestinationServiceName"] == "api"
    assert proxy["Proxy"]["LocalServicePort"] == 9090
    _, catalog = c.catalog.connect("api")
    assert [(e["ServiceName"], e["ServicePort"], e["Node"]) for e in catalog] == [
        ("api-sidecar-proxy", 21001, "node-a")
    ]
    assert c.health.connect("web")[1] == []  # no sidecar, nothing to dial through
    # ... and listed as its own service, as Consul registers a sidecar.
    _, services = c.catalog.services()
    assert "api-sidecar-proxy" in services and "web-sidecar-proxy" not in services
    _, entries = c.health.service("api-sidecar-proxy")
    assert [(e["Service"]["ID"], e["Service"]["Kind"]) for e in entries] == [
        ("api-1-sidecar-proxy", "connect-proxy")
    ]
    assert instances(mesh, "api")[0]["identity"] == f"spiffe://{TD}/ns/default/svc/api"

    leaf = c.agent.connect.ca.leaf("api")
    cert = x509.load_pem_x509_certificate(leaf["CertPEM"].encode())
    uris = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [u.value for u in uris] == [f"spiffe://{TD}/ns/default/svc/api"]
    assert leaf["ServiceURI"] == f"spiffe://{TD}/ns/default/svc/api"
    assert "PRIVATE KEY" in leaf["PrivateKeyPEM"]
    roots = c.agent.connect.ca.roots()
    assert roots["TrustDomain"] == TD

    ok = c.agent.connect.authorize("api", f"spiffe://{TD}/ns/default/svc/web", leaf["SerialNumber"])
    assert ok["Authorized"] is True and "default allow" in ok["Reason"]
    foreign = c.agent.connect.authorize("api", "spiffe://evil.test/ns/default/svc/web", "01")
    assert foreign["Authorized"] is False and "evil.test" in foreign["Reason"]
    with pytest.raises(consul.ConsulException) as refused:
        c.agent.connect.authorize("payments", f"spiffe://{TD}/ns/default/svc/web", "01")
    assert "payments" in str(refused.value)
    bad = httpx.post(
        mesh.url + "/v1/agent/connect/authorize",
        json={"Target": "api", "ClientCertURI": "not-a-uri"},
        headers={"X-Consul-Token": secret},
    )
    assert bad.status_code == 400 and "ClientCertURI" in bad.text
    # Intentions decide: a deny for web -> api is what authorize answers next, with its ID.
    made = httpx.put(
        mesh.url + "/v1/connect/intentions/exact?source=web&destination=api",
        json={"Action": "deny"},
        headers=mesh.headers(),
    )
    assert made.status_code == 200, made.text
    denied = c.agent.connect.authorize("api", f"spiffe://{TD}/ns/default/svc/web", "01")
    assert denied["Authorized"] is False and "deny" in denied["Reason"]
    other = c.agent.connect.authorize("web", f"spiffe://{TD}/ns/default/svc/api", "01")
    assert other["Authorized"] is True  # the server's default (allow) for pairs with none
