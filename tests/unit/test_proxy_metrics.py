"""Cheap counters in, Prometheus text out; workers' numbers add up."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from proxy._metrics import Metrics, merge, render


def samples(text: bytes) -> dict[tuple, float]:
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_requests_responses_latency_and_bytes_are_exported() -> None:
    m = Metrics()
    stats = m.http("outbound", "billing")
    for status, seconds in ((200, 0.0003), (200, 0.002), (503, 0.00005), (0, 1.0)):
        stats.requests += 1
        stats.observe(status, seconds, 100, 1000)
    m.add(m.tls_failures, ("inbound", "unknown_ca"))
    m.add(m.authz_denied, ("http", "web", "rule:no-web"), 2)
    m.opened("inbound", "http")
    got = samples(render(m.dump))
    peer = (("direction", "outbound"), ("peer", "billing"))
    lbl = (*peer, ("route", "default"))
    assert got[("weft_proxy_requests_total", lbl)] == 4
    assert got[("weft_proxy_responses_total", (*lbl, ("status_class", "2xx")))] == 2
    assert got[("weft_proxy_responses_total", (*lbl, ("status_class", "5xx")))] == 1
    assert got[("weft_proxy_responses_total", (*lbl, ("status_class", "error")))] == 1
    bucket = "weft_proxy_response_latency_seconds_bucket"
    two = (*lbl, ("status_class", "2xx"))
    assert got[(bucket, tuple(sorted((*two, ("le", "0.0005")))))] == 1  # sub-millisecond bucket
    assert got[(bucket, tuple(sorted((*two, ("le", "0.0025")))))] == 2
    assert got[(bucket, tuple(sorted((*two, ("le", "+Inf")))))] == 2
    assert got[("weft_proxy_http_bytes_total", (*peer, ("way", "out")))] == 4000
    key = (
        "weft_proxy_tls_handshake_failures_total",
        (("direction", "inbound"), ("reason", "unknown_ca")),
    )
    assert got[key] == 1
    denied = (("peer", "web"), ("protocol", "http"), ("reason", "rule:no-web"))
    assert got[("weft_proxy_authz_denied_total", denied)] == 2
    assert (
        got[("weft_proxy_open_connections", (("direction", "inbound"), ("protocol", "http")))] == 1
    )
    assert any(name == "process_resident_memory_bytes" for name, _ in got)


def test_dumps_of_several_workers_add_up() -> None:
    a, b = Metrics(), Metrics()
    a.http("inbound", "web").observe(200, 0.001, 1, 2)
    b.http("inbound", "web").observe(200, 0.001, 1, 2)
    b.http("inbound", "api").observe(500, 0.001, 1, 2)
    a.add(a.tls_failures, ("inbound", "eof"))
    b.add(b.tls_failures, ("inbound", "eof"), 2)
    merged = merge([a.dump(), b.dump()])
    got = samples(render(lambda: merged))
    web = (("direction", "inbound"), ("peer", "web"), ("route", "default"), ("status_class", "2xx"))
    assert got[("weft_proxy_responses_total", web)] == 2
    assert (
        "weft_proxy_responses_total",
        (("direction", "inbound"), ("peer", "api"), ("route", "default"), ("status_class", "5xx")),
    ) in got
    assert (
        got[
            (
                "weft_proxy_tls_handshake_failures_total",
                (("direction", "inbound"), ("reason", "eof")),
            )
        ]
        == 3
    )


def test_routes_retries_budget_and_own_answers_are_exported_by_route() -> None:
    m = Metrics()
    m.http("outbound", "books", "get-book").observe(200, 0.001, 1, 2)
    m.http("outbound", "books", "list").observe(200, 0.001, 1, 2)
    m.add(m.retries, ("books", "get-book", "503"), 3)
    m.add(m.budget_exhausted, ("books", "get-book"))
    m.add(m.proxy_errors, ("outbound", "no_route"))
    merged = merge([m.dump(), m.dump()])
    got = samples(render(lambda: merged))
    route = (
        ("direction", "outbound"),
        ("peer", "books"),
        ("route", "list"),
        ("status_class", "2xx"),
    )
    assert got[("weft_proxy_responses_total", route)] == 2
    retried = (("reason", "503"), ("route", "get-book"), ("upstream", "books"))
    assert got[("weft_proxy_retries_total", retried)] == 6
    exhausted = (("route", "get-book"), ("upstream", "books"))
    assert got[("weft_proxy_retry_budget_exhausted_total", exhausted)] == 2
    assert (
        got[("weft_proxy_proxy_errors_total", (("direction", "outbound"), ("reason", "no_route")))]
        == 2
    )
