"""The gateway's pure parts: host matching, the `gateway` snapshot section, SNI certificate
choice and reload, Gateway resources and the agent's compilation of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trustme

from agent._certs import CertFiles
from agent._definitions import parse
from agent._errors import DefinitionError
from agent._gateway import build
from agent._traffic import Resources
from ca import SpiffeId
from proxy._errors import TlsSetupError
from proxy._gateway_certs import CertPair, CertStore
from proxy._gateway_hosts import build_hosts, host_of
from proxy._snapshot import parse_snapshot
from registry.importers import convert
from registry.resources import validate_all


def vhost(name: str, hosts: list[str], *backends: str, **extra: Any) -> dict[str, Any]:
    routes = [{"name": "r", "backends": [{"upstream": b} for b in backends]}]
    return {"name": name, "hosts": hosts, "routes": routes, **extra}


def test_an_exact_host_beats_the_longest_wildcard_which_beats_the_catch_all() -> None:
    problems: list[str] = []
    table = build_hosts(
        {
            "virtual_hosts": [
                vhost("any", ["*"], "a"),
                vhost("wide", ["*.example.com"], "a"),
                vhost("narrow", ["*.shop.example.com"], "a"),
                vhost("exact", ["www.shop.example.com"], "a"),
            ]
        },
        {"a": "http"},
        problems,
    )
    assert problems == []

    def found(host: str) -> str:
        picked = table.find(host)
        assert picked is not None
        return picked.name

    assert found("www.shop.example.com") == "exact"
    assert found("cart.shop.example.com") == "narrow"
    assert found("a.b.example.com") == "wide"
    assert found("example.com") == "any"  # a wildcard never covers its own suffix


@pytest.mark.parametrize(
    ("header", "host"),
    [
        (b"Books.Example.com:8443", "books.example.com"),
        (b"books.example.com.", "books.example.com"),
        (b"", None),
        (b"[::1]:443", None),
        (b"bad_host.example.com", None),
        (b"\xff.example.com", None),
    ],
)
def test_the_host_header_is_normalised_or_refused(header: bytes, host: str | None) -> None:
    assert host_of(header) == host


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ({"virtual_hosts": [vhost("a", ["x.example.com"], "nope")]}, "'nope' is not an upstream"),
        ({"virtual_hosts": [vhost("a", ["x.example.com"], "tcpsvc")]}, "'tcpsvc' is not HTTP"),
        ({"virtual_hosts": [vhost("a", ["Not A Host"], "a")]}, "hosts[0]: 'Not A Host' is not"),
        (
            {
                "virtual_hosts": [
                    vhost("a", ["x.example.com"], "a"),
                    vhost("b", ["x.example.com"], "a"),
                ]
            },
            "virtual_hosts[1].hosts[0]: 'x.example.com' is also a host of virtual host 'a'",
        ),
        (
            {
                "virtual_hosts": [
                    {"name": "a", "hosts": ["x.example.com"], "routes": [{"name": "r"}]}
                ]
            },
            "routes[0].backends: a gateway route must name its backends",
        ),
        (
            {"virtual_hosts": [vhost("a", ["x.example.com"], "a", precedence="random")]},
            "gateway.virtual_hosts[0].precedence",
        ),
        ({"hosts": []}, "gateway: expected an object with virtual_hosts"),
    ],
)
def test_a_bad_gateway_section_names_its_field(section: dict[str, Any], problem: str) -> None:
    problems: list[str] = []
    build_hosts(section, {"a": "http", "tcpsvc": "tcp"}, problems)
    assert any(problem in p for p in problems), problems


def _pair(ca: trustme.CA, tmp: Path, *names: str) -> CertPair:
    leaf = ca.issue_cert(*names)
    cert, key = tmp / f"{names[0]}.pem", tmp / f"{names[0]}.key"
    leaf.private_key_and_cert_chain_pem.write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    return CertPair(str(cert), str(key))


def test_sni_picks_the_exact_name_then_a_one_label_wildcard_then_the_default(
    tmp_path: Path,
) -> None:
    ca = trustme.CA()
    store = CertStore(
        [_pair(ca, tmp_path, "books.example.com"), _pair(ca, tmp_path, "*.shop.example.com")]
    )
    books, shop = (lo.context for lo in store.loaded)
    assert store.context_for("books.example.com") is books
    assert store.context_for("BOOKS.example.com.") is books
    assert store.context_for("cart.shop.example.com") is shop
    assert store.context_for("a.cart.shop.example.com") is books  # wildcards cover one label
    assert store.context_for(None) is books


def test_a_broken_new_pair_keeps_the_old_one_until_it_is_whole(tmp_path: Path) -> None:
    ca = trustme.CA()
    pair = _pair(ca, tmp_path, "books.example.com")
    store = CertStore([pair])
    before = store.loaded[0]
    other = ca.issue_cert("books.example.com")
    other.cert_chain_pems[0].write_to_path(pair.cert)  # the certificate without its key
    assert store.reload() is False
    assert store.loaded[0] is before and store.refused == 1
    other.private_key_pem.write_to_path(pair.key)
    assert store.reload() is True
    assert store.loaded[0].serial != before.serial


def test_a_certificate_without_dns_names_cannot_serve_by_sni(tmp_path: Path) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")  # an IP SAN only
    cert, key = tmp_path / "ip.pem", tmp_path / "ip.key"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    with pytest.raises(TlsSetupError, match="has no DNS names"):
        CertStore([CertPair(str(cert), str(key))])


def doc(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "weft.dev/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}


GATEWAY = doc(
    "Gateway", "public", {"service": "edge", "hosts": ["shop.example.com", "*.example.org"]}
)


def groute(name: str, hosts: list[str], **spec: Any) -> dict[str, Any]:
    rules = [{"name": "all", "backends": [{"service": "books"}]}]
    return doc("Route", name, {"gateway": "public", "hosts": hosts, "rules": rules, **spec})


@pytest.mark.parametrize(
    ("docs", "problem"),
    [
        ([GATEWAY, groute("a", ["books.example.com"])], "Gateway 'public' does not serve"),
        (
            [GATEWAY, groute("a", ["shop.example.com"]), groute("b", ["shop.example.com"])],
            "host 'shop.example.com' of Gateway 'public' already belongs to Route 'a'",
        ),
        ([groute("a", ["x.example.org"], service="books")], "give service (a sidecar Route) or"),
        ([groute("a", ["x.example.org"], unmatched="default")], "has no service to fall back"),
        (
            [
                doc(
                    "Route",
                    "a",
                    {"gateway": "public", "hosts": ["a.example.org"], "rules": [{"name": "r"}]},
                )
            ],
            "rules[0].backends: a gateway Route's rules must name backends",
        ),
        (
            [doc("Route", "a", {"gateway": "public", "rules": [{"name": "r"}]})],
            "spec.hosts: is required for a gateway Route",
        ),
        ([doc("Gateway", "g", {"hosts": ["*.*.example.com"]})], "is not a host"),
    ],
)
def test_gateway_resources_are_checked_alone_and_together(
    docs: list[dict[str, Any]], problem: str
) -> None:
    _, problems = validate_all(docs)
    assert any(problem in p for p in problems), problems


def test_a_gateway_route_may_serve_a_host_under_the_gateways_wildcard() -> None:
    _, problems = validate_all([GATEWAY, groute("a", ["api.example.org"])])
    assert problems == []


def test_an_ingress_gateway_definition_has_no_sidecar() -> None:
    with pytest.raises(DefinitionError, match="sidecar"):
        parse(
            "edge.toml",
            'name = "edge"\nkind = "ingress-gateway"\nport = 443\n[sidecar]\nport = 1\n',
        )
    with pytest.raises(DefinitionError, match="kind"):
        parse("edge.toml", 'name = "edge"\nkind = "mesh-gateway"\nport = 443\n')
    assert parse("edge.toml", 'name = "edge"\nkind = "ingress-gateway"\nport = 443\n').gateway
    checked = 'port = 443\n[[checks]]\nargs = ["true"]\ninterval = "1s"\n'
    assert parse("edge.toml", f'name = "edge"\nkind = "ingress-gateway"\n{checked}').gateway
    assert parse("web.toml", f'name = "web"\n{checked}').kind == ""  # a check's kind is its own


def test_the_agent_compiles_bound_routes_into_a_gateway_snapshot_the_gateway_accepts(
    tmp_path: Path,
) -> None:
    d = parse("edge.toml", 'name = "edge"\nkind = "ingress-gateway"\nport = 443\n')
    resources = Resources(
        [
            GATEWAY,
            groute("shop", ["shop.example.com", "other.example.net"]),  # not the Gateway's
            doc("Route", "elsewhere", {"gateway": "private", "hosts": ["x.example.org"],
                "rules": [{"name": "r", "backends": [{"service": "cart"}]}]}),
            doc("ServiceDefaults", "books", {"timeout": "2s", "balancer": "round_robin",
                "failureAccrual": {"consecutiveFailures": 3}}),
        ]
    )  # fmt: skip
    instances = {
        "books": [
            {"status": "passing", "address": "10.0.0.7", "sidecar_port": 21000,
             "identity": "spiffe://td/ns/default/svc/books"},
        ]
    }  # fmt: skip
    files = CertFiles(tmp_path / "c.pem", tmp_path / "c.pem", tmp_path / "b.pem")
    out = build(
        d, SpiffeId("td", "default", "edge"), files, instances, version=3, resources=resources
    )
    assert [u["name"] for u in out["upstreams"]] == ["books"]  # not cart: another gateway's
    (books,) = out["upstreams"]
    assert books["balancer"] == "round_robin"  # the backend's endpoint policy, as a sidecar's
    assert books["failure_accrual"] == {"consecutive_failures": 3}
    (vh,) = out["gateway"]["virtual_hosts"]
    assert (vh["name"], vh["hosts"]) == ("shop", ["shop.example.com"])
    assert vh["routes"] == [{"name": "all", "backends": [{"upstream": "books", "weight": 1}],
                             "timeout_ms": 2000}]  # fmt: skip
    assert "inbound" not in out
    inner = {k: v for k, v in out.items() if k != "gateway"}
    assert parse_snapshot(inner).identity.service == "edge"
    problems: list[str] = []
    build_hosts(out["gateway"], {"books": "http"}, problems)
    assert problems == []


def test_httproutes_of_one_service_merge_while_their_gateway_routes_stay_their_own() -> None:
    """Main's rule (several HTTPRoutes of one Service make one Route) beside the gateway's: a
    route with both a Gateway and a Service parent adds its gateway Route, left unmerged."""

    def route(name: str, parents: list[dict[str, Any]], prefix: str) -> dict[str, Any]:
        return {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": name},
            "spec": {
                "parentRefs": parents,
                "hostnames": ["books.example.com"],
                "rules": [
                    {
                        "matches": [{"path": {"type": "PathPrefix", "value": prefix}}],
                        "backendRefs": [{"name": "books", "port": 80}],
                    }
                ],
            },
        }

    service = {"group": "", "kind": "Service", "name": "books"}
    result = convert(
        [
            route("books-a", [{"name": "edge"}, service], "/a"),
            route("books-b", [service], "/b"),
        ]
    )
    assert result.problems == []
    by_name = {d["metadata"]["name"]: d["spec"] for d in result.docs}
    assert set(by_name) == {"books-a-edge", "books"}
    assert [r["name"] for r in by_name["books"]["rules"]] == ["books-a", "books-b"]
    assert by_name["books-a-edge"]["gateway"] == "edge"
    assert by_name["books-a-edge"]["hosts"] == ["books.example.com"]
    assert [r["name"] for r in by_name["books-a-edge"]["rules"]] == ["books-a"]
    assert validate_all(result.docs)[1] == []
