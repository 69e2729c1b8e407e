"""KV writes by tokens that are not operators, under Consul-style key_prefix / key rules."""

from __future__ import annotations

import base64
from urllib.parse import urlsplit

import consul
import httpx
import pytest

from tests.harness import WeftServer


def token(server: WeftServer, **body: object) -> str:
    answer = httpx.post(server.url + "/v1/tokens", json=body, headers=server.headers())
    assert answer.status_code == 200, answer.text
    return answer.json()["secret"]


def client(server: WeftServer, secret: str | None = None) -> consul.Consul:
    url = urlsplit(server.url)
    return consul.Consul(host=url.hostname, port=url.port, token=secret or server.token)


def test_key_prefix_rules_decide_which_keys_a_token_writes(server: WeftServer) -> None:
    secret = token(
        server,
        role="read",
        key_prefix={"app/": "write", "app/frozen/": "read", "": "read"},
        key={"app/frozen/override": "write"},
    )
    app = client(server, secret)
    assert app.kv.put("app/config", "1") is True
    assert app.kv.put("app/frozen/override", "2") is True  # an exact key beats the prefix
    for denied in ("app/frozen/x", "other", "ap"):
        with pytest.raises(consul.ACLPermissionDenied, match="may not write KV key"):
            app.kv.put(denied, "x")
    with pytest.raises(consul.ACLPermissionDenied):
        app.kv.delete("app/", recurse=True)  # a recursive delete needs the prefix itself...
    assert app.kv.delete("app/config") is True  # ...a single key under it is fine
    operator = client(server)
    _, keys = operator.kv.get("", keys=True)
    assert keys == ["app/frozen/override"]


def test_deny_rules_hide_keys_from_reads(server: WeftServer) -> None:
    operator = client(server)
    for key in ("app/a", "app/secret/b", "app/secret/c"):
        operator.kv.put(key, "v")
    secret = token(server, role="read", key_prefix={"app/secret/": "deny"})
    reader = client(server, secret)
    assert reader.kv.get("app/a")[1]["Value"] == b"v"
    with pytest.raises(consul.ACLPermissionDenied, match="deny"):
        reader.kv.get("app/secret/b")
    assert [e["Key"] for e in reader.kv.get("app/", recurse=True)[1]] == ["app/a"]
    assert reader.kv.get("app/", keys=True)[1] == ["app/a"]


def test_a_transaction_with_one_forbidden_key_writes_nothing(server: WeftServer) -> None:
    secret = token(server, role="read", key_prefix={"app/": "write"})
    answer = httpx.put(
        server.url + "/v1/txn",
        json=[
            {"KV": {"Verb": "set", "Key": "app/a", "Value": base64.b64encode(b"1").decode()}},
            {"KV": {"Verb": "set", "Key": "etc/b", "Value": base64.b64encode(b"2").decode()}},
        ],
        headers={"X-Consul-Token": secret},
    )
    assert answer.status_code == 403 and "etc/b" in answer.text
    assert client(server).kv.get("app/a")[1] is None


def test_kv_rules_are_checked_when_the_token_is_made(server: WeftServer) -> None:
    for body, field in (
        ({"role": "read", "key_prefix": {"app/": "admin"}}, "key_prefix.app/"),
        ({"role": "operator", "key_prefix": {"app/": "write"}}, "key_prefix"),
        ({"role": "read", "key": {"a": 1}}, "key"),
        ({"role": "read", "key": {"a": "own"}}, "key.a"),
    ):
        answer = httpx.post(server.url + "/v1/tokens", json=body, headers=server.headers())
        assert answer.status_code == 400, body
        assert answer.json()["error"]["field"] == field, answer.text
    shown = httpx.get(server.url + "/v1/tokens", headers=server.headers()).json()
    assert all("key_prefix" not in t for t in shown)  # nothing was created
