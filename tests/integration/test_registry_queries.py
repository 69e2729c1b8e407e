"""Blocking queries, indexes, KV semantics and server-run health checks."""

from __future__ import annotations

import json
import socket
import time

import httpx
import trio

from tests.harness import WeftServer, assert_documented, async_wait_until, wait_until


async def test_every_read_carries_an_index_of_at_least_one(server: WeftServer) -> None:
    async with httpx.AsyncClient(headers=server.headers()) as http:
        for path in (
            "/v1/catalog/services",
            "/v1/catalog/service/none",
            "/v1/health/service/none",
            "/v1/health/state/any",
            "/v1/catalog/nodes",
            "/v1/kv/missing",
            "/v1/kv/missing/?recurse",
        ):
            resp = await http.get(server.url + path)
            assert resp.status_code in (200, 404), path
            assert int(resp.headers["X-Consul-Index"]) >= 1, path


async def test_blocking_wakes_only_for_the_service_it_covers(server: WeftServer) -> None:
    async with httpx.AsyncClient(headers=server.headers(), timeout=30) as http:
        await http.put(
            server.url + "/v1/agent/service/register", json={"Name": "watched", "Port": 1}
        )
        first = await http.get(server.url + "/v1/health/service/watched")
        index = int(first.headers["X-Consul-Index"])
        results: list[tuple[float, httpx.Response]] = []

        async def block() -> None:
            started = trio.current_time()
            resp = await http.get(
                server.url + "/v1/health/service/watched", params={"index": index, "wait": "20s"}
            )
            results.append((trio.current_time() - started, resp))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(block)
            await async_wait_until(
                lambda: _waiting(http, server), timeout=10, what="the blocking query"
            )
            # A change to another service must not wake it...
            await http.put(
                server.url + "/v1/agent/service/register", json={"Name": "unrelated", "Port": 2}
            )
            await trio.sleep(0.5)
            assert results == []
            # ...but a change to the watched one must.
            await http.put(
                server.url + "/v1/agent/service/register",
                json={"Name": "watched", "ID": "watched-2", "Port": 3},
            )
        elapsed, resp = results[0]
        assert elapsed < 10
        assert int(resp.headers["X-Consul-Index"]) > index
        assert len(resp.json()) == 2


async def _waiting(http: httpx.AsyncClient, server: WeftServer) -> bool:
    return (await http.get(server.url + "/v1/weft/health")).json()["blocking_queries"] >= 1


async def test_kv_blocking_and_prefix_index(server: WeftServer) -> None:
    async with httpx.AsyncClient(headers=server.headers(), timeout=30) as http:
        await http.put(server.url + "/v1/kv/app/a", content=b"1")
        listing = await http.get(server.url + "/v1/kv/app/", params={"recurse": ""})
        index = int(listing.headers["X-Consul-Index"])
        assert index == max(e["ModifyIndex"] for e in listing.json())
        results: list[httpx.Response] = []

        async def block() -> None:
            results.append(
                await http.get(
                    server.url + "/v1/kv/app/",
                    params={"recurse": "", "index": index, "wait": "20s"},
                )
            )

        async with trio.open_nursery() as nursery:
            nursery.start_soon(block)
            await async_wait_until(
                lambda: _waiting(http, server), timeout=10, what="the KV blocking query"
            )
            await http.delete(server.url + "/v1/kv/app/a")
        assert results[0].status_code == 404  # deleted: empty prefix
        assert int(results[0].headers["X-Consul-Index"]) > index  # a delete moves the index


async def test_kv_raw_keys_separator_flags_and_cas(server: WeftServer) -> None:
    async with httpx.AsyncClient(headers=server.headers()) as http:
        for key in ("svc/a/x", "svc/a/y", "svc/b", "svc/c/z"):
            assert (await http.put(server.url + f"/v1/kv/{key}", content=key.encode())).json()
        raw = await http.get(server.url + "/v1/kv/svc/b", params={"raw": ""})
        assert raw.content == b"svc/b"
        keys = await http.get(server.url + "/v1/kv/svc/", params={"keys": "", "separator": "/"})
        assert keys.json() == ["svc/a/", "svc/b", "svc/c/"]
        await http.put(server.url + "/v1/kv/flagged", content=b"v", params={"flags": "42"})
        entry = (await http.get(server.url + "/v1/kv/flagged")).json()[0]
        assert entry["Flags"] == 42
        stale = await http.delete(
            server.url + "/v1/kv/flagged", params={"cas": str(entry["ModifyIndex"] - 1)}
        )
        assert stale.json() is False
        fresh = await http.delete(
            server.url + "/v1/kv/flagged", params={"cas": str(entry["ModifyIndex"])}
        )
        assert fresh.json() is True


def _http_app(port_holder: list[int], status: list[int]) -> socket.socket:
    """A tiny real HTTP server on a thread whose answer the test can change."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status[0])
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port_holder.append(httpd.server_address[1])
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd  # type: ignore[return-value]


def test_server_runs_http_and_tcp_checks_of_api_registered_services(server: WeftServer) -> None:
    port: list[int] = []
    status = [200]
    httpd = _http_app(port, status)
    try:
        headers = server.headers()
        httpx.put(
            server.url + "/v1/agent/service/register",
            headers=headers,
            json={
                "Name": "webapp",
                "ID": "webapp-1",
                "Port": port[0],
                "Checks": [
                    {"HTTP": f"http://127.0.0.1:{port[0]}/health", "Interval": "1s"},
                    {"TCP": f"127.0.0.1:{port[0]}", "Interval": "1s"},
                ],
            },
        ).raise_for_status()

        def statuses() -> dict[str, str]:
            entries = httpx.get(server.url + "/v1/health/service/webapp", headers=headers).json()
            return {c["CheckID"]: c["Status"] for c in entries[0]["Checks"]}

        wait_until(
            lambda: (
                statuses() == {"service:webapp-1:1": "passing", "service:webapp-1:2": "passing"}
            ),
            timeout=10,
            what="both checks to pass",
        )
        status[0] = 429
        wait_until(
            lambda: statuses()["service:webapp-1:1"] == "warning",
            timeout=10,
            what="429 to mean warning",
        )
        status[0] = 500
        wait_until(
            lambda: statuses()["service:webapp-1:1"] == "critical",
            timeout=10,
            what="500 to mean critical",
        )
        entries = httpx.get(server.url + "/v1/health/service/webapp", headers=headers).json()
        output = {c["CheckID"]: c["Output"] for c in entries[0]["Checks"]}
        assert "500" in output["service:webapp-1:1"]
    finally:
        httpd.shutdown()  # type: ignore[attr-defined]
        httpd.server_close()  # type: ignore[attr-defined]
    wait_until(
        lambda: statuses()["service:webapp-1:2"] == "critical",
        timeout=10,
        what="the TCP check to fail once the port is closed",
    )


def test_maintenance_takes_a_node_out_of_passing(server: WeftServer) -> None:
    headers = server.headers()
    httpx.put(
        server.url + "/v1/agent/service/register", headers=headers, json={"Name": "svc", "Port": 1}
    ).raise_for_status()

    def passing() -> list:
        return httpx.get(
            server.url + "/v1/health/service/svc", params={"passing": ""}, headers=headers
        ).json()

    assert len(passing()) == 1
    httpx.put(
        server.url + "/v1/agent/maintenance",
        params={"enable": "true", "reason": "kernel upgrade"},
        headers=headers,
    ).raise_for_status()
    assert passing() == []
    checks = httpx.get(server.url + "/v1/health/service/svc", headers=headers).json()[0]["Checks"]
    assert checks[0]["CheckID"] == "_node_maintenance" and checks[0]["Notes"] == "kernel upgrade"
    httpx.put(
        server.url + "/v1/agent/maintenance", params={"enable": "false"}, headers=headers
    ).raise_for_status()
    assert len(passing()) == 1


def test_http_keep_alive_pipelining_and_slow_clients(server: WeftServer) -> None:
    host, port = server.address.rsplit(":", 1)
    token = server.token
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        request = (
            f"GET /v1/catalog/services HTTP/1.1\r\nHost: x\r\nX-Consul-Token: {token}\r\n\r\n"
        ).encode()
        sock.sendall(request * 3)  # pipelined
        data = b""
        deadline = time.monotonic() + 10
        while data.count(b"HTTP/1.1 200") < 3 and time.monotonic() < deadline:
            data += sock.recv(65536)
        assert data.count(b"HTTP/1.1 200") == 3
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"GET /v1/catalog/services HTTP/1.1\r\nHost: x\r\n")  # never finished
        started = time.monotonic()
        answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 408")
        assert 5 < time.monotonic() - started < 20  # the head timeout (10 s)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        )
        answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 400")
        assert b"Transfer-Encoding" in answer


async def test_blocking_waiter_is_released_when_its_client_goes_away(server: WeftServer) -> None:
    host, port = server.address.rsplit(":", 1)
    async with httpx.AsyncClient(headers=server.headers()) as http:
        index = int((await http.get(server.url + "/v1/catalog/services")).headers["X-Consul-Index"])
        stream = await trio.open_tcp_stream(host, int(port))
        await stream.send_all(
            f"GET /v1/catalog/services?index={index}&wait=5m HTTP/1.1\r\nHost: x\r\n"
            f"X-Consul-Token: {server.token}\r\n\r\n".encode()
        )
        await async_wait_until(
            lambda: _waiting(http, server), timeout=10, what="the query to block"
        )
        await stream.aclose()

        async def released() -> bool:
            return (await http.get(server.url + "/v1/weft/health")).json()["blocking_queries"] == 0

        await async_wait_until(released, timeout=10, what="the waiter to be released")


def test_openapi_document_is_served(server: WeftServer) -> None:
    doc = httpx.get(server.url + "/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert "/v1/registry/instances" in doc["paths"]
    assert "put" in doc["paths"]["/v1/registry/instances"]
    json.dumps(doc)


def test_health_and_agent_service_views_match_the_openapi_document(server: WeftServer) -> None:
    # A health entry's Service has no Datacenter (as in Consul) while the document required it;
    # the agent's own service views do carry it.
    doc = httpx.get(server.url + "/v1/openapi.json").json()
    with httpx.Client(base_url=server.url, headers=server.headers()) as http:
        http.put(
            "/v1/agent/service/register",
            json={"ID": "doc-1", "Name": "doc", "Port": 80, "Check": {"TTL": "60s"}},
        ).raise_for_status()
        entries = http.get("/v1/health/service/doc")
        assert "Datacenter" not in entries.json()[0]["Service"]
        assert_documented(doc, "GET", "/v1/health/service/{name}", entries)
        one = http.get("/v1/agent/service/doc-1")
        assert one.json()["Datacenter"] == "dc1"
        assert_documented(doc, "GET", "/v1/agent/service/{service_id}", one)
        assert_documented(doc, "GET", "/v1/agent/services", http.get("/v1/agent/services"))
        assert_documented(doc, "GET", "/v1/health/node/{node}", http.get("/v1/health/node/weft"))
        assert_documented(doc, "GET", "/v1/agent/members", http.get("/v1/agent/members"))


def test_health_service_filters_by_tag_and_passing(server: WeftServer) -> None:
    with httpx.Client(base_url=server.url, headers=server.headers()) as http:
        for sid, tags, status in (
            ("web-1", ["v1"], "passing"),
            ("web-2", ["v2", "canary"], "passing"),
            ("web-3", ["v2"], "critical"),
        ):
            http.put(
                "/v1/agent/service/register",
                json={
                    "ID": sid,
                    "Name": "web",
                    "Port": 80,
                    "Tags": tags,
                    "Check": {"TTL": "60s", "Status": status},
                },
            ).raise_for_status()

        def ids(**params: str) -> list[str]:
            resp = http.get("/v1/health/service/web", params=params)
            resp.raise_for_status()
            return sorted(e["Service"]["ID"] for e in resp.json())

        assert ids() == ["web-1", "web-2", "web-3"]
        assert ids(tag="v2") == ["web-2", "web-3"]
        assert ids(tag="v2", passing="") == ["web-2"]
        assert ids(tag="nope") == []
        assert ids(passing="") == ["web-1", "web-2"]


def test_native_and_resource_answers_match_the_openapi_document(server: WeftServer) -> None:
    # These answers were declared as "some object"; each is declared as it is now.
    doc = httpx.get(server.url + "/v1/openapi.json").json()
    subset = {
        "apiVersion": "weft.dev/v1",
        "kind": "Subset",
        "metadata": {"name": "doc-v1"},
        "spec": {"service": "doc", "subset": "v1", "tags": ["v1"]},
    }
    with httpx.Client(base_url=server.url, headers=server.headers()) as http:

        def check(method: str, template: str, resp: httpx.Response) -> httpx.Response:
            assert resp.status_code == 200, resp.text
            assert_documented(doc, method, template, resp)
            return resp

        lease = check("POST", "/v1/registry/leases", http.post("/v1/registry/leases", json={}))
        lease_id = lease.json()["id"]
        check(
            "PUT",
            "/v1/registry/instances",
            http.put("/v1/registry/instances", json={"service": "doc", "id": "d1", "port": 80}),
        )
        check(
            "DELETE",
            "/v1/registry/instances/{service}/{node}/{id}",
            http.delete("/v1/registry/instances/doc/weft/d1"),
        )
        check(
            "PUT",
            "/v1/registry/maintenance/{node}",
            http.put("/v1/registry/maintenance/n1", json={"enable": True, "reason": "doc"}),
        )
        check("GET", "/v1/registry/maintenance", http.get("/v1/registry/maintenance"))
        check(
            "DELETE", "/v1/registry/leases/{lease}", http.delete(f"/v1/registry/leases/{lease_id}")
        )
        for dry_run in (True, False, False):  # would create, created, unchanged
            check(
                "POST",
                "/v1/resources",
                http.post("/v1/resources", json={"resources": [subset], "dry_run": dry_run}),
            )
        check("GET", "/v1/resources", http.get("/v1/resources"))
        check("GET", "/v1/weft/health", http.get("/v1/weft/health"))
        check(
            "DELETE",
            "/v1/resources/{kind}/{name}",
            http.delete("/v1/resources/Subset/doc-v1"),
        )
