"""Trace headers: W3C and B3 honoured and propagated; malformed ones never passed on."""

from __future__ import annotations

import random

import pytest

from proxy._h1 import Limits, encode_request, parse_request_head
from proxy._trace_context import TRACE_HEADERS, decide, extract

TID = "4bf92f3577b34da6a3ce929d0e0e4736"
SID = "00f067aa0ba902b7"


def _head(*headers: str):
    raw = "GET /x HTTP/1.1\r\nHost: api\r\n" + "".join(h + "\r\n" for h in headers) + "\r\n"
    return parse_request_head(raw.encode(), Limits())


def _sent(head) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in encode_request(head).decode().split("\r\n")[1:]:
        if ":" in line:
            name, _, value = line.partition(": ")
            out.setdefault(name.lower(), []).append(value)
    return out


def test_a_sampled_w3c_parent_is_continued_with_this_hop_as_the_parent() -> None:
    head = _head(f"traceparent: 00-{TID}-{SID}-01", "tracestate: vendor=abc,other@x=1")
    decision = decide(head, start=False, rate=0.0)
    assert decision is not None and decision.sampled
    assert decision.trace_id.decode() == TID and decision.parent_id.decode() == SID
    sent = _sent(head)
    assert sent["traceparent"] == [f"00-{TID}-{decision.span_id.decode()}-01"]
    assert sent["tracestate"] == ["vendor=abc,other@x=1"]


def test_an_unsampled_parent_is_respected_and_passes_untouched() -> None:
    head = _head(f"traceparent: 00-{TID}-{SID}-00")
    assert decide(head, start=True, rate=1.0) is None
    assert _sent(head)["traceparent"] == [f"00-{TID}-{SID}-00"]


def test_b3_single_and_multi_are_honoured_and_answered_in_kind() -> None:
    head = _head(f"b3: {TID[16:]}-{SID}-1")  # a 64-bit B3 trace id is left-padded
    decision = decide(head, start=False, rate=0.0)
    assert decision is not None and decision.trace_id.decode() == "0" * 16 + TID[16:]
    sent = _sent(head)
    assert sent["b3"] == [f"{decision.trace_id.decode()}-{decision.span_id.decode()}-1"]
    assert sent["traceparent"][0].startswith(f"00-{'0' * 16}{TID[16:]}-")

    head = _head(f"X-B3-TraceId: {TID}", f"X-B3-SpanId: {SID}", "X-B3-Sampled: 1")
    decision = decide(head, start=False, rate=0.0)
    assert decision is not None and decision.parent_id.decode() == SID
    sent = _sent(head)
    assert sent["x-b3-traceid"] == [TID] and sent["x-b3-parentspanid"] == [SID]
    assert sent["x-b3-spanid"] == [decision.span_id.decode()]
    assert (
        decide(
            _head(f"X-B3-TraceId: {TID}", f"X-B3-SpanId: {SID}", "X-B3-Sampled: 0"),
            start=True,
            rate=1.0,
        )
        is None
    )


@pytest.mark.parametrize(
    "header",
    [
        f"traceparent: 00-{TID.upper()}-{SID}-01",  # upper-case hex is invalid
        f"traceparent: 00-{'0' * 32}-{SID}-01",  # all-zero trace id
        f"traceparent: 00-{TID}-{'0' * 16}-01",
        f"traceparent: ff-{TID}-{SID}-01",  # version ff is forbidden
        f"traceparent: 00-{TID}-{SID}-01-extra",  # version 00 has exactly four fields
        f"traceparent: 00-{TID}-{SID}-01" + "A" * 5000,
        "traceparent: <script>alert(1)</script>",
        f"b3: {TID}-{SID}-yes",
        f"b3: {TID}",
        f"X-B3-TraceId: {TID}zz",
    ],
)
def test_a_malformed_context_starts_a_new_trace_and_is_not_reflected(header: str) -> None:
    head = _head(header, f"X-B3-SpanId: {SID}")
    ctx, present = extract(head)
    assert ctx is None and present
    decision = decide(head, start=True, rate=1.0, rng=random.Random(1))
    assert decision is not None and decision.parent_id is None and decision.sampled
    assert decision.trace_id.decode() != TID
    sent = _sent(head)
    assert set(sent) & {h.decode() for h in TRACE_HEADERS} == {"traceparent"}
    assert sent["traceparent"] == [
        f"00-{decision.trace_id.decode()}-{decision.span_id.decode()}-01"
    ]


def test_two_traceparents_or_a_bad_tracestate_are_not_trusted() -> None:
    head = _head(f"traceparent: 00-{TID}-{SID}-01", f"traceparent: 00-{TID}-{SID}-01")
    assert extract(head)[0] is None
    head = _head(f"traceparent: 00-{TID}-{SID}-01", "tracestate: a=1,no equals sign")
    decision = decide(head, start=False, rate=0.0)
    assert decision is not None and decision.trace_id.decode() == TID
    assert "tracestate" not in _sent(head)  # the trace kept, the bad state dropped
    head = _head(f"traceparent: 00-{TID}-{SID}-01", "tracestate: " + "k=v," * 200)
    decide(head, start=False, rate=0.0)
    assert "tracestate" not in _sent(head)


def test_inbound_never_starts_a_trace_and_drops_a_malformed_one() -> None:
    head = _head("traceparent: garbage")
    assert decide(head, start=False, rate=1.0) is None
    assert "traceparent" not in _sent(head)
    assert decide(_head(), start=False, rate=1.0) is None


def test_new_traces_are_sampled_at_the_configured_rate_and_marked_unsampled_otherwise() -> None:
    rng = random.Random(7)
    decisions = [decide(_head(), start=True, rate=0.01, rng=rng) for _ in range(20000)]
    sampled = sum(d is not None and d.sampled for d in decisions)
    assert 140 <= sampled <= 260  # 1 % of 20000, well inside binomial spread
    head = _head()
    decision = decide(head, start=True, rate=0.0)
    assert decision is not None and not decision.sampled
    # downstream hops see the decision and do not sample the same request again
    assert _sent(head)["traceparent"][0].endswith("-00")
