"""Tracing through two real `weft proxy` processes (A's outbound → mTLS → B's inbound → app):
forged and malformed trace headers never reach the app, a new trace replaces them, and the
proxy's own error answers are spans with their reason."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.harness import wait_until
from tests.harness._otlp_receiver import OtlpReceiver, ReceivedSpan

from .test_proxy_support import Background, HttpApp, Mesh, ProxyProc, proxies

pytestmark = pytest.mark.timeout(60)

TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-01")


@dataclass
class Traced:
    a: ProxyProc
    receiver: OtlpReceiver

    def url(self, upstream: str, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.a.listener(f'upstream/{upstream}')}{path}"

    def spans_of(self, trace_id: str, n: int) -> list[ReceivedSpan]:
        def found() -> list[ReceivedSpan] | None:
            spans = [s for s in self.receiver.spans() if s.trace_id == trace_id]
            return spans if len(spans) >= n else None

        return wait_until(found, timeout=10, what=f"{n} spans of trace {trace_id}")


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traced]:
    root = tmp_path_factory.mktemp("tracing")
    mesh = Mesh(root)
    with OtlpReceiver() as receiver, Background() as bg:
        env = {"WEFT_PROXY_TRACE_COLLECTOR": receiver.url, "WEFT_PROXY_TRACE_SAMPLING": "1"}
        app = HttpApp("b")
        bg.start(app.serve)
        b = ProxyProc(root, "b", mesh.snapshot("b", app_port=app.port), env=env)
        with proxies(b):
            dead = socket.socket()
            dead.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
            upstreams = [
                mesh.upstream("b", [b.inbound_port]),
                mesh.upstream("dead", [dead.getsockname()[1]]),
            ]
            a = ProxyProc(root, "a", mesh.snapshot("a", upstreams=upstreams), env=env)
            with proxies(a):
                yield Traced(a, receiver)
            dead.close()


@pytest.mark.parametrize(
    "forged",
    [
        {"traceparent": "00-<script>alert(1)</script>-01", "tracestate": "evil=1"},
        {"traceparent": "00-" + "A" * 32 + "-" + "b" * 16 + "-01"},  # upper-case hex
        {"traceparent": "00-" + "0" * 32 + "-" + "b" * 16 + "-01"},  # the invalid all-zero id
        {"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01" + "x" * 4000},  # oversized
        {"b3": "not-a-b3-header", "x-b3-traceid": "zz", "x-b3-sampled": "1"},
    ],
    ids=["script", "uppercase", "zero-id", "oversized", "b3-garbage"],
)
def test_malformed_trace_headers_are_replaced_by_a_new_trace_never_passed_on(
    traced: Traced, forged: dict[str, str]
) -> None:
    resp = httpx.get(traced.url("b"), headers=forged, timeout=10)
    assert resp.status_code == 200
    seen = resp.json()["headers"]
    # the app got a fresh, valid context and none of the forged values
    match = TRACEPARENT.fullmatch(seen["traceparent"])
    assert match is not None
    for name, value in forged.items():
        assert seen.get(name) != value
    assert not {"tracestate", "b3", "x-b3-traceid", "x-b3-sampled"} & set(seen)
    trace_id, app_parent = match.groups()
    client, server = sorted(traced.spans_of(trace_id, 2), key=lambda s: s.kind, reverse=True)
    assert (client.service, client.kind, client.parent_id) == ("a", 3, "")  # a new root
    assert (server.service, server.kind, server.parent_id) == ("b", 2, client.span_id)
    assert app_parent == server.span_id  # the app's own spans would hang under B's


def test_a_proxy_error_answer_is_an_error_span_with_its_reason(traced: Traced) -> None:
    trace_id = "5" * 32
    resp = httpx.get(
        traced.url("dead"), headers={"traceparent": f"00-{trace_id}-{'6' * 16}-01"}, timeout=10
    )
    assert resp.status_code in (502, 503)
    (span,) = traced.spans_of(trace_id, 1)
    assert (span.service, span.kind, span.parent_id) == ("a", 3, "6" * 16)
    assert span.attributes["http.response.status_code"] == resp.status_code
    assert span.attributes["error.type"] == resp.headers["x-weft-proxy-error"]
    assert span.status_code == 2  # STATUS_CODE_ERROR
