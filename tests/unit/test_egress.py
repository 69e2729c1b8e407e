"""Egress without sockets: the ExternalService rules, its compilation into snapshot v4 (checked
by the proxy's own parser), and the forward proxy's decisions about undeclared hosts."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme
import yaml

from agent._certs import CertFiles
from agent._definitions import parse
from agent._snapshots import build
from agent._traffic import Resources
from ca import SpiffeId
from proxy._egress import MAX_HOST_LABELS, Egress, request_port
from proxy._errors import HttpError, SnapshotError
from proxy._h1 import Limits, parse_request_head
from proxy._http_plan import Reject
from proxy._metrics import Metrics
from proxy._snapshot import parse_snapshot
from registry.importers import convert
from registry.resources import check_document, validate_all

CA_PEM = trustme.CA().cert_pem.bytes().decode()


def external(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "hosts": ["api.partner.test"],
        "ports": [{"port": 443, "protocol": "https"}],
    }
    return {
        "apiVersion": "weft.dev/v1",
        "kind": "ExternalService",
        "metadata": {"name": "partner"},
        "spec": {**base, **spec},
    }


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        (external(hosts=[]), "spec.hosts: needs at least 1 item"),
        (external(hosts=["partner"]), "spec.hosts[0]: 'partner' is not a lower-case DNS name"),
        (external(hosts=["API.partner.test"]), "spec.hosts[0]: 'API.partner.test' is not"),
        (external(ports=[{"port": 443, "protocol": "grpc"}]), "spec.ports[0].protocol: 'grpc'"),
        (external(ports=[{"port": 0, "protocol": "http"}]), "spec.ports[0].port: 0 is not a port"),
        (external(ports=[{"port": 80}]), "spec.ports[0].protocol: is required"),
        (
            external(ports=[{"port": 80, "protocol": "http"}, {"port": 80, "protocol": "tcp"}]),
            "spec.ports[1].port: port 80 is given twice",
        ),
        (external(resolution="static"), "spec.addresses: resolution static needs addresses"),
        (external(resolution="dns", addresses=["10.0.0.1"]), "spec.addresses: addresses are for"),
        (external(resolution="STATIC"), "spec.resolution: 'STATIC': use one of dns, static"),
        (
            external(resolution="static", addresses=["api.partner.test"]),
            "spec.addresses[0]: 'api.partner.test' is not an IP address",
        ),
        (external(tls={"caBundle": "not pem"}), "spec.tls.caBundle: expected PEM certificates"),
        (external(tls={"verify": "no"}), "spec.tls.verify: expected true or false"),
        (external(tls={"sni": "x"}), "spec.tls.sni: 'x' is not a lower-case DNS name"),
        (
            external(ports=[{"port": 80, "protocol": "http"}], tls={"verify": True}),
            "spec.tls: TLS origination needs a port with protocol https",
        ),
        (external(endpoints=[]), "spec.endpoints: unknown field"),
        ({**external(), "metadata": {"name": "partner.api"}}, "metadata.name: 'partner.api'"),
    ],
)
def test_a_bad_external_service_is_refused_naming_the_field(
    doc: dict[str, Any], problem: str
) -> None:
    problems = check_document(doc)
    assert any(problem in p for p in problems), problems


def test_a_host_belongs_to_one_external_service() -> None:
    other = external()
    other["metadata"] = {"name": "partner-two"}
    _, problems = validate_all([external(), other])
    assert problems == [
        "resources[1] (ExternalService partner-two): spec.hosts[0]: 'api.partner.test' is "
        "already declared by ExternalService 'partner'"
    ]


WEB = """
name = "web"
port = 8080
[sidecar]
port = 21000
forward_proxy_port = 15001
[[upstreams]]
service = "books"
local_port = 9191
"""


def compiled(*docs: dict[str, Any]) -> dict[str, Any]:
    stored, problems = validate_all(list(docs))
    assert problems == []
    files = CertFiles(Path("/c/web.crt"), Path("/c/web.key"), Path("/c/bundle.pem"))
    return build(
        parse("web.toml", WEB),
        SpiffeId("td", "default", "web"),
        files,
        {"books": []},
        version=1,
        resources=Resources([r.doc for r in stored]),
    )


def test_external_services_compile_into_snapshot_v4_with_their_routes_and_tls() -> None:
    partner = external(
        ports=[{"port": 443, "protocol": "https"}, {"port": 8080, "protocol": "http"}],
        resolution="static",
        addresses=["127.0.0.1"],
        tls={"caBundle": CA_PEM},
    )
    route = yaml.safe_load(
        """
apiVersion: weft.dev/v1
kind: Route
metadata: {name: partner}
spec:
  service: partner
  rules:
  - name: slow
    timeout: 2s
    retries: {attempts: 2, retryOn: [5xx]}
    backends: [{service: partner}]
"""
    )
    mode = {
        "apiVersion": "weft.dev/v1",
        "kind": "ServiceDefaults",
        "metadata": {"name": "web"},
        "spec": {"outbound": "registry-only"},
    }
    doc = compiled(partner, route, mode)
    assert doc["schema"] == "weft.proxy.snapshot/v4" and doc["outbound"] == "registry-only"
    first, second = doc["external"]
    assert (first["name"], first["port"], second["name"], second["port"]) == (
        "partner",
        443,
        "partner-8080",
        8080,
    )
    assert first["tls"] == {"sni": "api.partner.test", "ca_pem": CA_PEM}
    assert [r["name"] for r in first["routes"]] == ["slow", "default"]
    assert first["routes"][0]["timeout_ms"] == 2000
    assert [u["name"] for u in doc["upstreams"]] == ["books"]  # not watched as a mesh service
    snapshot = parse_snapshot(doc)
    upstream = snapshot.upstream("partner")
    assert upstream is not None and upstream.external is not None
    assert upstream.external.tls is not None and upstream.external.tls.verify
    assert [e.address for e in upstream.endpoints] == ["127.0.0.1"]
    assert [u.name for u in snapshot.external_hosts()["api.partner.test"]] == [
        "partner",
        "partner-8080",
    ]


def test_without_external_services_the_snapshot_stays_as_it_was() -> None:
    doc = compiled()
    assert doc["schema"] == "weft.proxy.snapshot/v2" and "external" not in doc
    assert parse_snapshot(doc).outbound == "allow-any"


def v4(**extra: Any) -> dict[str, Any]:
    return {
        "schema": "weft.proxy.snapshot/v4",
        "version": 1,
        "identity": "spiffe://td/ns/default/svc/web",
        "tls": {"cert": "/c", "key": "/k", "bundle": "/b"},
        **extra,
    }


def entry(**fields: Any) -> dict[str, Any]:
    base = {"name": "partner", "hosts": ["api.partner.test"], "port": 443, "protocol": "https"}
    return {**base, "addresses": ["127.0.0.1"], **fields}


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        ({**v4(external=[entry()]), "schema": "weft.proxy.snapshot/v3"}, "need schema"),
        (v4(outbound="deny-all"), "outbound"),
        (v4(external=[entry(protocol="http", tls={"sni": "a.b"})]), "external[0].tls: TLS"),
        (v4(external=[entry(tls={"ca_pem": "junk"})]), "external[0].tls.ca_pem: not usable"),
        (v4(external=[entry(), entry()]), "external[1].name: 'partner' is also"),
        (v4(external=[entry(addresses=[])]), "external[0].addresses"),
    ],
)
def test_a_bad_external_entry_refuses_the_whole_snapshot(doc: dict[str, Any], problem: str) -> None:
    with pytest.raises(SnapshotError) as caught:
        parse_snapshot(doc)
    assert problem in str(caught.value)


def head(raw: bytes) -> Any:
    return parse_request_head(raw, Limits())


@pytest.mark.parametrize(
    ("raw", "port"),
    [
        (b"GET http://a.b:8443/x HTTP/1.1\r\nHost: a.b:8443\r\n\r\n", 8443),
        (b"GET http://a.b/x HTTP/1.1\r\nHost: a.b\r\n\r\n", None),
        (b"GET /x HTTP/1.1\r\nHost: a.b:81\r\n\r\n", 81),
        (b"CONNECT a.b:443 HTTP/1.1\r\nHost: a.b:443\r\n\r\n", 443),
        (b"CONNECT [::1]:444 HTTP/1.1\r\nHost: x\r\n\r\n", 444),
    ],
)
def test_the_port_a_request_names(raw: bytes, port: int | None) -> None:
    assert request_port(head(raw)) == port


def test_a_malformed_port_is_a_400() -> None:
    with pytest.raises(HttpError) as caught:
        request_port(head(b"GET http://a.b:99999/ HTTP/1.1\r\nHost: a.b\r\n\r\n"))
    assert caught.value.status == 400


def test_refused_hosts_beyond_the_cap_share_one_label_and_logs_are_rate_limited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics()
    egress = Egress(metrics)

    async def main() -> list[Reject]:
        out = [egress.refuse(f"h{i}.attacker.test", 80) for i in range(MAX_HOST_LABELS + 50)]
        out += [egress.refuse("h0.attacker.test", 80) for _ in range(100)]
        out.append(egress.refuse("bad\x01host", None))
        return out

    with caplog.at_level(logging.WARNING, logger="weft.proxy"):
        rejects = trio.run(main)
    assert all(r.status == 403 for r in rejects)
    assert len(metrics.egress_refused) == MAX_HOST_LABELS + 1
    assert metrics.egress_refused["other"] == 51
    assert metrics.egress_refused["h0.attacker.test"] == 101
    assert len([r for r in caplog.records if r.getMessage() == "egress refused"]) == (
        MAX_HOST_LABELS + 1
    )
    assert "spec.hosts: [h0.attacker.test]" in rejects[-2].reason


def service_entry(**spec: Any) -> dict[str, Any]:
    base = {"hosts": ["api.partner.test"], "ports": [{"number": 80, "protocol": "HTTP"}]}
    return {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "ServiceEntry",
        "metadata": {"name": "partner"},
        "spec": {**base, **spec},
    }


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({"resolution": "STATIC"}, "spec.endpoints: resolution STATIC needs endpoints"),
        (
            {"resolution": "STATIC", "endpoints": [{"address": "unix:///var/run/x.sock"}]},
            "spec.endpoints[0].address: 'unix:///var/run/x.sock' is not an IP address",
        ),
        ({"hosts": ["*.partner.test"]}, "spec.hosts: no host Weft can declare"),
        ({"ports": [{"number": 9090, "protocol": "GRPC-WEB"}]}, "spec.ports: no port Weft can"),
        ({"resolution": "ROUND_ROBIN"}, "spec.resolution: 'ROUND_ROBIN' is not DNS"),
    ],
)
def test_a_service_entry_weft_cannot_declare_is_refused_naming_the_field(
    spec: dict[str, Any], problem: str
) -> None:
    result = convert([service_entry(**spec)])
    assert result.docs == []
    assert any(problem in p for p in result.problems), result.problems


def test_service_entry_fields_weft_does_not_honour_are_warned_one_by_one() -> None:
    result = convert(
        [
            service_entry(
                resolution="STATIC",
                endpoints=[{"address": "10.0.0.1", "ports": {"http": 8080}, "weight": 2}],
                exportTo=["."],
                workloadSelector={"labels": {"app": "x"}},
            )
        ]
    )
    assert result.problems == []
    assert result.docs[0]["spec"]["addresses"] == ["10.0.0.1"]
    joined = "\n".join(result.warnings)
    for field in ("endpoints[0].ports", "endpoints[0].weight", "spec.exportTo", "workloadSelector"):
        assert field in joined, result.warnings
