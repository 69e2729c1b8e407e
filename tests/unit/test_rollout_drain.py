"""The drain decision the rollout makes on each host (ansible/roles/weft_agent/files/
weft_drain.py, run there with the host's python3): pure functions of scraped metrics."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

DRAIN = Path(__file__).parents[2] / "ansible/roles/weft_agent/files/weft_drain.py"
spec = importlib.util.spec_from_file_location("weft_drain", DRAIN)
assert spec and spec.loader
weft_drain = importlib.util.module_from_spec(spec)
sys.modules["weft_drain"] = weft_drain  # dataclasses look their module up
spec.loader.exec_module(weft_drain)
Busy, Drain, parse_metrics = weft_drain.Busy, weft_drain.Drain, weft_drain.parse_metrics

METRICS = """\
# HELP weft_proxy_requests_total HTTP requests received
# TYPE weft_proxy_requests_total counter
weft_proxy_requests_total{direction="inbound",peer="web"} 120.0
weft_proxy_requests_total{direction="outbound",peer="api"} 30.0
# TYPE weft_proxy_responses_total counter
weft_proxy_responses_total{direction="inbound",peer="web",status_class="2xx"} 117.0
weft_proxy_responses_total{direction="inbound",peer="web",status_class="5xx"} 1.0
weft_proxy_responses_total{direction="outbound",peer="api",status_class="2xx"} 30.0
# TYPE weft_proxy_open_connections gauge
weft_proxy_open_connections{direction="inbound",protocol="http"} 4.0
weft_proxy_open_connections{direction="inbound",protocol="tcp"} 0.0
weft_proxy_response_latency_seconds_bucket{le="+Inf",peer="x \\"q\\"",status_class="2xx"} 117.0
"""


def test_metrics_are_parsed_with_their_labels() -> None:
    samples = parse_metrics(METRICS)
    key = ("weft_proxy_requests_total",
           (("direction", "outbound"), ("peer", "api")))  # fmt: skip
    assert samples[key] == 30.0
    escaped = [labels for (name, labels) in samples if name.endswith("_bucket")]
    assert ("peer", 'x "q"') in escaped[0]


def test_in_flight_is_requests_not_yet_answered_and_idle_http_connections_do_not_count() -> None:
    busy = Busy.of(parse_metrics(METRICS))
    assert busy.requests == 150 and busy.in_flight == 2 and busy.tcp_open == 0
    assert not busy.idle()
    done = METRICS.replace('status_class="5xx"} 1.0', 'status_class="5xx"} 3.0')
    assert Busy.of(parse_metrics(done)).idle()  # 4 open keep-alive connections are fine


def test_open_tcp_connections_keep_a_proxy_busy() -> None:
    text = 'weft_proxy_open_connections{direction="inbound",protocol="tcp"} 1.0\n'
    assert not Busy.of(parse_metrics(text)).idle()


def test_drained_only_after_quiet_seconds_with_nothing_moving() -> None:
    drain = Drain(quiet=2.0)
    idle = Busy(requests=10, in_flight=0, tcp_open=0)
    assert not drain.observe(0.0, {"web": idle})  # first look: nothing to compare with
    assert not drain.observe(1.0, {"web": idle})
    assert drain.observe(3.0, {"web": idle})


def test_a_new_request_or_one_in_flight_restarts_the_quiet_period() -> None:
    drain = Drain(quiet=2.0)
    drain.observe(0.0, {"web": Busy(10, 0, 0)})
    drain.observe(1.0, {"web": Busy(10, 0, 0)})
    assert not drain.observe(2.5, {"web": Busy(11, 0, 0)})  # a late request arrived
    assert not drain.observe(3.0, {"web": Busy(11, 1, 0)})  # ... and is still in flight
    assert not drain.observe(4.0, {"web": Busy(11, 0, 0)})
    assert not drain.observe(5.5, {"web": Busy(11, 0, 0)})
    assert drain.observe(6.0, {"web": Busy(11, 0, 0)})
    assert drain.describe() == {"web": {"in_flight": 0, "requests": 11, "tcp_open": 0}}


def test_no_proxies_drain_at_once() -> None:
    drain = Drain(quiet=0.0)
    assert drain.observe(0.0, {})
