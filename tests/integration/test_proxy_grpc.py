"""gRPC through two sidecars: a real grpcio client → h2c → A's sidecar → mTLS h2 → B's sidecar
→ h2c → a real grpcio server.

The service uses grpc's generic handlers with raw bytes (no codegen). Two instances of the
server sit behind the upstream; one of them answers every call UNAVAILABLE, and the callers
must never notice: the proxy tries the other.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
import h2.config
import h2.connection
import h2.events
import pytest

from .test_proxy_support import Mesh, ProxyProc, proxies

pytestmark = pytest.mark.timeout(90)

SERVICE = "weft.test.Echo"
_NO_PROXY = [("grpc.enable_http_proxy", 0)]


def _unary(request: bytes, context: Any) -> bytes:
    return b"echo:" + request


def _stream(request: bytes, context: Any) -> Iterator[bytes]:
    for i in range(int(request)):
        yield b"part-%d" % i


def _slow(request: bytes, context: Any) -> bytes:
    time.sleep(3)
    return b"late"


def _big(request: bytes, context: Any) -> Iterator[bytes]:
    """Far more than any window: 64 MiB in 64 KiB messages, for a caller that never reads."""
    chunk = b"x" * 65536
    for _ in range(1024):
        if not context.is_active():
            return
        yield chunk


def _down(request: bytes, context: Any) -> bytes:
    context.abort(grpc.StatusCode.UNAVAILABLE, "this instance is down")
    raise AssertionError("unreachable")


def _down_stream(request: bytes, context: Any) -> Iterator[bytes]:
    context.abort(grpc.StatusCode.UNAVAILABLE, "this instance is down")
    yield b""


def grpc_server(healthy: bool) -> tuple[grpc.Server, int]:
    unary = _unary if healthy else _down
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Stream": grpc.unary_stream_rpc_method_handler(_stream if healthy else _down_stream),
        "Slow": grpc.unary_unary_rpc_method_handler(_slow if healthy else _down),
        "Big": grpc.unary_stream_rpc_method_handler(_big if healthy else _down_stream),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


@dataclass
class World:
    a: ProxyProc
    good: ProxyProc
    bad: ProxyProc
    channel: grpc.Channel
    nowhere: grpc.Channel

    def call(self, method: str, request: bytes, **kwargs: Any) -> Any:
        return self.channel.unary_unary(f"/{SERVICE}/{method}")(request, **kwargs)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("grpc")
    mesh = Mesh(root)
    good_app, good_port = grpc_server(healthy=True)
    bad_app, bad_port = grpc_server(healthy=False)
    try:
        good = ProxyProc(root, "good", mesh.snapshot("echo", app_port=good_port, protocol="grpc"))
        bad = ProxyProc(root, "bad", mesh.snapshot("echo", app_port=bad_port, protocol="grpc"))
        with proxies(good, bad):
            dead = socket.socket()
            dead.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
            upstreams = [
                mesh.upstream(
                    "echo",
                    [good.inbound_port, bad.inbound_port],
                    protocol="grpc",
                    balancer="round_robin",
                ),
                mesh.upstream("nowhere", [dead.getsockname()[1]], protocol="grpc"),
            ]
            a = ProxyProc(root, "a", mesh.snapshot("web", upstreams=upstreams))
            with proxies(a):
                channel = grpc.insecure_channel(
                    f"127.0.0.1:{a.listener('upstream/echo')}", options=_NO_PROXY
                )
                nowhere = grpc.insecure_channel(
                    f"127.0.0.1:{a.listener('upstream/nowhere')}", options=_NO_PROXY
                )
                try:
                    yield World(a, good, bad, channel, nowhere)
                finally:
                    channel.close()
                    nowhere.close()
                    dead.close()
    finally:
        good_app.stop(0)
        bad_app.stop(0)


def test_unary_calls_all_succeed_though_one_endpoint_is_unavailable(world: World) -> None:
    for i in range(20):
        assert world.call("Unary", b"%d" % i, timeout=10) == b"echo:%d" % i
    # The UNAVAILABLE instance was asked (and said so), and the proxy tried again elsewhere.
    assert (
        world.bad.metric("weft_proxy_grpc_responses_total", direction="inbound", grpc_status="14")
        >= 1
    )
    assert (
        world.a.metric("weft_proxy_retries_total", upstream="echo", reason="grpc_unavailable") >= 1
    )


def test_server_streaming_call_delivers_every_message_in_order(world: World) -> None:
    stream = world.channel.unary_stream(f"/{SERVICE}/Stream")
    for _ in range(3):
        got = list(stream(b"50", timeout=10))
        assert got == [b"part-%d" % i for i in range(50)]


def test_client_deadline_ends_a_slow_call_promptly(world: World) -> None:
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as caught:
        world.call("Slow", b"x", timeout=0.5)
    elapsed = time.monotonic() - started
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert elapsed < 2.0, elapsed
    # and the connection is still good for the next call
    assert world.call("Unary", b"after", timeout=10) == b"echo:after"


def test_proxy_failure_reaches_a_grpc_caller_as_unavailable_with_a_message(world: World) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        world.nowhere.unary_unary(f"/{SERVICE}/Unary")(b"x", timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "weft-proxy" in (caught.value.details() or "")


def test_metrics_count_grpc_calls_per_method_and_status(world: World) -> None:
    world.call("Unary", b"m", timeout=10)
    a = world.a
    ok = a.metric(
        "weft_proxy_grpc_responses_total",
        direction="outbound",
        peer="echo",
        method=f"/{SERVICE}/Unary",
        grpc_status="0",
        classification="success",
    )
    assert ok >= 1
    assert (
        world.good.metric(
            "weft_proxy_grpc_responses_total",
            direction="inbound",
            peer="web",
            method=f"/{SERVICE}/Unary",
            grpc_status="0",
        )
        >= 1
    )
    # the bad instance's answers are failures in its own sidecar's numbers
    assert (
        world.bad.metric(
            "weft_proxy_grpc_responses_total", grpc_status="14", classification="failure"
        )
        >= 1
    )


def test_the_proxy_enforces_grpc_timeout_itself(world: World) -> None:
    """A caller that sends `grpc-timeout: 300m` and never gives up on its own (raw frames, not
    grpcio, which would cancel at its deadline) gets DEADLINE_EXCEEDED from the proxy in time."""
    sock = socket.create_connection(("127.0.0.1", world.a.listener("upstream/echo")), timeout=10)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    headers = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", f"/{SERVICE}/Slow"),
        (":authority", "echo"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("grpc-timeout", "300m"),
    ]
    conn.send_headers(1, headers)
    conn.send_data(1, b"\x00\x00\x00\x00\x01x", end_stream=True)
    started = time.monotonic()
    sock.sendall(conn.data_to_send())
    status = None
    while status is None:
        data = sock.recv(65536)
        assert data, "the proxy closed the connection"
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
                status = dict(event.headers).get(b"grpc-status", status)
        sock.sendall(conn.data_to_send())
    elapsed = time.monotonic() - started
    sock.close()
    assert status == b"4"  # DEADLINE_EXCEEDED, though the server would answer after 3 s
    assert 0.25 < elapsed < 1.5, elapsed


# -- routes on gRPC: faults, per-try timeouts, response header changes ------------------------


def _hang_then(answer: bytes, hang: float) -> Any:
    def handler(request: bytes, context: Any) -> bytes:
        until = time.monotonic() + hang
        while time.monotonic() < until and context.is_active():
            time.sleep(0.02)
        return answer

    return handler


def routed_server(
    name: str, hang: float, seen: list[bytes] | None = None
) -> tuple[grpc.Server, int]:
    """`Unary` echoes with the instance's name (after `hang` seconds when `seen` is given,
    noting each request there); `Hang` answers after `hang` seconds; `Busy` answers
    RESOURCE_EXHAUSTED on `stuck`."""

    def unary(request: bytes, context: Any) -> bytes:
        if seen is not None:
            seen.append(request)
            return _hang_then(b"", hang)(request, context) + name.encode() + b":" + request
        return name.encode() + b":" + request

    def busy(request: bytes, context: Any) -> bytes:
        if name == "stuck":
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "too busy")
        return name.encode()

    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Busy": grpc.unary_unary_rpc_method_handler(busy),
        "Hang": grpc.unary_unary_rpc_method_handler(_hang_then(name.encode(), hang)),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


ROUTES = [
    {
        "name": "chaos-abort",
        "match": [{"headers": [{"name": "x-chaos", "exact": "abort"}]}],
        "fault": {"abort": {"status": 503, "percent": 100}},
    },
    {
        "name": "chaos-exhausted",
        "match": [{"headers": [{"name": "x-chaos", "exact": "exhausted"}]}],
        "fault": {"abort": {"status": 429, "grpc_status": 8, "percent": 100}},
    },
    {
        "name": "chaos-delay",
        "match": [{"headers": [{"name": "x-chaos", "exact": "delay"}]}],
        "fault": {"delay": {"ms": 400, "percent": 100}},
    },
    {
        "name": "hang",
        "match": [{"path": {"exact": f"/{SERVICE}/Hang"}}],
        "per_try_ms": 300,
        "retry": {"attempts": 2, "on": ["timeout"]},
    },
    {
        "name": "busy",
        "match": [{"path": {"exact": f"/{SERVICE}/Busy"}}],
        "retry": {"attempts": 2, "on": ["resource-exhausted"]},
    },
    {
        "name": "mirrored",
        "match": [{"headers": [{"name": "x-mirror", "exact": "1"}]}],
        "mirror": {"upstream": "shadow", "percent": 100},
    },
    {
        "name": "default",
        "response_headers": {"add": {"x-route": "default"}, "remove": ["x-instance"]},
    },
]


@dataclass
class Routed:
    a: ProxyProc
    channel: grpc.Channel
    shadow_seen: list[bytes]

    def call(self, method: str, request: bytes, **kwargs: Any) -> Any:
        return self.channel.unary_unary(f"/{SERVICE}/{method}").with_call(request, **kwargs)


@pytest.fixture(scope="module")
def routed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Routed]:
    """Two instances behind routes, balanced round robin: `stuck` takes 3 s to answer `Hang`,
    `quick` answers it at once."""
    root = tmp_path_factory.mktemp("grpc-routes")
    mesh = Mesh(root)
    stuck_app, stuck_port = routed_server("stuck", hang=3.0)
    quick_app, quick_port = routed_server("quick", hang=0.0)
    shadow_seen: list[bytes] = []
    shadow_app, shadow_port = routed_server("shadow", hang=2.0, seen=shadow_seen)
    try:
        stuck, quick, shadow = (
            ProxyProc(root, name, mesh.snapshot(service, app_port=port, protocol="grpc"))
            for name, service, port in (
                ("stuck", "echo", stuck_port),
                ("quick", "echo", quick_port),
                ("shadow", "shadow", shadow_port),
            )
        )
        with proxies(stuck, quick, shadow):
            echo = mesh.upstream(
                "echo",
                [stuck.inbound_port, quick.inbound_port],
                protocol="grpc",
                balancer="round_robin",
                routes=ROUTES,
                failure_accrual={"consecutive_failures": 1000},
            )
            mirror = mesh.upstream("shadow", [shadow.inbound_port], protocol="grpc", listen=False)
            doc = mesh.snapshot("web", upstreams=[echo, mirror])
            doc["schema"] = "weft.proxy.snapshot/v2"  # routes need it
            a = ProxyProc(root, "a", doc)
            with proxies(a):
                channel = grpc.insecure_channel(
                    f"127.0.0.1:{a.listener('upstream/echo')}", options=_NO_PROXY
                )
                try:
                    yield Routed(a, channel, shadow_seen)
                finally:
                    channel.close()
    finally:
        stuck_app.stop(0)
        quick_app.stop(0)
        shadow_app.stop(0)


def test_a_routes_fault_abort_reaches_a_grpc_caller_as_its_status_and_no_instance(
    routed: Routed,
) -> None:
    served_before = routed.a.metric("weft_proxy_grpc_responses_total", grpc_status="0")
    for _ in range(3):
        with pytest.raises(grpc.RpcError) as caught:
            routed.call("Unary", b"x", timeout=10, metadata=[("x-chaos", "abort")])
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE  # 503's gRPC code
        assert "fault injected by route 'chaos-abort'" in (caught.value.details() or "")
    assert (
        routed.a.metric(
            "weft_proxy_faults_injected_total", upstream="echo", route="chaos-abort", fault="abort"
        )
        == 3
    )
    # nothing was forwarded: no call came back from an instance
    assert routed.a.metric("weft_proxy_grpc_responses_total", grpc_status="0") == served_before


def test_a_fault_abort_with_a_grpc_status_reaches_the_caller_as_that_code(routed: Routed) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        routed.call("Unary", b"x", timeout=10, metadata=[("x-chaos", "exhausted")])
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # not 429's UNAVAILABLE


def test_a_routes_fault_delay_holds_a_grpc_call_then_forwards_it(routed: Routed) -> None:
    started = time.monotonic()
    answer, _ = routed.call("Unary", b"late", timeout=10, metadata=[("x-chaos", "delay")])
    elapsed = time.monotonic() - started
    assert answer in (b"stuck:late", b"quick:late")
    assert elapsed >= 0.4, elapsed
    assert (
        routed.a.metric(
            "weft_proxy_faults_injected_total", upstream="echo", route="chaos-delay", fault="delay"
        )
        >= 1
    )


def test_a_per_try_timeout_sends_a_stuck_grpc_call_to_the_other_instance(routed: Routed) -> None:
    """Round robin puts every other first attempt on `stuck` (3 s): the route's 300 ms per-try
    limit ends it and the retry on timeout gets `quick`'s answer, well before 3 s."""
    for _ in range(4):
        started = time.monotonic()
        answer, _ = routed.call("Hang", b"", timeout=10)
        elapsed = time.monotonic() - started
        assert answer == b"quick"
        assert elapsed < 2.0, elapsed
    assert (
        routed.a.metric("weft_proxy_retries_total", upstream="echo", route="hang", reason="timeout")
        >= 1
    )


def test_a_routes_response_header_changes_reach_a_grpc_caller(routed: Routed) -> None:
    answer, call = routed.call("Unary", b"h", timeout=10)
    assert answer in (b"stuck:h", b"quick:h")
    metadata = dict(call.initial_metadata())
    assert metadata.get("x-route") == "default"


def test_a_mirrored_grpc_call_reaches_the_shadow_and_the_caller_never_waits_for_it(
    routed: Routed,
) -> None:
    """The shadow takes 2 s to answer; the caller gets the real answer at once, and the shadow
    receives the same call."""
    started = time.monotonic()
    answer, _ = routed.call("Unary", b"copy-me", timeout=10, metadata=[("x-mirror", "1")])
    elapsed = time.monotonic() - started
    assert answer in (b"stuck:copy-me", b"quick:copy-me")
    assert elapsed < 1.5, elapsed
    deadline = time.monotonic() + 10
    while b"copy-me" not in routed.shadow_seen:
        assert time.monotonic() < deadline, "the shadow never got the copy"
        time.sleep(0.05)
    deadline = time.monotonic() + 10
    while (
        routed.a.metric("weft_proxy_mirrored_requests_total", upstream="shadow", result="2xx") < 1
    ):
        assert time.monotonic() < deadline, routed.a.metrics()
        time.sleep(0.1)


def test_a_route_retrying_on_resource_exhausted_takes_a_grpc_call_to_the_other_instance(
    routed: Routed,
) -> None:
    """`stuck` answers every `Busy` call RESOURCE_EXHAUSTED, and round robin sends it every
    other first attempt: the route's gRPC retry condition tries `quick`, so no caller sees it."""
    for _ in range(6):
        answer, _ = routed.call("Busy", b"", timeout=10)
        assert answer == b"quick"
    assert (
        routed.a.metric(
            "weft_proxy_retries_total", upstream="echo", route="busy", reason="resource-exhausted"
        )
        >= 2
    )
