"""Smuggling and bad input over raw sockets: 4xx or a closed connection, never a desync.

Each attack goes to A's outbound port (and a few to B's mTLS inbound port with a valid mesh
certificate, since a compromised peer could try there too). Afterwards app B must have seen
only the legitimate requests, each whole: nothing smuggled, nothing cut in two.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import trio

from tests.harness import wait_until

from .test_proxy_support import (
    Background,
    HttpApp,
    Mesh,
    ProxyProc,
    proxies,
    raw_exchange,
    status_of,
)

pytestmark = pytest.mark.timeout(90)

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: b\r\n\r\n"


class RawResponder:
    """An 'application' that answers every connection with fixed bytes (a broken server)."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.port = 0

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self.port)
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, stream: trio.SocketStream) -> None:
        try:
            await stream.receive_some(65536)
            await stream.send_all(self.answer)
        except trio.BrokenResourceError:
            pass
        finally:
            await stream.aclose()


@dataclass
class World:
    a: ProxyProc
    b: ProxyProc
    app: HttpApp
    mesh: Mesh

    @property
    def port(self) -> int:
        return self.a.listener("upstream/b")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("smuggling")
    mesh = Mesh(root)
    with Background() as bg:
        app = HttpApp("b")
        bg.start(app.serve)
        broken = RawResponder(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        )
        bg.start(broken.serve)
        short = RawResponder(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 20000)
        bg.start(short.serve)
        b = ProxyProc(root, "b", mesh.snapshot("b", app_port=app.port), "--header-timeout", "1s")
        bad = ProxyProc(root, "bad", mesh.snapshot("bad", app_port=broken.port))
        cut = ProxyProc(root, "short", mesh.snapshot("short", app_port=short.port))
        with proxies(b, bad, cut):
            ups = [
                mesh.upstream("b", [b.inbound_port]),
                mesh.upstream("bad", [bad.inbound_port]),
                mesh.upstream("short", [cut.inbound_port]),
            ]
            a = ProxyProc(
                root,
                "a",
                mesh.snapshot("a", upstreams=ups),
                "--header-timeout",
                "1s",
                "--idle-timeout",
                "1s",
            )
            with proxies(a):
                yield World(a, b, app, mesh)


POST = b"POST / HTTP/1.1\r\nHost: b\r\n"
CHUNKED = POST + b"Transfer-Encoding: chunked\r\n\r\n"

ATTACKS = {
    "cl+te": POST + b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "te+cl": POST + b"Transfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "two-cl": POST + b"Content-Length: 0\r\nContent-Length: 38\r\n\r\n" + SMUGGLED,
    "te-obfuscated": POST + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "te-space": POST + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "te-http10": b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "chunk-negative": CHUNKED + b"-1\r\n" + SMUGGLED,
    "chunk-hex-prefix": CHUNKED + b"0x26\r\n" + SMUGGLED,
    "chunk-overflow": CHUNKED + b"10000000000000026\r\n" + SMUGGLED,
    "chunk-not-hex": CHUNKED + b"zz\r\n" + SMUGGLED,
    "chunk-size-lf": CHUNKED + b"1\nx\r\n0\r\n\r\n" + SMUGGLED,
    "chunk-short-data": CHUNKED + b"5\r\nab\r\n0\r\n\r\n" + SMUGGLED,
    "obs-fold": b"GET / HTTP/1.1\r\nHost: b\r\nX-A: 1\r\n Content-Length: 38\r\n\r\n" + SMUGGLED,
    "bare-lf": b"GET / HTTP/1.1\nHost: b\nContent-Length: 38\n\n" + SMUGGLED,
    "cl-not-number": POST + b"Content-Length: 3a\r\n\r\n" + SMUGGLED,
    "nul-in-header": b"GET / HTTP/1.1\r\nHost: b\r\nX-A: a\x00b\r\n\r\n" + SMUGGLED,
    "two-hosts": b"GET / HTTP/1.1\r\nHost: b\r\nHost: evil\r\n\r\n" + SMUGGLED,
    "http09": b"GET /\r\n\r\n" + SMUGGLED,
    "huge-header": b"GET / HTTP/1.1\r\nHost: b\r\nX-Big: "
    + b"a" * 200_000
    + b"\r\n\r\n"
    + SMUGGLED,
    "many-headers": b"GET / HTTP/1.1\r\nHost: b\r\n"
    + b"".join(b"X-%d: v\r\n" % i for i in range(150))
    + b"\r\n"
    + SMUGGLED,
}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_each_attack_gets_a_4xx_or_a_closed_connection(world: World, name: str) -> None:
    before = len(world.app.seen)
    answer = raw_exchange(world.port, ATTACKS[name], timeout=5)
    status = status_of(answer)
    assert status == 0 or 400 <= status < 500, (name, answer[:200])
    assert answer.count(b"HTTP/1.1 ") <= 1, f"{name}: more than one answer: {answer[:300]!r}"
    if status:
        assert b"Connection: close" in answer
    assert status in (400, 431, 501, 505), (name, answer[:200])
    assert len(world.app.seen) == before, f"{name} reached the application"


def test_a_chunk_error_after_forwarding_started_cuts_the_upstream_connection(world: World) -> None:
    before = len(world.app.seen)
    closed = world.app.closed_connections
    routed = world.b.metric("weft_proxy_requests_total", direction="inbound")
    head = b"POST /echo HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
    with socket.create_connection(("127.0.0.1", world.port), timeout=5) as s:
        s.sendall(head)
        wait_until(  # the head and first chunk went through both sidecars...
            lambda: world.b.metric("weft_proxy_requests_total", direction="inbound") > routed,
            what="B to forward the request",
        )
        s.sendall(b"zz\r\n" + SMUGGLED)  # ...before the bad chunk size arrives
        answer = s.recv(65536)
    assert status_of(answer) == 400
    # the application's connection is cut inside the body, and the request never completed
    wait_until(lambda: world.app.closed_connections > closed, what="B to cut the app connection")
    assert len(world.app.seen) == before


def test_slowloris_is_cut_at_the_header_timeout(world: World) -> None:
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", world.port), timeout=10) as s:
        answer = b""
        try:
            for byte in b"GET / HTTP/1.1\r\nHost: b\r\nX-Slow: " + b"a" * 100:
                s.sendall(bytes([byte]))
                time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            answer = s.recv(1000)
        except ConnectionResetError:
            pass
    elapsed = time.monotonic() - start
    assert elapsed < 5, elapsed
    assert status_of(answer) in (0, 408)
    # silence is cut too
    start = time.monotonic()
    assert raw_exchange(world.port, b"", timeout=8) == b""
    assert time.monotonic() - start < 5


def test_idle_keep_alive_connections_are_closed_after_the_idle_timeout(world: World) -> None:
    with socket.create_connection(("127.0.0.1", world.port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: b\r\n\r\n")
        answer = s.recv(65536)
        head, _, body = answer.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        while len(body) < length:
            body += s.recv(65536)
        assert status_of(answer) == 200
        start = time.monotonic()
        assert s.recv(100) == b""  # closed by the proxy, without a word
        assert 0.9 < time.monotonic() - start < 4


def test_pipelined_requests_are_answered_in_order_and_arrive_whole(world: World) -> None:
    before = len(world.app.seen)
    data = (
        b"POST /echo HTTP/1.1\r\nHost: b\r\nContent-Length: 5\r\n\r\nhello"
        b"POST /echo HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        b"GET /third HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n"
    )
    answer = raw_exchange(world.port, data, timeout=10)
    assert answer.count(b"HTTP/1.1 200") == 3
    seen = world.app.seen[before:]
    assert [(s.method, s.target, s.body_length) for s in seen] == [
        ("POST", "/echo", 5),
        ("POST", "/echo", 3),
        ("GET", "/third", 0),
    ]


def test_the_same_checks_guard_the_mtls_inbound_port(world: World) -> None:
    before = len(world.app.seen)
    tls = world.mesh.tls("a")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(tls.bundle)
    ctx.load_cert_chain(tls.cert, tls.key)
    ctx.set_alpn_protocols(["http/1.1"])
    for name in ("cl+te", "two-cl", "chunk-negative", "huge-header"):
        address = ("127.0.0.1", world.b.inbound_port)
        with socket.create_connection(address, timeout=5) as raw, ctx.wrap_socket(raw) as s:
            try:
                s.sendall(ATTACKS[name])  # the proxy may answer and close before all is sent
                answer = s.recv(65536)
            except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
                answer = b""
        assert status_of(answer) in (0, 400, 431), name
    assert len(world.app.seen) == before


def test_an_ambiguous_response_from_the_application_is_a_502(world: World) -> None:
    answer = raw_exchange(
        world.a.listener("upstream/bad"),
        b"GET / HTTP/1.1\r\nHost: bad\r\nConnection: close\r\n\r\n",
        timeout=5,
    )
    # B's sidecar refuses the application's answer; A passes B's 502 on.
    assert status_of(answer) == 502
    assert b"Content-Length" in answer and b"Transfer-Encoding" in answer
    assert b"upstream 'app'" in answer


def test_a_body_cut_short_by_the_application_cuts_the_client_connection(world: World) -> None:
    answer = raw_exchange(
        world.a.listener("upstream/short"), b"GET / HTTP/1.1\r\nHost: short\r\n\r\n", timeout=5
    )
    # the head went out before the body broke: the client sees a short body and a closed
    # connection (never a response it could mistake for whole), and the failure is counted
    assert status_of(answer) == 200
    assert len(answer.partition(b"\r\n\r\n")[2]) < 100000
    assert world.a.metric("weft_proxy_upstream_failures_total", reason="body_cut") >= 1
