"""The pure cores of golden metrics: window arithmetic and quantiles, the push contract
between agent and server, the PromQL the CLI generates, and tap/top's filtering and table."""

from __future__ import annotations

import json

import pytest

from agent._proxy_metrics import compact
from proxy._metrics import BUCKETS, Metrics, render
from registry._errors import InvalidInput, PayloadTooLarge
from registry._metrics_sample import PushLimits, decode_push, encode_sample
from registry._metrics_window import (
    Sample,
    aggregate,
    histogram_quantile,
    increases,
    parse_window,
    pick,
)
from weft.cli import _promql
from weft.cli._tap_stream import Filter
from weft.cli._top_table import MAX_PATHS, Top

LE = [1.0, 2.0, 4.0]


def proxy(service: str = "api", instance: str = "api-1", started: float = 100.0, **series):  # type: ignore[no-untyped-def]
    http = [
        ["inbound", peer, "default", cls, 0.0, counts]
        for (peer, cls), counts in series.get("http", {}).items()
    ]
    return {
        "service": service,
        "instance": instance,
        "started": started,
        "le": LE,
        "http": http,
        "open": [["inbound", 3]],
        "peer_ids": [],
    }


# -- quantiles, as PromQL's histogram_quantile -------------------------------------------------


def test_quantile_interpolates_inside_the_bucket_where_the_rank_falls() -> None:
    # 10 in (0,1], 10 in (1,2], 20 in (2,4], none above.
    cumulative = [10.0, 20.0, 40.0, 40.0]
    assert histogram_quantile(0.5, LE, cumulative) == pytest.approx(2.0)
    assert histogram_quantile(0.25, LE, cumulative) == pytest.approx(1.0)
    assert histogram_quantile(0.75, LE, cumulative) == pytest.approx(3.0)
    assert histogram_quantile(0.1, LE, cumulative) == pytest.approx(0.4)  # from 0 upwards


def test_quantile_in_the_inf_bucket_is_the_highest_finite_bound_and_none_without_data() -> None:
    assert histogram_quantile(0.99, LE, [0.0, 0.0, 1.0, 10.0]) == 4.0
    assert histogram_quantile(0.5, LE, [0.0, 0.0, 0.0, 0.0]) is None


# -- windows ------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["10s", "1m", "90", "1h", "1m30s"])
def test_windows_from_ten_seconds_to_an_hour(raw: str) -> None:
    assert 10 <= parse_window(raw) <= 3600


@pytest.mark.parametrize("raw", ["NaN", "nan", "0", "9s", "10h", "garbage", "-1m", "1e999", "inf"])
def test_bad_windows_name_the_field(raw: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_window(raw)
    assert caught.value.field == "window"


def test_pick_takes_the_newest_sample_and_the_newest_one_a_window_older() -> None:
    samples = [(t, f"s{t}") for t in (100.0, 105.0, 110.0, 115.0, 120.0)]
    newest, base = pick(samples, now=121, window=10, grace=3)  # type: ignore[misc]
    assert newest[1] == "s120.0" and base[1] == "s110.0"
    _, base = pick(samples, now=121, window=60, grace=3)  # type: ignore[misc]
    assert base[1] == "s100.0"  # a node younger than the window: its oldest sample
    assert pick(samples[:1], now=101, window=10, grace=3) is None
    assert pick(samples, now=200, window=10, grace=3) is None  # silent for too long


def test_samples_left_from_before_a_gap_are_not_a_windows_base() -> None:
    # The node was away from 100 to 500: a 30 s window starts at 490, not at 100.
    samples = [(100.0, "old"), (500.0, "back"), (510.0, "newest")]
    newest, base = pick(samples, now=511, window=30, grace=3)  # type: ignore[misc]
    assert (newest[1], base[1]) == ("newest", "back")
    assert pick([(100.0, "old"), (510.0, "newest")], now=511, window=30, grace=3) is None


def test_a_counter_reset_or_a_restarted_proxy_counts_from_zero() -> None:
    before = Sample(0.0, [proxy(http={("web", "2xx"): [5, 10, 10, 10]})])
    after = Sample(10.0, [proxy(http={("web", "2xx"): [2, 3, 4, 4]})])  # went down: reset
    [(_, delta, span)] = list(increases(after, before))
    assert delta == [2, 3, 4, 4] and span == 10.0
    restarted = Sample(10.0, [proxy(started=105.0, http={("web", "2xx"): [20, 30, 40, 40]})])
    [(_, delta, _)] = list(increases(restarted, before))
    assert delta == [20, 30, 40, 40]
    grown = Sample(10.0, [proxy(http={("web", "2xx"): [6, 12, 14, 15]})])
    [(_, delta, _)] = list(increases(grown, before))
    assert delta == [1, 2, 4, 5]


def test_a_proxy_new_since_the_base_counts_only_if_it_started_after_it() -> None:
    before = Sample(1000.0, [])
    fresh = Sample(1010.0, [proxy(started=1005.0, http={("web", "2xx"): [1, 1, 1, 1]})])
    assert len(list(increases(fresh, before))) == 1
    old = Sample(1010.0, [proxy(started=10.0, http={("web", "2xx"): [1, 1, 1, 1]})])
    assert list(increases(old, before)) == []  # what it served before the window is unknown


def test_rows_add_rates_across_nodes_and_count_5xx_and_errors_as_failures() -> None:
    def node(instance: str, ok: int, bad: int) -> tuple[Sample, Sample]:
        base = Sample(0.0, [proxy(instance=instance)])
        newest = Sample(
            10.0,
            [
                proxy(
                    instance=instance,
                    http={("web", "2xx"): [ok, ok, ok, ok], ("web", "5xx"): [0, bad, bad, bad]},
                )
            ],
        )
        return newest, base

    [row] = aggregate(
        [node("api-1", 90, 5), node("api-2", 90, 5)],
        lambda p, d, peer, route: (p["service"], {"service": p["service"]}),
    )
    assert row["rps"] == pytest.approx(19.0) and row["requests"] == 190
    assert row["success_rate"] == pytest.approx(180 / 190, abs=1e-5)
    # Buckets add up across nodes: 180 in (0, 1 s], 10 in (1, 2 s].
    assert row["latency_ms"]["p50"] == pytest.approx(1000 * 95 / 180, abs=0.01)
    assert row["latency_ms"]["p99"] == pytest.approx(1000 * (1 + 8.1 / 10), abs=0.01)
    assert row["proxies"] == 2


# -- the push contract: what the agent makes from a proxy's /metrics, the server accepts --------


def test_the_agent_compacts_a_proxys_exposition_into_a_push_the_server_accepts() -> None:
    metrics = Metrics()
    for latency in (0.002, 0.03, 0.07):
        metrics.http("inbound", "web").observe(200, latency, 10, 10)
    metrics.http("outbound", "db", "reads").observe(503, 0.2, 10, 10)
    metrics.peer_ids[("inbound", "web")] = "spiffe://mesh.test/ns/default/svc/web"
    metrics.open[("inbound", "http")] = 4
    numbers = compact(render(metrics.dump).decode())
    assert numbers["le"] == list(BUCKETS)
    series = {tuple(s[:4]): s[5] for s in numbers["http"]}
    assert series[("inbound", "web", "default", "2xx")][-1] == 3
    assert series[("outbound", "db", "reads", "5xx")][-1] == 1
    assert numbers["open"] == [["inbound", 4]]
    assert numbers["peer_ids"] == [["inbound", "web", "spiffe://mesh.test/ns/default/svc/web"]]
    assert numbers["started"] > 0
    body = {"lease": "1a2b", "proxies": [{"service": "api", "instance": "api-1", **numbers}]}
    lease, proxies = decode_push(json.loads(json.dumps(body)), PushLimits())
    assert lease == "1a2b" and proxies[0]["http"]
    stored = encode_sample(5.0, proxies, PushLimits())
    assert Sample.from_json(stored).proxies == proxies
    with pytest.raises(PayloadTooLarge):
        encode_sample(5.0, proxies, PushLimits(sample_bytes=100))


# -- PromQL ----------------------------------------------------------------------------------


def test_stat_promql_uses_rate_over_the_window_and_histogram_quantile() -> None:
    plan = _promql.plan("stat", 60, service="api")
    assert plan.queries["rps"] == (
        "sum by (service) (rate(weft_proxy_responses_total"
        '{direction="inbound",service="api"}[60s]))'
    )
    assert plan.queries["failures"] == (
        "sum by (service) (rate(weft_proxy_responses_total"
        '{direction="inbound",service="api",status_class=~"5xx|error"}[60s]))'
    )
    assert plan.queries["p99"] == (
        "histogram_quantile(0.99, sum by (service, le) (rate("
        'weft_proxy_response_latency_seconds_bucket{direction="inbound",service="api"}[60s])))'
    )
    assert plan.queries["open"] == (
        'sum by (service) (weft_proxy_open_connections{direction="inbound",service="api"})'
    )
    assert not any("irate" in q for q in plan.queries.values())


def test_to_from_edges_routes_and_instances_group_by_the_right_labels() -> None:
    assert _promql.plan("stat", 10, to="api").queries["rps"] == (
        "sum by (service, peer) (rate(weft_proxy_responses_total"
        '{direction="outbound",peer="api"}[10s]))'
    )
    assert 'service="web"' in _promql.plan("stat", 10, frm="web").queries["rps"]
    # The service named beside --to is a caller, beside --from a callee.
    assert (
        '{direction="outbound",peer="api",service="web"}'
        in (_promql.plan("stat", 10, service="web", to="api").queries["rps"])
    )
    assert (
        '{direction="outbound",peer="api",service="web"}'
        in (_promql.plan("stat", 10, service="api", frm="web").queries["rps"])
    )
    assert "by (service, instance_id)" in _promql.plan("stat", 10, by_instance=True).queries["rps"]
    edges = _promql.plan("edges", 3600)
    assert "by (peer, service)" in edges.queries["rps"] and "[3600s]" in edges.queries["rps"]
    assert "weft_proxy_peer_identity" in edges.queries["identity"]
    routes = _promql.plan("routes", 30, service="api")
    assert routes.queries["rps"] == (
        'sum by (route) (rate(weft_proxy_responses_total{direction="outbound",peer="api"}[30s]))'
    )
    # A label value cannot break out of its quotes.
    assert _promql.selector({"service": 'a"b\\'}) == '{service="a\\"b\\\\"}'


def test_prometheus_answers_fold_into_the_servers_row_shape() -> None:
    plan = _promql.plan("stat", 60)

    def vector(value: str) -> list[dict]:
        return [{"metric": {"service": "api"}, "value": [0, value]}]

    rows = _promql.rows(
        plan,
        {
            "requests": vector("600"),
            "rps": vector("10"),
            "failures": vector("0.5"),
            "p50": vector("0.05"),
            "p95": vector("NaN"),
            "p99": vector("0.099"),
            "open": vector("3"),
        },
        60,
    )
    assert rows == [
        {
            "service": "api",
            "requests": 600,
            "rps": 10.0,
            "success_rate": 0.95,
            "latency_ms": {"p50": 50.0, "p95": None, "p99": 99.0},
            "tcp_connections": 3,
        }
    ]


# -- tap and top -----------------------------------------------------------------------------


def test_tap_filters_by_method_path_prefix_status_and_class() -> None:
    event = {"method": "GET", "path": "/orders/1", "status": 503, "direction": "inbound"}
    assert Filter(method="get", path="/orders", status="5xx")(event)
    assert Filter(status="503")(event) and not Filter(status="500")(event)
    assert not Filter(path="/items")(event) and not Filter(method="POST")(event)
    assert not Filter(direction="outbound")(event)


def test_top_ranks_paths_by_count_and_stops_tracking_new_ones_past_its_bound() -> None:
    top = Top()
    for n, status in enumerate([200, 200, 500]):
        top.add(
            {
                "direction": "inbound",
                "client_id": "spiffe://t/ns/default/svc/web",
                "service": "api",
                "method": "GET",
                "path": f"/a?{n}",
                "status": status,
                "latency_ms": 10.0 * (n + 1),
            }
        )
    top.add(
        {
            "direction": "outbound",
            "service": "api",
            "upstream": "db",
            "method": "GET",
            "path": "/b",
            "status": 200,
            "latency_ms": 1.0,
        }
    )
    first, second = top.rows(10)
    assert (first["from"], first["to"], first["path"], first["count"]) == ("web", "api", "/a", 3)
    assert first["success_rate"] == pytest.approx(2 / 3, abs=1e-4)
    assert (first["best_ms"], first["worst_ms"], first["last_ms"]) == (10.0, 30.0, 30.0)
    assert (second["from"], second["to"]) == ("api", "db")
    for n in range(MAX_PATHS + 5):
        top.add({"direction": "inbound", "path": f"/p{n}", "status": 200})
    assert len(top.paths) == MAX_PATHS and top.untracked > 0


# -- settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"metrics_interval": 0.1}, "metrics_interval"),
        ({"metrics_interval": 301.0}, "metrics_interval"),
        ({"proxy_admin_host": "example.com"}, "proxy_admin_host"),
    ],
)
def test_bad_agent_metrics_settings_name_their_field(changes: dict, field: str) -> None:
    from agent._config import AgentConfig
    from agent._errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        AgentConfig(servers=("http://127.0.0.1:8500",), **changes).validate()
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"metrics_resolution": 0.0}, "metrics_resolution"),
        ({"metrics_resolution": 61.0}, "metrics_resolution"),
        ({"metrics_min_interval": 0.1}, "metrics_min_interval"),
        ({"metrics_sample_bytes": 10}, "metrics_sample_bytes"),
    ],
)
def test_bad_server_metrics_settings_name_their_field(changes: dict, field: str) -> None:
    from registry._config import ConfigError, ServerConfig

    with pytest.raises(ConfigError) as caught:
        ServerConfig(**changes).validate()
    assert caught.value.field == field


def test_a_node_only_ever_writes_its_ring_slots() -> None:
    from registry._metrics_api import fine_slots, slots

    assert fine_slots(10.0) == 30 and fine_slots(1.0) == 300 and fine_slots(60.0) == 5
    # The first sample of a minute goes to the fine slot and the minute's coarse slot.
    assert slots(1_000_000.0, 10.0, None) == ["s10", "m46"]
    assert slots(1_000_005.0, 10.0, 1_000_000.0) == ["s10"]  # the minute is already held
    assert slots(1_000_020.0, 10.0, 1_000_000.0) == ["s12", "m47"]  # a new minute
    names = {n for t in range(0, 7200, 5) for n in slots(float(t), 10.0, None)}
    assert len(names) == 30 + 60  # two hours of pushes, never more than the ring


def test_a_hand_written_sample_of_the_wrong_shape_leaves_its_node_out() -> None:
    good = (Sample(10.0, [proxy(http={("web", "2xx"): [1, 1, 1, 1]})]), Sample(0.0, [proxy()]))
    bad = (Sample(10.0, [{"service": "x", "http": [["inbound"]]}]), Sample(0.0, []))
    rows = aggregate([bad, good], lambda p, d, peer, route: (p["service"], {"s": p["service"]}))
    assert [r["requests"] for r in rows] == [1]
