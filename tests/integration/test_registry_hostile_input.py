"""Hostile input against a real `weft server`: NaN, infinities, 1e999, deep JSON, trailing
newlines, object-typed durations, bad identifiers and bad blocking parameters each get a 4xx
naming the field, nothing is stored (read back from etcd), and the server keeps answering.
KV keys with percent signs round-trip exactly (the path is decoded once)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
from urllib.parse import quote, urlsplit

import consul
import httpx
import pytest
import trio

from registry.etcd import EtcdClient
from tests.harness import WeftServer, etcd_state
from tests.harness._procs import weft_command

REGISTER = "/v1/agent/service/register"
NATIVE = "/v1/registry/instances"


def body(**fields: object) -> bytes:
    return json.dumps({"Name": "web", "Port": 80, **fields}).encode()


def native(**fields: object) -> bytes:
    return json.dumps({"service": "web", "port": 80, **fields}).encode()


DEEP = b'{"Name": "web", "Meta": ' + b"[" * 1000 + b"]" * 1000 + b"}"

CASES = [
    # (path, body, the field the error must name, a word of the reason)
    (REGISTER, b'{"Name": "web", "Port": 80, "Check": {"TTL": NaN}}', "Check.TTL", "NaN"),
    (REGISTER, b'{"Name": "web", "Port": Infinity}', "Port", "Infinity"),
    (
        REGISTER,
        b'{"Name": "web", "Port": 80, "Check": {"HTTP": "http://h/", "Interval": 1e999}}',
        "Check.Interval",
        "too large",
    ),
    (REGISTER, body(Check={"TTL": "NaN"}), "Check.TTL", "not a duration"),
    (REGISTER, body(Check={"TTL": "1e999"}), "Check.TTL", "not a finite duration"),
    (REGISTER, body(Check={"TTL": "inf"}), "Check.TTL", "not a duration"),
    (REGISTER, body(Check={"TTL": {"seconds": 10}}), "Check.TTL", "got an object"),
    (
        REGISTER,
        body(Check={"HTTP": "http://h/", "Interval": "10s", "Timeout": {"s": 1}}),
        "Check.Timeout",
        "got an object",
    ),
    (REGISTER, body(Check={"TTL": True}), "Check.TTL", "got a boolean"),
    (REGISTER, body(Port=True), "Port", "got a boolean"),
    (REGISTER, body(Weights={"Passing": 1e300}), "Weights.Passing", "64 bits"),
    (REGISTER, DEEP, "", "deeper than 32"),
    (REGISTER, body(Name="web\n"), "Name", "not a valid service name"),
    (REGISTER, body(ID="web-1\n"), "ID", "not a valid ID"),
    (REGISTER, body(Namespace="a\x00b"), "Namespace", "not a valid namespace"),
    (REGISTER, body(Namespace="a/b"), "Namespace", "not a valid namespace"),
    (REGISTER, body(Namespace="prod\n"), "Namespace", "not a valid namespace"),
    (REGISTER, body(Kind="proxy\nX"), "Kind", "not a service kind"),
    (REGISTER, body(Meta={"team\n": "x"}), "Meta.team\n", "meta key"),
    (
        REGISTER,
        body(TaggedAddresses={"lan": {"Address": "10.0.0.1", "Port": {"x": 1}}}),
        "TaggedAddresses.lan.Port",
        "expected a number",
    ),
    (NATIVE, native(source="a/b/c"), "source", "not a valid source"),
    (NATIVE, native(source="k8s\x00"), "source", "not a valid source"),
    (NATIVE, native(source="api\n"), "source", "not a valid source"),
    (NATIVE, native(kind="x\n"), "kind", "not a service kind"),
    (NATIVE, native(namespace="default\n"), "namespace", "not a valid namespace"),
    (NATIVE, native(identity="spiffe://x/ns/a/svc/b\n"), "identity", "SPIFFE"),
    (NATIVE, native(node="n1\n"), "node", "not a valid node name"),
    (NATIVE, native(address="10.0.0.1\n"), "address", "neither an IP address"),
    (NATIVE, b'{"service": "web", "port": 80, "weights": {"passing": NaN}}', "weights.passing", ""),
    (
        NATIVE,
        native(checks=[{"ttl": "10s", "deregister_critical_after": "1e999"}]),
        "checks[0].deregister_critical_after",
        "finite",
    ),
    ("/v1/registry/leases", b'{"ttl": NaN}', "ttl", "NaN"),
    ("/v1/registry/leases", b'{"ttl": 1e999}', "ttl", "too large"),
]


@pytest.mark.parametrize(
    ("path", "payload", "field", "words"),
    CASES,
    ids=[f"{c[0].rsplit('/', 1)[-1]}:{c[2] or 'body'}:{c[1][:60]!r}" for c in CASES],
)
async def test_hostile_body_is_4xx_naming_the_field_and_stores_nothing(
    server: WeftServer, etcd, prefix, path, payload, field, words
) -> None:
    before = await etcd_state(etcd, prefix)
    method = "POST" if path.endswith("leases") else "PUT"
    async with httpx.AsyncClient(headers=server.headers()) as http:
        resp = await http.request(method, server.url + path, content=payload)
    assert resp.status_code == 400, resp.text
    if path == NATIVE or path.endswith("leases"):
        error = resp.json()["error"]  # the native API answers JSON, naming the field
        assert error["field"] == (field or None)
        assert words in error["message"]
    else:  # Consul's API answers plain text that starts with the field
        assert resp.text.startswith(f"{field}: " if field else "request body"), resp.text
        assert words in resp.text
    assert await etcd_state(etcd, prefix) == before


BLOCKING = [
    "/v1/catalog/services",
    "/v1/catalog/service/web",
    "/v1/catalog/nodes",
    "/v1/catalog/node/weft",
    "/v1/health/service/web",
    "/v1/health/checks/web",
    "/v1/health/state/any",
    "/v1/kv/some/key",
    "/v1/kv/some/?recurse",
    "/v1/registry/services",
    "/v1/registry/services/web",
]
BAD_PARAMS = [
    ("wait", {"index": "1", "wait": "nan"}),
    ("wait", {"index": "1", "wait": "inf"}),
    ("wait", {"index": "1", "wait": "1e999"}),
    ("wait", {"wait": "NaN"}),  # even without an index, where Consul ignores wait
    ("index", {"index": "-1"}),
    ("index", {"index": "abc"}),
    ("index", {"index": "1e3"}),
    ("index", {"index": "99999999999999999999"}),
]


async def test_bad_index_or_wait_on_every_blocking_endpoint_is_400_and_the_server_lives(
    server: WeftServer,
) -> None:
    async with httpx.AsyncClient(headers=server.headers(), timeout=10) as http:
        for path in BLOCKING:
            for name, params in BAD_PARAMS:
                resp = await http.get(server.url + path, params=params)
                assert resp.status_code == 400, (path, params, resp.text)
                assert name in resp.text, (path, params, resp.text)
        health = await http.get(server.url + "/v1/weft/health")
    assert health.status_code == 200
    assert server.proc is not None and server.proc.alive()


@pytest.mark.parametrize("key", ["100%", "pct%25lit", "a%2Fb", "dir/x%y/z", "sp ace", "ü/%"])
async def test_kv_keys_with_percent_round_trip_exactly(
    server: WeftServer, etcd, prefix, key
) -> None:
    async with httpx.AsyncClient(headers=server.headers()) as http:
        url = server.url + "/v1/kv/" + quote(key, safe="/")
        put = await http.put(url, content=b"value")
        got = await http.get(url)
        raw = await http.get(url, params={"raw": ""})
    assert put.status_code == 200 and put.json() is True
    assert got.status_code == 200, got.text
    assert got.json()[0]["Key"] == key
    assert raw.content == b"value"
    async with EtcdClient(etcd.endpoints) as client:
        stored = await client.range(f"{prefix}kv/{key}")
    assert [kv.value for kv in stored.kvs] == [b"value"]


def test_kv_keys_with_percent_through_py_consul(server: WeftServer) -> None:
    url = urlsplit(server.url)
    c = consul.Consul(host=url.hostname, port=url.port, token=server.token)
    for key in ("rate/100%", "enc/%2F", "enc/%25"):
        assert c.kv.put(key, key.encode()) is True
        _, entry = c.kv.get(key)
        assert entry is not None, key
        assert entry["Key"] == key and entry["Value"] == key.encode()
    _, keys = c.kv.get("enc/", keys=True)
    assert sorted(keys) == ["enc/%25", "enc/%2F"]


_QUERY_VALUES = {"by": "source", "name": "web", "service": "web"}


def _blocking_paths(doc: dict) -> list[str]:
    """Every GET the document gives a `wait` parameter, with its path parameters and required
    query parameters (other than the blocking pair) filled in."""
    values = {
        "name": "web",
        "node": "weft",
        "state": "any",
        "key": "some/key",
        "session": "00000000-0000-4000-8000-000000000000",
        "kind": "ServiceDefaults",
    }
    out = []
    for template, operations in doc["paths"].items():
        get = operations.get("get")
        if get and any(p["name"] == "wait" for p in get["parameters"]):
            path = re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], template)
            required = [
                f"{p['name']}={_QUERY_VALUES[p['name']]}"
                for p in get["parameters"]
                if p.get("in") == "query" and p.get("required")
            ]
            out.append(path + ("?" + "&".join(required) if required else ""))
    return out


async def test_every_blocking_query_is_cut_at_max_blocking_wait_even_with_an_empty_wait(
    start_server,
) -> None:
    # A fuzzer sending `wait=` (the 5-minute default) or `wait=1h` held the run for minutes:
    # `max_blocking_wait` caps what a client may ask for, and the default with it.
    server = start_server("--max-blocking-wait", "1s")
    doc = httpx.get(server.url + "/v1/openapi.json").json()
    paths = _blocking_paths(doc)
    assert len(paths) >= 16, paths
    took: dict[tuple[str, str], tuple[int, float]] = {}
    async with httpx.AsyncClient(headers=server.headers(), timeout=30) as http:

        async def ask(path: str, wait: str) -> None:
            start = trio.current_time()
            # An index no view has reached: each waits as long as it is allowed to.
            url = httpx.URL(server.url + path).copy_merge_params({"index": 2**62, "wait": wait})
            resp = await http.get(url)
            took[(path, wait)] = (resp.status_code, trio.current_time() - start)

        async with trio.open_nursery() as nursery:
            for path in paths:
                for wait in ("", "10m", "1h"):
                    nursery.start_soon(ask, path, wait)
        for path in paths:
            for bad in ("nan", "-1s", "1y", "10 s"):
                url = httpx.URL(server.url + path).copy_merge_params({"index": 1, "wait": bad})
                resp = await http.get(url)
                assert resp.status_code == 400 and "wait" in resp.text, (path, bad, resp.text)
    assert {k: v for k, v in took.items() if v[1] > 4} == {}
    parked = [k for k, (status, seconds) in took.items() if status == 200 and seconds >= 0.9]
    assert len(parked) >= 30, took  # they did park, for the cap and not the 5 minutes
    assert server.proc is not None and server.proc.alive()

    refused = subprocess.run(
        [*weft_command(), "server", "--max-blocking-wait", "0s"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 64 and "max_blocking_wait" in refused.stderr


def test_a_double_slash_target_is_a_path_not_another_host(server: WeftServer) -> None:
    """`GET //evil/v1/kv/x` once answered as `GET /v1/kv/x` on host `evil`: a front proxy
    routing on the path would have let it reach what it meant to keep out."""
    httpx.put(
        server.url + "/v1/kv/x", content=b"kept-inside", headers=server.headers()
    ).raise_for_status()
    host, _, port = server.address.rpartition(":")

    def raw(target: str) -> bytes:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=5) as sock:
            sock.sendall(
                f"GET {target} HTTP/1.1\r\nHost: a\r\nX-Consul-Token: {server.token}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            out = b""
            while chunk := sock.recv(65536):
                out += chunk
        return out

    assert raw("/v1/kv/x?raw").endswith(b"kept-inside")  # the key is there
    for target in ("//evil/v1/kv/x?raw", "//evil/v1/kv/x", "///v1/kv/x?raw"):
        answer = raw(target)
        assert answer.startswith(b"HTTP/1.1 404"), answer[:200]
        assert b"kept-inside" not in answer
    answer = raw("evil/v1/kv/x?raw")
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b"kept-inside" not in answer
