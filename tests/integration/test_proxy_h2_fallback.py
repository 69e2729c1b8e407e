"""HTTP/2 from the application to sidecars that speak only HTTP/1.1 (their inbound is `http`,
as an older sidecar's is): the caller's sidecar falls back to HTTP/1.1 per endpoint, balances
each stream on its own, and drains its HTTP/2 connections with GOAWAY on SIGTERM.
"""

from __future__ import annotations

import signal
import socket
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import h2.config
import h2.connection
import hpack
import httpx
import pytest
from hyperframe.frame import Frame, HeadersFrame

from tests.harness import wait_until

from .test_proxy_support import Background, HttpApp, Mesh, ProxyProc, proxies

pytestmark = pytest.mark.timeout(90)


@dataclass
class World:
    root: object
    mesh: Mesh
    upstreams: list[dict[str, object]]
    a: ProxyProc

    def client(self) -> httpx.Client:
        # h2c with prior knowledge, as gRPC clients speak it
        return httpx.Client(http1=False, http2=True, timeout=10, trust_env=False)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("h2fallback")
    mesh = Mesh(root)
    with Background() as bg:
        one, two = HttpApp("one"), HttpApp("two")
        bg.start(one.serve)
        bg.start(two.serve)
        b1 = ProxyProc(root, "b1", mesh.snapshot("old", app_port=one.port))
        b2 = ProxyProc(root, "b2", mesh.snapshot("old", app_port=two.port))
        with proxies(b1, b2):
            upstreams = [
                mesh.upstream(
                    "old",
                    [b1.inbound_port, b2.inbound_port],
                    protocol="http2",
                    balancer="round_robin",
                )
            ]
            a = ProxyProc(root, "a", mesh.snapshot("web", upstreams=upstreams))
            with proxies(a):
                yield World(root, mesh, upstreams, a)


def test_h2c_calls_reach_http1_sidecars_balanced_per_stream(world: World) -> None:
    url = f"http://127.0.0.1:{world.a.listener('upstream/old')}"
    with world.client() as client:
        answers = [client.get(f"{url}/where", headers={"x-n": str(i)}) for i in range(10)]
        posted = client.post(f"{url}/echo", content=b"z" * 100_000)
    assert {r.http_version for r in answers} == {"HTTP/2"}
    assert all(r.status_code == 200 for r in answers)
    # one HTTP/2 connection from the client, yet the requests went to both instances
    instances = Counter(r.json()["instance"] for r in answers)
    assert instances == {"one": 5, "two": 5}
    # the application sees the caller's verified identity, set by the sidecar
    assert answers[0].json()["headers"]["x-weft-client-id"] == world.mesh.spiffe("web")
    assert posted.status_code == 200
    assert posted.json()["length"] == 100_000
    assert world.a.metric("weft_proxy_connections_total", direction="outbound", protocol="h2") >= 1


def test_sigterm_sends_goaway_and_lets_the_stream_in_flight_finish(world: World) -> None:
    """Raw frames (the `h2` library as the client): httpx gives up on every stream once it
    sees GOAWAY, which is not what HTTP/2 says, so it cannot show a graceful drain."""
    upstreams = world.upstreams
    a = ProxyProc(world.root, "a-drain", world.mesh.snapshot("web", upstreams=upstreams))  # type: ignore[arg-type]
    with proxies(a):
        sock = socket.create_connection(("127.0.0.1", a.listener("upstream/old")), timeout=10)
        h2c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        h2c.initiate_connection()
        request = [(":method", "GET"), (":scheme", "http"), (":authority", "old")]
        h2c.send_headers(1, [*request, (":path", "/sleep?s=1.5")], end_stream=True)
        sock.sendall(h2c.data_to_send())
        wait_until(
            lambda: a.metric("weft_proxy_requests_total", direction="outbound") >= 1,
            what="the slow request reached the proxy",
        )
        a.proc.signal(signal.SIGTERM)
        raw = b""
        while True:
            data = sock.recv(65536)
            if not data:
                break
            raw += data
        sock.close()
        # Frames by hand: the `h2` library itself, as a client, refuses a HEADERS frame
        # that follows a GOAWAY, which HTTP/2 allows for the streams the GOAWAY kept.
        frames = []
        decoder = hpack.Decoder()
        while len(raw) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(raw[:9]))
            frame.parse_body(memoryview(raw[9 : 9 + length]))
            raw = raw[9 + length :]
            frames.append(frame)
        kinds = [type(f).__name__ for f in frames]
        goaway = frames[kinds.index("GoAwayFrame")]
        assert goaway.error_code == 0 and goaway.last_stream_id == 1
        after = frames[kinds.index("GoAwayFrame") + 1 :]
        headers = [f for f in after if isinstance(f, HeadersFrame) and f.stream_id == 1]
        assert headers, kinds
        assert dict(decoder.decode(headers[0].data))[":status"] == "200"
        # and the answer ended: a frame of stream 1 carries END_STREAM
        assert any("END_STREAM" in f.flags for f in after if f.stream_id == 1), kinds
        assert (
            wait_until(lambda: a.proc.popen.poll() is not None, timeout=10, what="exit") is not None
        )
        assert a.proc.popen.returncode == 0
