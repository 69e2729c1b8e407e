"""The Consul endpoints and query parameters real tools call, through py-consul: ?filter=,
?dc=, node-meta, catalog register/deregister, check register, service maintenance,
health of a node, members, datacenters, ACL self and 404s."""

from __future__ import annotations

from urllib.parse import urlsplit

import consul
import consul.exceptions
import httpx
import pytest

from tests.harness import WeftServer, assert_documented


def client(server: WeftServer, dc: str | None = None) -> consul.Consul:
    url = urlsplit(server.url)
    return consul.Consul(host=url.hostname, port=url.port, token=server.token, dc=dc)


def test_filter_expressions_select_records_and_bad_ones_are_400(server: WeftServer) -> None:
    c = client(server)
    c.agent.service.register("web", service_id="web-1", port=1, tags=["v1"], meta={"env": "prod"})
    c.agent.service.register("web", service_id="web-2", port=2, tags=["v2"], meta={"env": "dev"})
    _, entries = c.health.service("web", filter_expr='Service.Meta.env == "prod"')
    assert [e["Service"]["ID"] for e in entries] == ["web-1"]
    _, entries = c.catalog.service("web", filter_expr='"v2" in ServiceTags')
    assert [e["ServiceID"] for e in entries] == ["web-2"]
    services = c.agent.services(filter_expr="Port == 2")
    assert list(services) == ["web-2"]
    with pytest.raises(consul.exceptions.BadRequest, match="filter"):
        c.health.service("web", filter_expr="Service.Meta.env ==")
    with pytest.raises(consul.exceptions.BadRequest, match="not valid"):
        c.catalog.service("web", filter_expr="Nonsense == 1")
    # Blocking with a filter: the bad expression is refused before any wait.
    answer = httpx.get(
        server.url + "/v1/health/service/web?index=999999&wait=30s&filter=(",
        headers=server.headers(),
        timeout=5,
    )
    assert answer.status_code == 400


def test_every_endpoint_that_takes_a_filter_applies_it_or_refuses_it(server: WeftServer) -> None:
    c = client(server)
    c.agent.service.register("web", service_id="web-1", port=1, tags=["v1"], meta={"env": "prod"})
    c.agent.service.register("db", service_id="db-1", port=2, tags=["primary"])
    c.catalog.register(
        "ext",
        "192.0.2.20",
        service={"Service": "web", "ID": "web-x", "Port": 3},
        node_meta={"rack": "r1"},
    )
    c.agent.check.register("web-ready", check=consul.Check.ttl("30s"), service_id="web-1")
    cases = [  # (py-consul call with a filter, what it must give back)
        (
            lambda f: sorted(c.catalog.services(filter_expr=f)[1]),
            'ServiceMeta.env == "prod"',
            ["web"],
        ),
        (
            lambda f: c.catalog.services(node_meta={"rack": "r1"}, filter_expr=f)[1],
            "ServicePort == 3",
            {"web": []},
        ),
        (
            lambda f: [n["Node"] for n in c.catalog.nodes(filter_expr=f)[1]],
            'Address == "192.0.2.20"',
            ["ext"],
        ),
        (
            lambda f: sorted(c.catalog.node("weft", filter_expr=f)[1]["Services"]),
            '"primary" in Tags',
            ["db-1"],
        ),
        (
            lambda f: [e["ServiceID"] for e in c.catalog.service("web", filter_expr=f)[1]],
            "ServicePort == 3",
            ["web-x"],
        ),
        (
            lambda f: [e["Service"]["ID"] for e in c.health.service("web", filter_expr=f)[1]],
            'Node.Node == "ext"',
            ["web-x"],
        ),
        (
            lambda f: [k["CheckID"] for k in c.health.checks("web", filter_expr=f)[1]],
            'Status == "critical"',
            ["web-ready"],
        ),
        (
            lambda f: [k["CheckID"] for k in c.health.state("any", filter_expr=f)[1]],
            'ServiceID == "web-1"',
            ["web-ready"],
        ),
        (
            lambda f: [k["CheckID"] for k in c.health.node("weft", filter_expr=f)[1]],
            'Name != ""',
            ["web-ready"],
        ),
        (lambda f: list(c.agent.services(filter_expr=f)), '"v1" in Tags', ["web-1"]),
        (lambda f: list(c.agent.checks(filter_expr=f)), 'ServiceName == "web"', ["web-ready"]),
    ]
    for call, expression, expected in cases:
        assert call(expression) == expected, expression
        with pytest.raises(consul.exceptions.BadRequest, match="filter"):
            call("Nonsense ==")


def test_another_datacenter_is_no_path_not_local_data(server: WeftServer) -> None:
    c = client(server)
    c.agent.service.register("web", port=1)
    assert c.catalog.datacenters() == ["dc1"]
    assert client(server, dc="dc1").catalog.services()[1] == {"web": []}
    with pytest.raises(consul.ConsulException, match="500 No path to datacenter"):
        client(server, dc="dc2").catalog.services()
    with pytest.raises(consul.ConsulException, match="No path to datacenter"):
        client(server, dc="dc2").kv.get("x")


def test_catalog_register_declares_the_node_and_every_view_agrees(server: WeftServer) -> None:
    c = client(server)
    assert c.catalog.register(
        "ext-db",
        "192.0.2.10",
        service={"Service": "pg", "ID": "pg-1", "Port": 5432, "Tags": ["primary"]},
        check={"CheckID": "pg-alive", "Name": "pg", "Status": "passing", "ServiceID": "pg-1"},
        node_meta={"rack": "r7"},
    )
    _, health = c.health.service("pg", passing=True)
    assert [e["Node"]["Address"] for e in health] == ["192.0.2.10"]
    assert health[0]["Node"]["Meta"] == {"rack": "r7"}
    _, listing = c.catalog.service("pg")
    assert listing[0]["Address"] == "192.0.2.10" and listing[0]["NodeMeta"] == {"rack": "r7"}
    _, nodes = c.catalog.nodes()
    assert {n["Node"]: n["Address"] for n in nodes}["ext-db"] == "192.0.2.10"
    _, node = c.catalog.node("ext-db")
    assert node["Node"]["Address"] == "192.0.2.10"
    # ?node-meta= filters by it.
    assert len(c.health.service("pg", node_meta={"rack": "r7"})[1]) == 1
    assert c.health.service("pg", node_meta={"rack": "r8"})[1] == []
    _, checks = c.health.node("ext-db")
    assert [(k["CheckID"], k["Status"]) for k in checks] == [("pg-alive", "passing")]
    # An externally registered check keeps the status it was given (no TTL, no probe).
    c.catalog.register(
        "ext-db",
        "192.0.2.10",
        service={"Service": "pg", "ID": "pg-1", "Port": 5432},
        check={"CheckID": "pg-alive", "Status": "critical", "ServiceID": "pg-1"},
    )
    assert c.health.service("pg", passing=True)[1] == []
    assert c.catalog.deregister("ext-db", service_id="pg-1")
    assert c.catalog.service("pg")[1] == []
    _, bare = c.catalog.node("ext-db")  # a declared node with no services is still a node
    assert bare["Node"]["Address"] == "192.0.2.10" and bare["Services"] == {}
    assert c.catalog.node("nowhere")[1] is None  # Consul's answer for an unknown node
    assert c.catalog.deregister("ext-db")
    assert "ext-db" not in {n["Node"] for n in c.catalog.nodes()[1]}


def test_agent_checks_register_and_deregister_against_a_service(server: WeftServer) -> None:
    c = client(server)
    c.agent.service.register("api", service_id="api-1", port=80)
    assert c.agent.check.register("api-ready", check=consul.Check.ttl("30s"), service_id="api-1")
    assert c.agent.checks()["api-ready"]["ServiceID"] == "api-1"
    assert c.health.service("api", passing=True)[1] == []  # a TTL check starts critical
    c.agent.check.ttl_pass("api-ready")
    assert len(c.health.service("api", passing=True)[1]) == 1
    with pytest.raises(consul.exceptions.BadRequest, match="ServiceID"):
        c.agent.check.register("node-level", check=consul.Check.ttl("30s"))
    assert c.agent.check.deregister("api-ready")
    assert "api-ready" not in c.agent.checks()


def test_service_maintenance_takes_one_instance_out_and_back(server: WeftServer) -> None:
    c = client(server)
    c.agent.service.register("api", service_id="api-1", port=80)
    c.agent.service.register("api", service_id="api-2", port=81)
    c.agent.service.maintenance("api-1", True, reason="patching")
    _, passing = c.health.service("api", passing=True)
    assert [e["Service"]["ID"] for e in passing] == ["api-2"]
    maint = c.agent.checks()["_service_maintenance:api-1"]
    assert maint["Status"] == "critical" and maint["Notes"] == "patching"
    c.agent.service.maintenance("api-1", False)
    assert len(c.health.service("api", passing=True)[1]) == 2


def test_members_acl_self_and_consistent_404s(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server("--anonymous-reads")  # py-consul sends no token for members
    c = client(server)
    c.agent.service.register("api", port=80)
    c.catalog.register("ext-db", "192.0.2.10")
    members = c.agent.members()
    assert members[0]["Name"] == "weft" and members[0]["Tags"]["role"] == "consul"
    assert {"Name": "ext-db", "Addr": "192.0.2.10"}.items() <= members[1].items()
    me = c.acl.token.read_self()
    assert me["AccessorID"] and me["Policies"][0]["Name"] == "weft-operator"
    for path in ("/v1/agent/nope", "/v1/session/nope", "/v1/acl/nope", "/v1/event/list"):
        answer = httpx.get(server.url + path, headers=server.headers())
        assert answer.status_code == 404, path
        assert answer.headers["content-type"].startswith("text/plain"), path
    assert httpx.get(server.url + "/v1/acl/token/self").status_code == 403


def test_node_check_and_acl_answers_match_the_openapi_document(server: WeftServer) -> None:
    # These routes were declared with an untyped answer; each answer is checked against the
    # schema the document gives it now.
    doc = httpx.get(server.url + "/v1/openapi.json").json()
    with httpx.Client(base_url=server.url, headers=server.headers()) as http:

        def check(method: str, template: str, resp: httpx.Response) -> None:
            assert resp.status_code == 200, resp.text
            assert_documented(doc, method, template, resp)

        check(
            "PUT",
            "/v1/catalog/register",
            http.put(
                "/v1/catalog/register",
                json={
                    "Node": "ext",
                    "Address": "192.0.2.1",
                    "Service": {"ID": "ext-1", "Service": "ext", "Port": 1},
                },
            ),
        )
        check("GET", "/v1/catalog/datacenters", http.get("/v1/catalog/datacenters"))
        check("GET", "/v1/health/node/{node}", http.get("/v1/health/node/ext"))
        check("GET", "/v1/agent/members", http.get("/v1/agent/members"))
        check("GET", "/v1/acl/token/self", http.get("/v1/acl/token/self"))
        http.put(
            "/v1/agent/service/register", json={"ID": "doc-1", "Name": "doc", "Port": 80}
        ).raise_for_status()
        check(
            "PUT",
            "/v1/agent/check/register",
            http.put(
                "/v1/agent/check/register", json={"Name": "t", "ServiceID": "doc-1", "TTL": "9s"}
            ),
        )
        check(
            "PUT",
            "/v1/agent/service/maintenance/{service_id}",
            http.put("/v1/agent/service/maintenance/doc-1", params={"enable": "true"}),
        )
        check(
            "PUT",
            "/v1/agent/check/deregister/{check_id}",
            http.put("/v1/agent/check/deregister/t"),
        )
        check(
            "PUT",
            "/v1/catalog/deregister",
            http.put("/v1/catalog/deregister", json={"Node": "ext"}),
        )
