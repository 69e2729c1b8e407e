"""End to end on one machine: app A → A's sidecar → mTLS → B's sidecar → app B.

A reaches every service both through a per-upstream outbound port and through its HTTP_PROXY
listener. Everything is real: `weft proxy` processes, TLS 1.3 with SPIFFE certificates, an
h11 application, a websockets echo server, a TCP line echo and Debian's redis-server.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
import websockets.sync.client

from tests.harness import wait_until

from .test_proxy_support import (
    Background,
    HttpApp,
    LineEcho,
    Mesh,
    ProxyProc,
    proxies,
    redis_server,
    run_quietly,
    status_of,
    websocket_echo,
)

pytestmark = pytest.mark.timeout(90)

MIB = 1024 * 1024
BLOCK = os.urandom(256 * 1024)


@dataclass
class World:
    a: ProxyProc
    b: ProxyProc
    app_b: HttpApp
    mesh: Mesh

    def port(self, upstream: str) -> int:
        return self.a.listener(f"upstream/{upstream}")

    @property
    def http_proxy(self) -> str:
        return f"http://127.0.0.1:{self.a.listener('forward')}"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("e2e")
    mesh = Mesh(root)
    with Background() as bg, websocket_echo() as ws_port, redis_server(root) as redis_port:
        app_b = HttpApp("b")
        bg.start(app_b.serve)
        echo = LineEcho()
        bg.start(echo.serve)
        b = ProxyProc(root, "b", mesh.snapshot("b", app_port=app_b.port))
        ws = ProxyProc(root, "ws", mesh.snapshot("ws", app_port=ws_port))
        line = ProxyProc(root, "echo", mesh.snapshot("echo", app_port=echo.port, protocol="tcp"))
        rds = ProxyProc(root, "redis", mesh.snapshot("redis", app_port=redis_port, protocol="tcp"))
        with proxies(b, ws, line, rds):
            dead = socket.socket()
            dead.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
            upstreams = [
                mesh.upstream("b", [b.inbound_port]),
                mesh.upstream("ws", [ws.inbound_port]),
                mesh.upstream("echo", [line.inbound_port], protocol="tcp"),
                mesh.upstream("redis", [rds.inbound_port], protocol="tcp"),
                mesh.upstream("dead", [dead.getsockname()[1]]),
                mesh.upstream(
                    "slow",
                    [b.inbound_port],
                    identity=mesh.spiffe("b"),
                    timeouts={"response_ms": 300},
                ),
            ]
            a = ProxyProc(root, "a", mesh.snapshot("a", upstreams=upstreams, forward_proxy=True))
            with proxies(a):
                yield World(a, b, app_b, mesh)
            dead.close()


def client(world: World, *, via_proxy: bool) -> httpx.Client:
    if via_proxy:
        return httpx.Client(proxy=world.http_proxy, trust_env=False, timeout=30)
    return httpx.Client(trust_env=False, timeout=30)


def url(world: World, path: str, *, via_proxy: bool) -> str:
    return f"http://b{path}" if via_proxy else f"http://127.0.0.1:{world.port('b')}{path}"


@pytest.mark.parametrize("via_proxy", [False, True], ids=["outbound-port", "http-proxy"])
def test_get_reaches_b_with_a_verified_identity_and_trace_headers(
    world: World, via_proxy: bool
) -> None:
    headers = {
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "tracestate": "congo=t61rcWkgMzE",
        "x-b3-traceid": "80f198ee56343ba864fe8b2a57d3eff7",
        "b3": "80f198ee56343ba8-e457b5a2e4d86bd1-1",
        "connection": "keep-alive, x-hop",
        "x-hop": "must not travel",
        "x-weft-client-id": "spiffe://weft.test/ns/default/svc/forged",
    }
    with client(world, via_proxy=via_proxy) as c:
        resp = c.get(url(world, "/hello?x=1", via_proxy=via_proxy), headers=headers)
    assert resp.status_code == 200
    seen = resp.json()
    assert seen["instance"] == "b" and seen["path"] == "/hello?x=1"
    got = seen["headers"]
    assert got["x-weft-client-id"] == world.mesh.spiffe("a")  # set by B's sidecar from mTLS
    for name in ("traceparent", "tracestate", "x-b3-traceid", "b3"):
        assert got[name] == headers[name]
    assert "x-hop" not in got and "connection" not in got
    assert len(got["x-request-id"]) >= 16
    # an id the client chose is kept
    with client(world, via_proxy=via_proxy) as c:
        resp = c.get(url(world, "/", via_proxy=via_proxy), headers={"x-request-id": "mine"})
    assert resp.json()["headers"]["x-request-id"] == "mine"


def test_unmodified_apps_that_honour_http_proxy_reach_services_by_name(world: World) -> None:
    # curl and Python's urllib read the proxy from the environment, as deployed apps do.
    env = {**os.environ, "http_proxy": world.http_proxy, "HTTP_PROXY": world.http_proxy}
    env.pop("no_proxy", None)
    env.pop("NO_PROXY", None)
    curl = run_quietly(["curl", "-s", "-f", "http://b/from-curl"], env=env)
    assert curl.returncode == 0, curl.stderr
    assert json.loads(curl.stdout)["path"] == "/from-curl"
    script = "import urllib.request; print(urllib.request.urlopen('http://b/from-urllib').read().decode())"
    python = run_quietly([sys.executable, "-c", script], env=env)
    assert python.returncode == 0, python.stderr
    assert json.loads(python.stdout)["headers"]["x-weft-client-id"] == world.mesh.spiffe("a")


def _chunks(total: int) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        piece = BLOCK[: min(len(BLOCK), total - sent)]
        sent += len(piece)
        yield piece


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.mark.parametrize("via_proxy", [False, True], ids=["outbound-port", "http-proxy"])
def test_a_10_mib_post_streams_through_both_sidecars(world: World, via_proxy: bool) -> None:
    expected = hashlib.sha256()
    for piece in _chunks(10 * MIB):
        expected.update(piece)
    with client(world, via_proxy=via_proxy) as c:
        # a generator body goes out chunked; `content` with a length goes out with Content-Length
        chunked = c.post(url(world, "/echo", via_proxy=via_proxy), content=_chunks(10 * MIB))
        whole = b"".join(_chunks(10 * MIB))
        sized = c.post(url(world, "/echo", via_proxy=via_proxy), content=whole)
    for resp in (chunked, sized):
        assert resp.status_code == 200
        assert resp.json() == {"length": 10 * MIB, "sha256": expected.hexdigest()}
    # Streamed, not buffered: neither sidecar ever held 10 MiB.
    for proxy in (world.a, world.b):
        assert _peak_rss_mib(proxy.proc.pid) < 45, proxy.name


@pytest.mark.parametrize("via_proxy", [False, True], ids=["outbound-port", "http-proxy"])
def test_chunked_responses_come_through_chunked(world: World, via_proxy: bool) -> None:
    with client(world, via_proxy=via_proxy) as c:
        resp = c.get(url(world, "/chunked?parts=40&size=1000", via_proxy=via_proxy))
    assert resp.status_code == 200
    assert resp.headers["transfer-encoding"] == "chunked"
    assert resp.content == b"".join(str(i % 10).encode() * 1000 for i in range(40))


def test_a_client_leaving_mid_response_costs_nothing_but_its_connection(world: World) -> None:
    failures = world.a.metric("weft_proxy_upstream_failures_total", upstream="b")
    with socket.create_connection(("127.0.0.1", world.port("b")), timeout=10) as s:
        s.sendall(b"GET /chunked?parts=200&size=10000 HTTP/1.1\r\nHost: b\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 200")
    # the upstream is not blamed, nothing is retried, and the next request is served
    with client(world, via_proxy=False) as c:
        assert c.get(url(world, "/after", via_proxy=False)).status_code == 200
    assert world.a.metric("weft_proxy_upstream_failures_total", upstream="b") == failures
    assert "connection handler failed" not in world.a.log() + world.b.log()


def test_head_and_expect_100_continue(world: World) -> None:
    with client(world, via_proxy=False) as c:
        head = c.head(url(world, "/", via_proxy=False))
    assert (
        head.status_code == 200 and head.content == b"" and int(head.headers["content-length"]) > 0
    )
    port = world.port("b")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(
            b"POST /echo HTTP/1.1\r\nHost: b\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        interim = s.recv(100)
        assert interim.startswith(b"HTTP/1.1 100 ")  # the interim answer comes first
        s.sendall(b"hello")
        final = b""
        while b"}" not in final:
            final += s.recv(4096)
    assert status_of(final) == 200 and b'"length": 5' in final


def test_an_http10_client_gets_an_http10_compatible_answer(world: World) -> None:
    port = world.port("b")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /old HTTP/1.0\r\n\r\n")  # no Host, no keep-alive
        answer = b""
        while chunk := s.recv(65536):  # the proxy closes after the answer
            answer += chunk
    assert status_of(answer) == 200
    assert b"Connection: close" in answer and b"chunked" not in answer.lower()
    assert b'"path": "/old"' in answer


def test_websocket_echo_through_the_outbound_port_and_http_proxy(world: World) -> None:
    port = world.port("ws")
    with websockets.sync.client.connect(f"ws://127.0.0.1:{port}/", proxy=None) as ws:
        for message in ("hello", "x" * 100_000, b"\x00\x01binary"):
            ws.send(message)
            assert ws.recv(timeout=10) == message
    # through HTTP_PROXY, websockets tunnels with CONNECT ws:80
    with websockets.sync.client.connect("ws://ws/", proxy=world.http_proxy) as ws:
        ws.send("via the forward proxy")
        assert ws.recv(timeout=10) == "via the forward proxy"


def test_opaque_tcp_line_echo(world: World) -> None:
    port = world.port("echo")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s, s.makefile("rwb") as f:
        for i in range(20):
            line = f"line {i} {'y' * i}\n".encode()
            f.write(line)
            f.flush()
            assert f.readline() == line
    # also through the forward proxy's CONNECT
    with socket.create_connection(("127.0.0.1", world.a.listener("forward")), timeout=10) as s:
        s.sendall(b"CONNECT echo:7 HTTP/1.1\r\nHost: echo:7\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 200")
        s.sendall(b"tunnelled\n")
        assert s.recv(100) == b"tunnelled\n"


def test_new_upstream_connections_resume_tls_sessions(world: World) -> None:
    before = world.a.metric("weft_proxy_tls_handshakes_total", direction="outbound", kind="resumed")
    for i in range(3):
        address = ("127.0.0.1", world.port("echo"))
        with socket.create_connection(address, timeout=10) as s:
            s.sendall(b"%d\n" % i)
            assert s.recv(100) == b"%d\n" % i
        # the session ticket is kept once the connection has done its work
        wait_until(
            lambda: (
                world.a.metric("weft_proxy_open_connections", direction="outbound", protocol="tcp")
                == 0
            ),
            what="the tunnel to close",
        )
    after = world.a.metric("weft_proxy_tls_handshakes_total", direction="outbound", kind="resumed")
    assert after - before >= 2


def test_a_redis_client_talks_to_redis_server_through_the_mesh(world: World) -> None:
    r = redis.Redis(host="127.0.0.1", port=world.port("redis"), socket_timeout=10)
    try:
        assert r.ping()
        r.set("weft:greeting", "hello through mTLS")
        assert r.get("weft:greeting") == b"hello through mTLS"
        with r.pipeline() as pipe:
            for _ in range(100):
                pipe.incr("weft:counter")
            results = pipe.execute()
        assert results[-1] == 100
        big = os.urandom(2 * MIB)
        r.set("weft:big", big)
        assert r.get("weft:big") == big
    finally:
        r.close()


def test_a_dead_upstream_is_a_502_naming_it_and_a_slow_one_a_504(world: World) -> None:
    with client(world, via_proxy=True) as c:
        dead = c.get("http://dead/")
        slow = c.get("http://slow/sleep?s=2")
        unknown = c.get("http://nowhere/")
    assert dead.status_code == 502
    assert "upstream 'dead'" in dead.text and "refused" in dead.text
    assert slow.status_code == 504
    assert "upstream 'slow'" in slow.text and "0.3s" in slow.text
    assert unknown.status_code == 502 and "no upstream named 'nowhere'" in unknown.text


def test_golden_metrics_on_both_sides(world: World) -> None:
    with client(world, via_proxy=False) as c:
        for _ in range(5):
            assert c.get(url(world, "/", via_proxy=False)).status_code == 200
        assert c.get(url(world, "/status/503", via_proxy=False)).status_code == 503
    a, b = world.a, world.b
    assert a.metric("weft_proxy_requests_total", direction="outbound", peer="b") >= 6
    assert (
        a.metric("weft_proxy_responses_total", direction="outbound", peer="b", status_class="5xx")
        >= 1
    )
    assert (
        b.metric("weft_proxy_responses_total", direction="inbound", peer="a", status_class="2xx")
        >= 5
    )
    assert (
        b.metric(
            "weft_proxy_response_latency_seconds_bucket", direction="inbound", peer="a", le="+Inf"
        )
        >= 6
    )
    assert a.metric("weft_proxy_tcp_bytes_total", direction="outbound", peer="redis") > 0
    assert a.metric("weft_proxy_http_bytes_total", direction="outbound", peer="b", way="in") > 0
    assert a.metric("weft_proxy_connections_total", direction="outbound") > 0
    status, _ = a.get("/ready")
    assert status == 200
    config = a.config()
    assert config["version"] == 1 and config["certificate"]["identity"] == world.mesh.spiffe("a")
    assert config["certificate"]["expires_in_seconds"] > 3600
    assert {e["endpoint"] for e in config["upstreams"]["b"]["endpoints"]} == {
        f"127.0.0.1:{world.b.inbound_port}"
    }


def test_tap_streams_request_summaries(world: World) -> None:
    import threading

    lines: list[dict] = []

    def read_tap() -> None:
        with (
            httpx.Client(trust_env=False, timeout=20) as c,
            c.stream("GET", world.a.admin + "/tap?limit=3") as r,
        ):
            for line in r.iter_lines():
                if line:
                    lines.append(json.loads(line))

    reader = threading.Thread(target=read_tap)
    reader.start()
    deadline = time.monotonic() + 15
    with client(world, via_proxy=False) as c:
        while reader.is_alive() and time.monotonic() < deadline:
            c.get(url(world, "/tapped", via_proxy=False))
            time.sleep(0.05)
    reader.join(5)
    assert len(lines) == 3
    assert lines[0]["path"] == "/tapped" and lines[0]["status"] == 200
    assert lines[0]["upstream"] == "b" and lines[0]["direction"] == "outbound"
    assert lines[0]["latency_ms"] > 0 and lines[0]["request_id"]
