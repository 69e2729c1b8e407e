"""Bad input gets a 4xx naming the problem, and changes nothing in etcd."""

from __future__ import annotations

import httpx
import pytest

from tests.harness import WeftServer, etcd_state

REGISTER = "/v1/agent/service/register"
NATIVE = "/v1/registry/instances"

CASES = [
    # (method, path, body bytes, expected status, words the error must contain)
    ("PUT", REGISTER, b'{"Name": "web", "Port": 80', 400, ["not valid JSON"]),
    ("PUT", REGISTER, b'["web"]', 400, ["expected a JSON object"]),
    ("PUT", REGISTER, b'{"Name": "web", "Prot": 80}', 400, ["Prot", "unknown field"]),
    ("PUT", REGISTER, b'{"Name": "web", "Port": "80"}', 400, ["Port", "expected a number"]),
    ("PUT", REGISTER, b'{"Name": "Web_Service", "Port": 80}', 400, ["Name", "DNS label"]),
    ("PUT", REGISTER, b'{"Name": "web", "Port": 70000}', 400, ["Port", "1-65535"]),
    ("PUT", REGISTER, b'{"Port": 80}', 400, ["Name", "required"]),
    (
        "PUT",
        REGISTER,
        b'{"Name": "web", "Port": 80, "Check": {"HTTP": "http://x/"}}',
        400,
        ["Check.interval", "need an interval"],
    ),
    (
        "PUT",
        REGISTER,
        b'{"Name": "web", "Port": 80, "Check": {"TTL": "soon"}}',
        400,
        ["Check.TTL", "not a duration"],
    ),
    (
        "PUT",
        REGISTER,
        b'{"Name": "web", "Port": 80, "Check": {"GRPC": "x:1", "Interval": "1s"}}',
        400,
        ["GRPC", "not supported"],
    ),
    (
        "PUT",
        REGISTER,
        b'{"Name": "web", "Port": 80, "Check": {"Args": ["true"], "Interval": "1s"}}',
        400,
        ["args", "agent"],
    ),
    (
        "PUT",
        REGISTER,
        b'{"Name": "web", "Port": 80, "Meta": {"bad key!": "x"}}',
        400,
        ["Meta.bad key!"],
    ),
    ("PUT", NATIVE, b'{"service": "web"}', 400, ["port", "required"]),
    ("PUT", NATIVE, b'{"service": "web", "port": 80, "protocol": "udp"}', 400, ["protocol"]),
    ("PUT", NATIVE, b'{"service": "web", "port": 80, "Port": 81}', 400, ["Port", "unknown"]),
    ("PUT", NATIVE, b'{"service": "web", "port": 80, "lease": "zz"}', 400, ["lease"]),
    ("PUT", NATIVE, b'{"service": "web", "port": 80, "lease": "abc123"}', 404, ["lease"]),
    ("PUT", NATIVE, b'{"service": "web", "port": 0}', 400, ["port"]),
    ("POST", "/v1/tokens", b'{"role": "king"}', 400, ["role"]),
    ("POST", "/v1/tokens", b'{"role": "agent"}', 400, ["node"]),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "words"),
    CASES,
    ids=[f"{c[1]}:{c[2][:40]!r}" for c in CASES],
)
async def test_bad_request_is_refused_and_changes_nothing(
    server: WeftServer, etcd, prefix, method, path, body, status, words
) -> None:
    before = await etcd_state(etcd, prefix)
    async with httpx.AsyncClient() as http:
        resp = await http.request(method, server.url + path, content=body, headers=server.headers())
    assert resp.status_code == status, resp.text
    for word in words:
        assert word in resp.text
    assert await etcd_state(etcd, prefix) == before


async def test_two_mebibyte_body_is_refused_before_it_is_read(
    server: WeftServer, etcd, prefix
) -> None:
    before = await etcd_state(etcd, prefix)
    async with httpx.AsyncClient() as http:
        resp = await http.put(
            server.url + "/v1/kv/big", content=b"x" * (2 << 20), headers=server.headers()
        )
    assert resp.status_code == 413
    assert "limit" in resp.text
    assert await etcd_state(etcd, prefix) == before


async def test_kv_value_over_512_kib_is_refused(server: WeftServer, etcd, prefix) -> None:
    before = await etcd_state(etcd, prefix)
    async with httpx.AsyncClient() as http:
        resp = await http.put(
            server.url + "/v1/kv/big", content=b"x" * (600 * 1024), headers=server.headers()
        )
    assert resp.status_code == 400
    assert "KV limit" in resp.text
    assert await etcd_state(etcd, prefix) == before


async def test_wrong_or_missing_token_is_403_and_changes_nothing(
    server: WeftServer, etcd, prefix
) -> None:
    before = await etcd_state(etcd, prefix)
    body = {"Name": "web", "Port": 80}
    async with httpx.AsyncClient() as http:
        wrong = await http.put(
            server.url + REGISTER, json=body, headers={"X-Consul-Token": "weft_wrong"}
        )
        missing = await http.put(server.url + REGISTER, json=body)
        anonymous_read = await http.get(server.url + "/v1/catalog/services")
    assert wrong.status_code == 403 and "not recognised" in wrong.text
    assert missing.status_code == 403 and "needs a token" in missing.text
    assert anonymous_read.status_code == 403
    assert await etcd_state(etcd, prefix) == before


async def test_bad_blocking_parameters(server: WeftServer) -> None:
    async with httpx.AsyncClient(headers=server.headers()) as http:
        bad_index = await http.get(server.url + "/v1/catalog/services", params={"index": "-1"})
        bad_wait = await http.get(
            server.url + "/v1/catalog/services", params={"index": "5", "wait": "forever"}
        )
    assert bad_index.status_code == 400 and "index" in bad_index.text
    assert bad_wait.status_code == 400 and "wait" in bad_wait.text


async def test_native_errors_are_json_naming_the_field(server: WeftServer) -> None:
    async with httpx.AsyncClient(headers=server.headers()) as http:
        resp = await http.put(server.url + NATIVE, json={"service": "web", "port": 99999})
    assert resp.status_code == 400
    assert resp.json()["error"]["field"] == "port"
    assert "1-65535" in resp.json()["error"]["message"]


async def test_unknown_endpoint_and_wrong_method(server: WeftServer) -> None:
    async with httpx.AsyncClient(headers=server.headers()) as http:
        missing = await http.get(server.url + "/v1/nothing/here")
        wrong = await http.post(server.url + "/v1/catalog/services")
    assert missing.status_code == 404
    assert wrong.status_code == 405 and wrong.headers["allow"] == "GET"
