"""The agent's pure parts: definitions, snapshots, versions, notify framing."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import trio

from agent._certs import CertFiles
from agent._definitions import check_set, parse
from agent._errors import DefinitionError
from agent._notify import Notifier
from agent._publisher import Publisher
from agent._snapshots import build, endpoints
from ca import SpiffeId

WEB = """
name = "web"
port = 8080
tags = ["v1"]
[sidecar]
port = 21000
forward_proxy_port = 15001
authorization = { default = "deny", allow = ["api"], deny = ["batch"] }
[[upstreams]]
service = "billing"
local_port = 9191
[[checks]]
http = "http://127.0.0.1:8080/health"
interval = "5s"
[[checks]]
ttl = "30s"
"""


def test_a_full_definition_parses() -> None:
    d = parse("web.toml", WEB)
    assert (d.name, d.id, d.port, d.sidecar_port, d.forward_proxy_port) == (
        "web",
        "web",
        8080,
        21000,
        15001,
    )
    assert [c.id for c in d.checks] == ["service:web:1", "service:web:2"]
    assert [c.kind for c in d.checks] == ["http", "ttl"]
    assert d.checks[0].interval == 5.0
    assert d.upstreams[0].service == "billing" and d.upstreams[0].local_port == 9191
    assert (d.default_policy, d.allow, d.deny) == ("deny", ("api",), ("batch",))


@pytest.mark.parametrize(
    ("text", "field", "rule"),
    [
        ('name = "web"', "port", "is required"),
        ('name = "web"\nport = 99999', "port", "1-65535"),
        ('name = "web"\nport = 1\nprotocol = "udp"', "protocol", "http, http2, grpc, tcp"),
        (
            'name = "web"\nport = 1\n[[upstreams]]\nservice = "x"\nlocal_port = 2',
            "upstreams",
            "[sidecar]",
        ),
        (
            'name = "web"\nport = 1\n[[checks]]\nhttp = "http://x"',
            "checks[0].interval",
            "need an interval",
        ),
        ('name = "web"\nport = [', "", "not valid TOML"),
        (
            'name = "web"\nport = 1\n[sidecar]\nport = 2\nauthorization = { default = "maybe" }',
            "sidecar.authorization.default",
            "allow or deny",
        ),
    ],
)
def test_bad_definitions_name_field_and_rule(text: str, field: str, rule: str) -> None:
    with pytest.raises(DefinitionError) as info:
        parse("svc.toml", text)
    assert info.value.file == "svc.toml"
    assert info.value.field == field
    assert rule in str(info.value)


def test_set_rules() -> None:
    a = parse("a.toml", 'name = "a"\nport = 1\n[sidecar]\nport = 21000')
    b = parse("b.toml", 'name = "b"\nport = 2\n[sidecar]\nport = 21000')
    with pytest.raises(DefinitionError, match=r"port 21000 is also sidecar\.port in a\.toml"):
        check_set([a, b])


def test_snapshot_document() -> None:
    d = parse("web.toml", WEB)
    files = CertFiles(Path("/c/web.crt"), Path("/c/web.key"), Path("/c/bundle.pem"))
    billing = [
        {
            "address": "10.0.0.2",
            "node_address": "10.0.0.2",
            "sidecar_port": 21000,
            "identity": "spiffe://td/ns/default/svc/billing",
            "status": "passing",
            "weights": {"passing": 3},
            "protocol": "http",
        },
        {
            "address": "10.0.0.3",
            "node_address": "10.0.0.3",
            "sidecar_port": 21000,
            "identity": "spiffe://td/ns/default/svc/billing",
            "status": "critical",
            "weights": {"passing": 1},
            "protocol": "http",
        },
        {
            "address": "10.0.0.4",
            "node_address": "10.0.0.4",
            "sidecar_port": 0,
            "identity": "",
            "status": "passing",
            "weights": {"passing": 1},
            "protocol": "http",
        },
    ]
    doc = build(d, SpiffeId("td", "default", "web"), files, {"billing": billing}, version=7)
    assert doc["identity"] == "spiffe://td/ns/default/svc/web"
    assert doc["inbound"] == {
        "address": "0.0.0.0",
        "port": 21000,
        "protocol": "http",
        "app": {"address": "127.0.0.1", "port": 8080},
    }
    assert doc["authorization"] == {
        "default": "deny",
        "rules": [
            {"name": "deny", "action": "deny", "sources": ["batch"]},
            {"name": "allow", "action": "allow", "sources": ["api"]},
        ],
    }
    [up] = doc["upstreams"]
    # Only passing instances that have a sidecar are endpoints.
    assert up["endpoints"] == [
        {
            "address": "10.0.0.2",
            "port": 21000,
            "weight": 3,
            "identity": "spiffe://td/ns/default/svc/billing",
        }
    ]
    assert doc["forward_proxy"] == {"address": "127.0.0.1", "port": 15001}
    assert endpoints([]) == []


def test_snapshot_matches_the_proxy_schema() -> None:
    proxy_schema = Path(__file__).resolve().parents[2] / "proxy" / "snapshot.schema.json"
    if not proxy_schema.exists():
        pytest.fail("proxy/snapshot.schema.json is missing")
    import json

    import jsonschema

    d = parse("web.toml", WEB)
    files = CertFiles(Path("/c/web.crt"), Path("/c/web.key"), Path("/c/bundle.pem"))
    doc = build(d, SpiffeId("td", "default", "web"), files, {}, version=1)
    jsonschema.validate(doc, json.loads(proxy_schema.read_text()))


def test_a_grpc_service_compiles_to_http2_on_both_sides() -> None:
    """The service's declared protocol reaches its own inbound (h2c to the app) and its
    callers' upstreams (h2 between the sidecars), and the document is one the proxy takes."""
    import json

    import jsonschema

    d = parse("web.toml", WEB.replace("port = 8080", 'port = 8080\nprotocol = "grpc"', 1))
    files = CertFiles(Path("/c/web.crt"), Path("/c/web.key"), Path("/c/bundle.pem"))
    billing = [
        {
            "address": "10.0.0.2",
            "node_address": "10.0.0.2",
            "sidecar_port": 21000,
            "identity": "spiffe://td/ns/default/svc/billing",
            "status": "passing",
            "weights": {"passing": 1},
            "protocol": "http2",
        }
    ]
    doc = build(d, SpiffeId("td", "default", "web"), files, {"billing": billing}, version=1)
    assert doc["inbound"]["protocol"] == "grpc"
    assert [up["protocol"] for up in doc["upstreams"]] == ["http2"]
    schema = Path(__file__).resolve().parents[2] / "proxy" / "snapshot.schema.json"
    jsonschema.validate(doc, json.loads(schema.read_text()))


async def test_publisher_versions_only_grow_and_only_on_change() -> None:
    pub = Publisher()
    assert pub.publish("web", {"schema": "x", "a": 1})
    first = pub.proxies["web"].version
    assert not pub.publish("web", {"schema": "x", "a": 1})  # same content, same version
    assert pub.publish("web", {"schema": "x", "a": 2})
    assert pub.proxies["web"].version > first
    got = await pub.wait_newer("web", first, trio.current_time() + 1)
    assert got is not None and got.doc["a"] == 2
    assert not pub.all_configured({"web"})
    pub.record_ack("web", {"accepted": True, "version": got.version})
    assert pub.all_configured({"web"}) and pub.all_applied()
    assert not pub.all_configured({"web", "gateway"})  # not published yet


def test_notifier_sends_datagrams_and_halves_the_watchdog(tmp_path) -> None:
    path = str(tmp_path / "n.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "10000000"})
        assert n.watchdog_interval == 5.0
        n.ready("all good")
        message = sock.recv(4096).decode().split("\n")
        assert "READY=1" in message and "STATUS=all good" in message
    silent = Notifier({})
    assert not silent.enabled and silent.watchdog_interval is None
    silent.ready("nobody listens")  # a no-op outside systemd
