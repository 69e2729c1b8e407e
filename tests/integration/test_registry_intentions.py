"""Consul's intentions API on a real `weft server` and etcd: py-consul's calls work unchanged,
the legacy ID endpoints and match/check answer in Consul's shapes, bad intentions are refused
naming the field with nothing stored, and only operators write."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import consul
import httpx
import pytest

from registry.etcd import EtcdClient
from tests.harness import WeftServer

from .test_cli_traffic import cli, stored_keys

pytestmark = pytest.mark.timeout(60)

L7 = [{"Action": "allow", "HTTP": {"PathPrefix": "/public/", "Methods": ["GET"]}}]


def consul_client(server: WeftServer) -> consul.Consul:
    url = urlsplit(server.url)
    return consul.Consul(host=url.hostname, port=url.port, token=server.token)


def test_py_consul_intention_calls_work_unchanged(server: WeftServer) -> None:
    c = consul_client(server)
    ixn = c.connect.intentions
    assert ixn.upsert("web", "api", action="allow", description="the shop", meta={"team": "a"})
    assert ixn.upsert("*", "api", action="deny")
    assert ixn.upsert("web", "*", permissions=L7)

    read = ixn.read("web", "api")
    assert read["SourceName"] == "web" and read["DestinationName"] == "api"
    assert read["Action"] == "allow" and read["Description"] == "the shop"
    assert read["Meta"] == {"team": "a"} and read["Precedence"] == 9
    assert read["CreateIndex"] > 0 and read["ID"]

    listed = ixn.list()
    assert [(i["SourceName"], i["DestinationName"], i["Precedence"]) for i in listed] == [
        ("web", "api", 9),
        ("*", "api", 8),
        ("web", "*", 6),
    ]
    assert listed[2]["Permissions"] == L7
    assert [i["SourceName"] for i in ixn.list(filter_expr='Action == "deny"')] == ["*"]

    assert ixn.check("web", "api") is True
    assert ixn.check("batch", "api") is False  # the wildcard deny
    assert ixn.check("web", "db") is False  # an L7 intention answers no to a connection check
    assert ixn.check("batch", "db") is True  # the server's default (allow here)

    matched = ixn.match("destination", "api")
    pairs = [("web", "api"), ("*", "api"), ("web", "*")]  # every one applies to api, and web
    assert [(i["SourceName"], i["DestinationName"]) for i in matched["api"]] == pairs
    by_source = ixn.match("source", "web")["web"]
    assert [(i["SourceName"], i["DestinationName"]) for i in by_source] == pairs

    assert ixn.upsert("web", "api", action="deny")  # an update keeps the ID
    assert ixn.read("web", "api")["ID"] == read["ID"]
    assert ixn.read("web", "api")["Action"] == "deny"
    assert ixn.delete("web", "api")
    assert [i["SourceName"] for i in ixn.list()] == ["*", "web"]


def test_legacy_id_endpoints_create_get_update_and_delete(server: WeftServer) -> None:
    with httpx.Client(base_url=server.url, headers=server.headers()) as http:
        created = http.post(
            "/v1/connect/intentions",
            json={"SourceName": "web", "DestinationName": "db", "Action": "allow"},
        )
        assert created.status_code == 200, created.text
        ident = created.json()["ID"]
        again = http.post(
            "/v1/connect/intentions",
            json={"SourceName": "web", "DestinationName": "db", "Action": "deny"},
        )
        assert again.status_code == 409 and ident in again.text
        got = http.get(f"/v1/connect/intentions/{ident}")
        assert got.json()["Action"] == "allow" and int(got.headers["X-Consul-Index"]) > 0
        updated = http.put(
            f"/v1/connect/intentions/{ident}",
            json={**got.json(), "Action": "deny"},  # sent back as read: server fields ignored
        )
        assert updated.status_code == 200, updated.text
        assert http.get(f"/v1/connect/intentions/{ident}").json()["Action"] == "deny"
        assert http.delete(f"/v1/connect/intentions/{ident}").status_code == 200
        assert http.get(f"/v1/connect/intentions/{ident}").status_code == 404
        assert http.get("/v1/connect/intentions/exact?source=web&destination=db").status_code == 404


BAD: list[tuple[dict[str, Any], str]] = [
    ({"SourceName": "web", "DestinationName": "api", "Action": "allow", "Bogus": 1}, "Bogus"),
    (
        {"SourceName": "web", "DestinationName": "api", "Action": "allow", "Permissions": L7},
        "Permissions",
    ),
    (
        {
            "SourceName": "web",
            "DestinationName": "api",
            "Permissions": [{"Action": "allow", "HTTP": {"PathRegex": "/a/(["}}],
        },
        "Permissions[0].HTTP.PathRegex",
    ),
    ({"SourceName": "Web!", "DestinationName": "api", "Action": "allow"}, "SourceName"),
    ({"SourceName": "web", "DestinationName": "api"}, "Action"),
]


@pytest.mark.parametrize(("body", "field"), BAD, ids=[f for _, f in BAD])
async def test_a_bad_intention_is_refused_naming_the_field_and_nothing_is_stored(
    server: WeftServer, etcd_client: EtcdClient, prefix: str, body: dict[str, Any], field: str
) -> None:
    async with httpx.AsyncClient(base_url=server.url, headers=server.headers()) as http:
        for method, url in (
            ("POST", "/v1/connect/intentions"),
            ("PUT", "/v1/connect/intentions/exact?source=web&destination=api"),
        ):
            resp = await http.request(method, url, json=body)
            assert resp.status_code == 400, resp.text
            assert resp.text.startswith(f"{field}: "), resp.text
        assert (await http.get("/v1/connect/intentions")).json() == []
    assert await stored_keys(etcd_client, prefix) == []


def test_only_operators_write_intentions_and_reads_need_a_token(server: WeftServer) -> None:
    agent = httpx.post(
        server.url + "/v1/tokens",
        json={"role": "agent", "node": "vm-a"},
        headers=server.headers(),
    ).json()["secret"]
    url = server.url + "/v1/connect/intentions/exact?source=web&destination=api"
    body = {"Action": "allow"}
    assert httpx.put(url, json=body, headers={"X-Consul-Token": agent}).status_code == 403
    assert httpx.put(url, json=body).status_code == 403
    assert httpx.get(server.url + "/v1/connect/intentions").status_code == 403  # no anonymous reads
    assert (
        httpx.get(server.url + "/v1/connect/intentions", headers={"X-Consul-Token": agent}).json()
        == []
    )
    assert httpx.put(url, json=body, headers=server.headers()).status_code == 200


async def test_the_cli_refuses_a_bad_permission_before_sending_and_stores_nothing(
    server: WeftServer, etcd_client: EtcdClient, prefix: str, tmp_path
) -> None:
    perms = tmp_path / "perms.json"
    perms.write_text('[{"Action": "allow", "HTTP": {"PathRegex": "/a/(["}}]')
    bad = cli(server, "intention", "create", "web", "api", "--permissions", str(perms))
    assert bad.returncode == 64
    assert "Permissions[0].HTTP.PathRegex" in bad.stderr
    assert await stored_keys(etcd_client, prefix) == []
    made = cli(server, "intention", "create", "web", "api", "-o", "json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["Action"] == "allow"
    allowed = cli(server, "intention", "check", "web", "api")
    assert (allowed.returncode, allowed.stdout.strip()) == (0, "Allowed")
    assert [k.split("/")[1] for k in await stored_keys(etcd_client, prefix)] == ["intention"]
