"""Nothing a client holds open is untimed: detection, tunnels and opaque splices time out.

B's inbound (protocol http, no ALPN from the client) must see a strict request line within
`detect_timeout` (1 s here) or answer 408 and close, never fall back to splicing. An opaque TCP
connection, a CONNECT tunnel and a WebSocket that move no byte for their idle timeout are closed.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import websockets.exceptions
import websockets.sync.client

from tests.harness import wait_until

from .test_proxy_support import (
    Background,
    HttpApp,
    LineEcho,
    Mesh,
    ProxyProc,
    proxies,
    status_of,
    websocket_echo,
)

pytestmark = pytest.mark.timeout(60)


@dataclass
class World:
    a: ProxyProc
    b: ProxyProc
    echo: ProxyProc
    app: HttpApp
    mesh: Mesh


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("tunnel-timeouts")
    mesh = Mesh(root)
    with Background() as bg, websocket_echo() as ws_port:
        app = HttpApp("b")
        bg.start(app.serve)
        line = LineEcho()
        bg.start(line.serve)
        b = ProxyProc(root, "b", mesh.snapshot("b", app_port=app.port), "--detect-timeout", "1s")
        echo = ProxyProc(
            root,
            "echo",
            mesh.snapshot("echo", app_port=line.port, protocol="tcp"),
            "--tunnel-idle-timeout",
            "1s",
        )
        ws = ProxyProc(root, "ws", mesh.snapshot("ws", app_port=ws_port))
        with proxies(b, echo, ws):
            ups = [
                mesh.upstream("b", [b.inbound_port]),
                mesh.upstream("ws", [ws.inbound_port]),
                mesh.upstream("echo", [echo.inbound_port], protocol="tcp"),
            ]
            a = ProxyProc(
                root,
                "a",
                mesh.snapshot("a", upstreams=ups, forward_proxy=True),
                "--tunnel-idle-timeout",
                "2s",
            )
            with proxies(a):
                yield World(a, b, echo, app, mesh)


def _mtls(world: World) -> ssl.SSLSocket:
    """A mesh client of B's inbound port without ALPN, so B has to detect the protocol."""
    tls = world.mesh.tls("a")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(tls.bundle)
    ctx.load_cert_chain(tls.cert, tls.key)
    raw = socket.create_connection(("127.0.0.1", world.b.inbound_port), timeout=10)
    return ctx.wrap_socket(raw)


def _read_to_close(s: socket.socket) -> bytes:
    out = b""
    while True:
        try:
            chunk = s.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            return out
        if not chunk:
            return out
        out += chunk


def test_a_request_line_trickled_past_the_detect_timeout_gets_408_and_is_never_spliced(
    world: World,
) -> None:
    before = len(world.app.seen)
    timeouts = world.b.metric("weft_proxy_timeouts_total", direction="inbound", phase="detect")
    with _mtls(world) as s:
        start = time.monotonic()
        answer = b""
        try:
            for byte in b"GET /slow HT":  # a byte every 0.2 s: never a whole request line
                s.sendall(bytes([byte]))
                time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass
        answer = _read_to_close(s)
        elapsed = time.monotonic() - start
    assert status_of(answer) == 408, answer
    assert b"Connection: close" in answer and b"no complete request line within 1s" in answer
    assert elapsed < 5, elapsed
    assert len(world.app.seen) == before
    after = world.b.metric("weft_proxy_timeouts_total", direction="inbound", phase="detect")
    assert after == timeouts + 1


def test_a_silent_mesh_client_is_closed_at_the_detect_timeout(world: World) -> None:
    with _mtls(world) as s:
        start = time.monotonic()
        assert _read_to_close(s) == b""
        assert time.monotonic() - start < 5


def test_an_idle_opaque_tcp_connection_is_closed_after_its_idle_timeout(world: World) -> None:
    before = world.echo.metric("weft_proxy_timeouts_total", direction="inbound", phase="tcp_idle")
    address = ("127.0.0.1", world.a.listener("upstream/echo"))
    with socket.create_connection(address, timeout=10) as s:
        s.sendall(b"ping\n")
        assert s.recv(100) == b"ping\n"
        start = time.monotonic()
        assert _read_to_close(s) == b""  # echo's sidecar cut it after 1 s of silence
        assert 0.8 < time.monotonic() - start < 5
    wait_until(
        lambda: (
            world.echo.metric("weft_proxy_timeouts_total", direction="inbound", phase="tcp_idle")
            > before
        ),
        what="the echo sidecar to count the idle cut",
    )


def test_an_idle_connect_tunnel_is_closed_after_the_tunnel_idle_timeout(world: World) -> None:
    before = world.a.metric("weft_proxy_timeouts_total", direction="outbound", phase="tunnel_idle")
    address = ("127.0.0.1", world.a.listener("forward"))
    with socket.create_connection(address, timeout=10) as s:
        s.sendall(b"CONNECT b:80 HTTP/1.1\r\nHost: b:80\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 200")
        # one keep-alive request through the tunnel: B would keep the connection for 60 s
        s.sendall(b"GET /through-the-tunnel HTTP/1.1\r\nHost: b\r\n\r\n")
        answer = s.recv(65536)
        assert status_of(answer) == 200 and b"through-the-tunnel" in answer
        start = time.monotonic()
        assert _read_to_close(s) == b""  # A's tunnel idle timeout: 2 s
        assert 1.8 < time.monotonic() - start < 6
    after = world.a.metric("weft_proxy_timeouts_total", direction="outbound", phase="tunnel_idle")
    assert after == before + 1


def test_an_idle_websocket_is_closed_after_the_tunnel_idle_timeout(world: World) -> None:
    before = world.a.metric("weft_proxy_timeouts_total", direction="outbound", phase="tunnel_idle")
    port = world.a.listener("upstream/ws")
    with websockets.sync.client.connect(f"ws://127.0.0.1:{port}/", proxy=None) as ws:
        ws.send("hello")
        assert ws.recv(timeout=10) == "hello"
        start = time.monotonic()
        with pytest.raises(websockets.exceptions.ConnectionClosed):
            ws.recv(timeout=10)  # nothing comes; A cuts the upgraded connection after 2 s
        assert 1.8 < time.monotonic() - start < 6
    wait_until(
        lambda: (
            world.a.metric("weft_proxy_timeouts_total", direction="outbound", phase="tunnel_idle")
            > before
        ),
        what="A to count the idle WebSocket",
    )
