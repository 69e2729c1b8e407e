"""Span export: what the hand-written encoder writes is what opentelemetry-proto reads; the
queue is bounded; a dead collector costs a bounded wait off the request path; no collector,
no tracer."""

from __future__ import annotations

import pytest
import trio
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from proxy._h1 import Limits, parse_request_head
from proxy._otlp_encode import KIND_CLIENT, STATUS_ERROR, encode_export, encode_span
from proxy._server import runtime_options
from proxy._span_export import Span, SpanExporter, Tracer
from tests.harness._otlp_receiver import OtlpReceiver
from weft._settings import SettingsError
from weft.cli.proxy import ProxySettings

TID = "4bf92f3577b34da6a3ce929d0e0e4736"


def _head(*headers: str):
    raw = "GET /orders?id=7 HTTP/1.1\r\nHost: api\r\n" + "".join(h + "\r\n" for h in headers)
    return parse_request_head((raw + "\r\n").encode(), Limits())


def test_the_encoded_export_request_decodes_with_opentelemetry_proto() -> None:
    span = encode_span(
        trace_id=bytes.fromhex(TID),
        span_id=bytes.fromhex("00f067aa0ba902b7"),
        parent_id=bytes.fromhex("1111111111111111"),
        name="GET orders",
        kind=KIND_CLIENT,
        start_ns=1_700_000_000_000_000_000,
        end_ns=1_700_000_000_123_456_789,
        attributes=[
            ("http.request.method", "GET"),
            ("http.response.status_code", 503),
            ("http.request.resend_count", 2),
            ("weft.flag", True),
            ("weft.negative", -5),
            ("weft.unicode", "prix €"),
        ],
        status=STATUS_ERROR,
        message="upstream gone",
        trace_state=b"vendor=1",
    )
    body = encode_export([("service.name", "api")], [span, span], ("weft.proxy", "1"))
    request = ExportTraceServiceRequest.FromString(body)
    (rs,) = request.resource_spans
    assert rs.resource.attributes[0].key == "service.name"
    assert rs.resource.attributes[0].value.string_value == "api"
    (ss,) = rs.scope_spans
    assert (ss.scope.name, ss.scope.version) == ("weft.proxy", "1")
    assert len(ss.spans) == 2
    got = ss.spans[0]
    assert got.trace_id.hex() == TID and got.span_id.hex() == "00f067aa0ba902b7"
    assert got.parent_span_id.hex() == "1111111111111111"
    assert (got.name, got.kind, got.trace_state) == ("GET orders", 3, "vendor=1")
    assert got.start_time_unix_nano == 1_700_000_000_000_000_000
    assert got.end_time_unix_nano == 1_700_000_000_123_456_789
    attrs = {kv.key: kv.value for kv in got.attributes}
    assert attrs["http.request.method"].string_value == "GET"
    assert attrs["http.response.status_code"].int_value == 503
    assert attrs["http.request.resend_count"].int_value == 2
    assert attrs["weft.flag"].bool_value is True
    assert attrs["weft.negative"].int_value == -5
    assert attrs["weft.unicode"].string_value == "prix €"
    assert (got.status.code, got.status.message) == (2, "upstream gone")
    assert got.flags & 0xFF == 1


def _sampled_span(tracer: Tracer) -> Span:
    span = tracer.begin(_head(f"traceparent: 00-{TID}-00f067aa0ba902b7-01"), "inbound", None)
    assert span is not None
    return span


def test_a_full_queue_drops_and_counts_instead_of_growing() -> None:
    exporter = SpanExporter("http://127.0.0.1:9/v1/traces", lambda: "api", max_queue=3)
    tracer = Tracer(exporter, 0.0)
    for _ in range(5):
        span = _sampled_span(tracer)
        span.record(200, None, "")
        tracer.end(span, "orders", 1)
    assert len(exporter.queue) == 3 and exporter.dropped == 2


async def test_spans_reach_the_collector_with_route_status_and_peer() -> None:
    with OtlpReceiver() as receiver:
        exporter = SpanExporter(receiver.url, lambda: "api", timeout=5)
        tracer = Tracer(exporter, 0.0)
        span = _sampled_span(tracer)
        span.client_id = "spiffe://t.weft/ns/default/svc/web"
        span.record(503, None, "")
        tracer.end(span, "orders", 3)
        await exporter.flush()
        assert exporter.exported == 1
        (got,) = await trio.to_thread.run_sync(receiver.spans)
    assert (got.service, got.trace_id, got.parent_id, got.kind) == (
        "api",
        TID,
        "00f067aa0ba902b7",
        2,
    )
    assert got.name == "GET orders"
    assert got.attributes["weft.route"] == "orders"
    assert got.attributes["http.request.resend_count"] == 2
    assert got.attributes["url.path"] == "/orders"  # the query is not exported
    assert got.attributes["weft.peer.identity"] == "spiffe://t.weft/ns/default/svc/web"
    assert got.status_code == 2 and got.attributes["error.type"] == "503"


async def test_a_collector_that_never_answers_costs_a_bounded_wait_and_is_counted() -> None:
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    async with listener:  # accepts into the backlog, never reads, never answers
        exporter = SpanExporter(f"http://127.0.0.1:{port}/v1/traces", lambda: "api", timeout=0.3)
        tracer = Tracer(exporter, 0.0)
        span = _sampled_span(tracer)
        tracer.end(span, "", 1)
        with trio.fail_after(3):
            await exporter.flush()
    assert exporter.exported == 0 and exporter.failed == 1 and not exporter.queue


def test_no_collector_means_no_tracer_at_all() -> None:
    assert runtime_options(ProxySettings(snapshot=None)).http.tracer is None
    traced = runtime_options(
        ProxySettings(snapshot=None, trace_collector="http://127.0.0.1:4318/v1/traces")
    )
    assert traced.http.tracer is not None and traced.http.tracer.rate == 0.01


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("trace_collector", "collector:4318"),
        ("trace_collector", "http://127.0.0.1:99999/v1/traces"),
        ("trace_sampling", 1.5),
        ("trace_sampling", float("nan")),
    ],
)
def test_bad_tracing_settings_name_the_field(field: str, value: object) -> None:
    settings = ProxySettings(
        snapshot_url="http://127.0.0.1:8501/v1/agent/proxy/api", **{field: value}
    )
    with pytest.raises(SettingsError) as caught:
        settings.validate()
    assert caught.value.field == field
