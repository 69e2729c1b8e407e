"""Consul's /v1/txn on a real `weft server`: one etcd transaction, all or nothing."""

from __future__ import annotations

import base64
from urllib.parse import urlsplit

import consul
import consul.exceptions
import httpx
import pytest

from registry.etcd import EtcdClient
from tests.harness import WeftServer, assert_documented


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class Txn:
    """py-consul's own `txn.put`. It sends no token on this call (it expects an agent with a
    default token, as Consul agents in ACL clusters have), so the token goes on the client's
    HTTP session, where every request carries it."""

    def __init__(self, server: WeftServer) -> None:
        self.consul = client(server)
        self.consul.http.session.headers["X-Consul-Token"] = server.token or ""

    def put(self, ops: list[dict[str, object]]) -> dict:
        return self.consul.txn.put(ops)


def client(server: WeftServer) -> consul.Consul:
    url = urlsplit(server.url)
    return consul.Consul(host=url.hostname, port=url.port, token=server.token)


async def test_a_failing_cas_in_the_middle_applies_nothing(
    server: WeftServer, etcd_client: EtcdClient, prefix: str
) -> None:
    async with httpx.AsyncClient(base_url=server.url, headers=server.headers()) as http:
        assert (await http.put("/v1/kv/balance", content=b"100")).json() is True
        assert (await http.put("/v1/kv/audit/old/1", content=b"kept")).json() is True
        entry = (await http.get("/v1/kv/balance")).json()[0]
        before = await etcd_client.range_all(prefix)
        answer = await http.put(
            "/v1/txn",
            json=[
                {"KV": {"Verb": "set", "Key": "audit/1", "Value": b64("debit")}},
                {
                    "KV": {
                        "Verb": "cas",
                        "Key": "balance",
                        "Value": b64("50"),
                        "Index": entry["ModifyIndex"] - 1,
                    }
                },
                {"KV": {"Verb": "delete-tree", "Key": "audit/old/"}},
                {"KV": {"Verb": "set", "Key": "audit/2", "Value": b64("credit")}},
            ],
        )
        assert answer.status_code == 409, answer.text
        body = answer.json()
        assert body["Results"] is None
        assert body["Errors"] == [
            {
                "OpIndex": 1,
                "What": f"current modify index {entry['ModifyIndex']} != "
                f"{entry['ModifyIndex'] - 1}",
            }
        ]
    # Read back from etcd itself: not one key was written, changed or deleted.
    after = await etcd_client.range_all(prefix)
    assert after.revision == before.revision
    assert await etcd_client.get(f"{prefix}kv/audit/1") is None
    assert await etcd_client.get(f"{prefix}kv/audit/2") is None
    assert await etcd_client.get(f"{prefix}kv/audit/old/1") is not None
    balance = await etcd_client.get(f"{prefix}kv/balance")
    assert balance is not None and balance.value == b"100"


def test_kv_verbs_with_sessions_and_reads_in_one_transaction(server: WeftServer) -> None:
    c = client(server)
    txn = Txn(server)
    c.kv.put("cfg/a", "1", flags=7)
    _, a = c.kv.get("cfg/a")
    session = c.session.create(lock_delay=0)
    answer = txn.put(
        [
            {"KV": {"Verb": "check-index", "Key": "cfg/a", "Index": a["ModifyIndex"]}},
            {"KV": {"Verb": "check-not-exists", "Key": "cfg/b"}},
            {"KV": {"Verb": "set", "Key": "cfg/b", "Value": b64("2")}},
            {"KV": {"Verb": "lock", "Key": "cfg/leader", "Value": b64("me"), "Session": session}},
            {"KV": {"Verb": "get", "Key": "cfg/a"}},
            {"KV": {"Verb": "get-tree", "Key": "cfg/"}},
        ]
    )
    assert answer["Errors"] is None
    results = [r["KV"] for r in answer["Results"]]
    assert [r["Key"] for r in results] == [
        "cfg/a",  # check-index
        "cfg/b",  # set
        "cfg/leader",  # lock
        "cfg/a",  # get
        "cfg/a",  # get-tree, in key order, seeing the writes before it
        "cfg/b",
        "cfg/leader",
    ]
    assert results[2]["Session"] == session and results[2]["LockIndex"] == 1
    assert results[3]["Value"] == b64("1") and results[3]["Flags"] == 7
    assert results[1]["Value"] is None  # writes report their entry, not the value
    assert {r["Key"]: r["Value"] for r in results[4:]} == {
        "cfg/a": b64("1"),
        "cfg/b": b64("2"),
        "cfg/leader": b64("me"),
    }
    assert results[1]["ModifyIndex"] == results[5]["ModifyIndex"]  # one revision for all
    assert c.kv.get("cfg/leader")[1]["Session"] == session

    other = c.session.create(lock_delay=0)
    assert c.kv.put("busy", "", acquire=session)
    with pytest.raises(consul.exceptions.ClientError, match="lock is already held"):
        txn.put(
            [
                {"KV": {"Verb": "delete-tree", "Key": "cfg/"}},
                {"KV": {"Verb": "lock", "Key": "busy", "Session": other}},
            ]
        )
    assert c.kv.get("cfg/a")[1] is not None  # the delete-tree before it was not applied
    done = txn.put(
        [
            {"KV": {"Verb": "check-session", "Key": "cfg/leader", "Session": session}},
            {"KV": {"Verb": "unlock", "Key": "cfg/leader", "Session": session}},
            {"KV": {"Verb": "delete-cas", "Key": "cfg/a", "Index": a["ModifyIndex"]}},
        ]
    )
    assert done["Errors"] is None
    assert c.kv.get("cfg/a")[1] is None and "Session" not in c.kv.get("cfg/leader")[1]


def test_service_operations_in_a_transaction(server: WeftServer) -> None:
    c = client(server)
    txn = Txn(server)
    answer = txn.put(
        [
            {
                "Service": {
                    "Verb": "set",
                    "Node": "weft",
                    "Service": {"ID": "api-1", "Service": "api", "Port": 8080, "Tags": ["v1"]},
                }
            },
            {"KV": {"Verb": "set", "Key": "api/version", "Value": b64("v1")}},
        ]
    )
    assert answer["Results"][0]["Service"]["ID"] == "api-1"
    assert answer["Results"][0]["Service"]["Port"] == 8080
    assert [e["ServiceID"] for e in c.catalog.service("api")[1]] == ["api-1"]
    got = txn.put([{"Service": {"Verb": "get", "Node": "weft", "Service": {"ID": "api-1"}}}])
    assert got["Results"][0]["Service"]["Tags"] == ["v1"]
    checked = txn.put(
        [
            {
                "Check": {
                    "Verb": "set",
                    "Check": {"CheckID": "api-ok", "ServiceID": "api-1", "Status": "passing"},
                }
            },
            {"KV": {"Verb": "set", "Key": "api/healthy", "Value": b64("yes")}},
        ]
    )
    assert checked["Results"][0]["Check"]["Status"] == "passing"
    assert [e["Service"]["ID"] for e in c.health.service("api", passing=True)[1]] == ["api-1"]
    txn.put([{"Check": {"Verb": "set", "Check": {"CheckID": "api-ok", "Status": "critical"}}}])
    assert c.health.service("api", passing=True)[1] == []
    got = txn.put([{"Check": {"Verb": "get", "Check": {"CheckID": "api-ok"}}}])
    assert got["Results"][0]["Check"]["Status"] == "critical"
    txn.put([{"Check": {"Verb": "delete", "Check": {"CheckID": "api-ok"}}}])
    assert "api-ok" not in c.agent.checks()
    txn.put([{"Service": {"Verb": "delete", "Node": "weft", "Service": {"ID": "api-1"}}}])
    assert c.catalog.service("api")[1] == []


@pytest.mark.parametrize(
    ("ops", "named"),
    [
        ([{"KV": {"Verb": "explode", "Key": "a"}}], "[0].KV.Verb"),
        ([{"KV": {"Verb": "set", "Key": "a", "Value": "%%%"}}], "[0].KV.Value"),
        ([{"KV": {"Verb": "cas", "Key": "a"}}], "[0].KV.Index"),
        ([{"KV": {"Verb": "set", "Key": "a"}}, {"KV": {"Verb": "set", "Key": "a"}}], "[1].KV.Key"),
        ([{"KV": {"Verb": "set", "Key": "a"}, "Service": {}}], "[0]"),
        ([{"Node": {"Verb": "set"}}], "[0].Node"),
        ([{"Check": {"Verb": "set", "Check": {"CheckID": "x"}}}], "[0].Check.Check.ServiceID"),
        ([{"KV": {"Verb": "set", "Key": f"k{i}"}} for i in range(65)], "body"),
        ({"KV": {}}, "body"),
    ],
)
def test_bad_transactions_are_refused_naming_the_operation(
    server: WeftServer, ops: object, named: str
) -> None:
    answer = httpx.put(server.url + "/v1/txn", json=ops, headers=server.headers())
    assert answer.status_code == 400, answer.text
    assert answer.text.startswith(named), answer.text
    assert httpx.get(server.url + "/v1/kv/?recurse", headers=server.headers()).status_code == 404


def test_a_transaction_needs_the_right_to_write_what_it_writes(server: WeftServer) -> None:
    reader = httpx.post(
        server.url + "/v1/tokens", json={"role": "read"}, headers=server.headers()
    ).json()["secret"]
    answer = httpx.put(
        server.url + "/v1/txn",
        json=[{"KV": {"Verb": "set", "Key": "a", "Value": b64("x")}}],
        headers={"X-Consul-Token": reader},
    )
    assert answer.status_code == 403
    reads = httpx.put(
        server.url + "/v1/txn",
        json=[{"KV": {"Verb": "get-tree", "Key": ""}}],
        headers={"X-Consul-Token": reader},
    )
    assert reads.status_code == 200 and reads.json()["Results"] == []


def test_transaction_answers_match_the_openapi_document(server: WeftServer) -> None:
    # /v1/txn was routed with an untyped answer; both of its answers are declared now.
    doc = httpx.get(server.url + "/v1/openapi.json").json()
    with httpx.Client(base_url=server.url, headers=server.headers()) as http:
        done = http.put(
            "/v1/txn",
            json=[
                {"KV": {"Verb": "set", "Key": "doc/a", "Value": b64("1")}},
                {"Service": {"Verb": "set", "Service": {"ID": "doc-1", "Service": "doc"}}},
            ],
        )
        assert done.status_code == 200, done.text
        assert_documented(doc, "PUT", "/v1/txn", done)
        http.put("/v1/kv/doc/b", content=b"2").raise_for_status()
        read = http.put("/v1/txn", json=[{"KV": {"Verb": "get", "Key": "doc/b"}}])
        assert read.json()["Results"][0]["KV"]["Key"] == "doc/b"
        assert_documented(doc, "PUT", "/v1/txn", read)
        lost = http.put("/v1/txn", json=[{"KV": {"Verb": "cas", "Key": "doc/a", "Index": 1}}])
        assert lost.status_code == 409 and lost.json()["Errors"][0]["OpIndex"] == 0
        assert_documented(doc, "PUT", "/v1/txn", lost)
