"""Route policy through real sidecars and real applications (snapshot schema v2).

    client ──► web's sidecar ══ mTLS ══► books v1's sidecar ──► app v1
                 routes        ══ mTLS ══► books v2's sidecar ──► app v2
                               ══ mTLS ══► failing's sidecar  ──► app that always answers 503
                               ══ mTLS ══► shadow's sidecar   ──► a slow mirror app

Every figure is counted where a user would count it: at the client and at the applications.
The client sidecar runs with WEFT_PROXY_SEED, so its splits, faults and mirrors draw the same
way every run; the stated tolerances hold for any seed.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.harness import wait_until

from .test_proxy_support import Background, HttpApp, Mesh, ProxyProc, proxies

pytestmark = pytest.mark.timeout(120)

SCHEMA_V2 = "weft.proxy.snapshot/v2"


@dataclass
class World:
    web: ProxyProc
    v1: HttpApp
    v2: HttpApp
    failing: HttpApp
    shadow: HttpApp

    def url(self, upstream: str, path: str) -> str:
        return f"http://127.0.0.1:{self.web.listener(f'upstream/{upstream}')}{path}"


def books_routes() -> list[dict]:
    retry_503 = {"attempts": 2, "on": [503]}
    return [
        {
            "name": "canary",
            "match": [{"headers": [{"name": "x-canary", "exact": "1"}]}],
            "backends": [{"upstream": "books", "subset": "v2"}],
        },
        {"name": "slow", "match": [{"path": {"exact": "/sleep"}}], "timeout_ms": 300},
        {
            "name": "flaky-get",
            "match": [{"method": "GET", "path": {"exact": "/flaky"}}],
            "backends": [{"upstream": "books", "subset": "v1"}],
            "retry": {"attempts": 4, "on": ["gateway-error"]},
        },
        {
            "name": "post-retried",
            "match": [{"method": "POST", "headers": [{"name": "x-retry-post", "exact": "1"}]}],
            "backends": [{"upstream": "books", "subset": "v1"}],
            "retry": {**retry_503, "non_idempotent": True},
        },
        {
            "name": "post",
            "match": [{"method": "POST"}],
            "backends": [{"upstream": "books", "subset": "v1"}],
            "retry": retry_503,
        },
        {
            "name": "split",
            "match": [{"path": {"segment_prefix": "/split"}}],
            "backends": [
                {"upstream": "books", "subset": "v1", "weight": 90},
                {"upstream": "books", "subset": "v2", "weight": 10},
            ],
        },
        {
            "name": "fault",
            "match": [{"path": {"segment_prefix": "/fault"}}],
            "fault": {"abort": {"status": 503, "percent": 10}},
        },
        {
            "name": "mirrored",
            "match": [{"path": {"segment_prefix": "/mirrored"}}],
            "backends": [{"upstream": "books", "subset": "v1"}],
            "mirror": {"upstream": "shadow", "percent": 100},
        },
        {"name": "default"},
    ]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    directory = tmp_path_factory.mktemp("traffic")
    mesh = Mesh(directory)
    apps = {
        "v1": HttpApp("v1"),
        "v2": HttpApp("v2"),
        "failing": HttpApp("failing"),
        "shadow": HttpApp("shadow", delay=2.0),  # a slow mirror: the caller must not wait
    }
    with Background() as bg:
        ports = {name: bg.start(app.serve) for name, app in apps.items()}
        sidecars = {
            name: ProxyProc(
                directory,
                f"sidecar-{name}",
                mesh.snapshot({"v1": "books", "v2": "books"}.get(name, name), app_port=ports[name]),
            )
            for name in apps
        }
        with proxies(*sidecars.values()):
            inbound = {name: p.inbound_port for name, p in sidecars.items()}
            books = mesh.upstream("books", [inbound["v1"], inbound["v2"]], balancer="round_robin")
            books["endpoints"][0]["subsets"] = ["v1"]
            books["endpoints"][1]["subsets"] = ["v2"]
            books["routes"] = books_routes()
            # Failures are the point of these tests: no endpoint may be ejected for them.
            books["failure_accrual"] = {"consecutive_failures": 1000}
            failing = mesh.upstream(
                "failing",
                [inbound["failing"]],
                routes=[{"name": "always-fails", "retry": {"attempts": 3, "on": ["5xx"]}}],
                retry_budget={"ratio": 0.2, "min_per_second": 10, "ttl_ms": 10_000},
                failure_accrual={"consecutive_failures": 1000},
            )
            shadow = mesh.upstream("shadow", [inbound["shadow"]], listen=False)
            doc = mesh.snapshot("web", upstreams=[books, failing, shadow])
            doc["schema"] = SCHEMA_V2
            web = ProxyProc(directory, "web", doc, env={**os.environ, "WEFT_PROXY_SEED": "13"})
            with proxies(web):
                yield World(web, apps["v1"], apps["v2"], apps["failing"], apps["shadow"])


def seen(app: HttpApp, path: str, method: str = "GET") -> int:
    return sum(1 for s in app.seen if s.target.startswith(path) and s.method == method)


def test_route_timeout_answers_504_at_the_timeout_not_when_the_app_answers(world: World) -> None:
    with httpx.Client(trust_env=False, timeout=10) as client:
        started = time.perf_counter()
        resp = client.get(world.url("books", "/sleep?s=1"))
        elapsed = time.perf_counter() - started
    assert resp.status_code == 504
    assert resp.headers["x-weft-proxy-error"] == "timeout"
    assert "route 'slow' timed out after 0.3s" in resp.text
    assert 0.28 <= elapsed < 0.8, elapsed  # ~300 ms, not the app's 1 s
    assert world.web.metric("weft_proxy_proxy_errors_total", reason="timeout") >= 1


def test_a_retryable_get_against_an_app_failing_30_percent_succeeds(world: World) -> None:
    before = seen(world.v1, "/flaky")
    results = Counter()
    with httpx.Client(trust_env=False, timeout=10) as client:
        for _ in range(300):
            results[client.get(world.url("books", "/flaky?p=0.3")).status_code] += 1
    assert results[200] / 300 > 0.99, results
    at_app = seen(world.v1, "/flaky") - before
    retries = world.web.metric("weft_proxy_retries_total", route="flaky-get", reason="503")
    assert at_app == 300 + retries  # every retry reached the app, and nothing else did
    assert 40 <= retries <= 0.2 * 300 + 10 * 10  # the app did fail; the budget held
    assert world.web.metric("weft_proxy_retry_budget_exhausted_total", route="flaky-get") == 0
    ok = world.web.metric(
        "weft_proxy_responses_total", peer="books", route="flaky-get", status_class="2xx"
    )
    assert ok == results[200]


def test_a_failing_upstream_gets_no_more_extra_load_than_the_budget(world: World) -> None:
    """100 % failures, 3 retries allowed per request: the budget caps the extra load at
    ratio * requests + min_per_second * ttl, counted at the application."""
    requests = 200
    tap: list[dict] = []

    def watch() -> None:
        with httpx.stream("GET", world.web.admin + "/tap?limit=1", timeout=10) as resp:
            for line in resp.iter_lines():
                tap.append(json.loads(line))

    watcher = threading.Thread(target=watch)
    watcher.start()
    wait_until(lambda: world.web.get("/config")[0] == 200, what="admin")
    time.sleep(0.2)  # let the tap subscribe before the first request (it only sees new ones)
    started = time.perf_counter()
    with httpx.Client(trust_env=False, timeout=10) as client:
        statuses = Counter(
            client.get(world.url("failing", "/status/503")).status_code for _ in range(requests)
        )
    elapsed = time.perf_counter() - started
    watcher.join(10)
    assert statuses == {503: requests}
    assert elapsed < 10  # all of it inside one budget ttl
    extra = seen(world.failing, "/status/503") - requests
    assert 100 <= extra <= 0.2 * requests + 10 * 10, extra
    assert world.web.metric("weft_proxy_retry_budget_exhausted_total", route="always-fails") > 0
    assert world.web.config()["upstreams"]["failing"]["retry_budget_available"] == 0
    # the first request had the budget's full reserve: 1 try + 3 retries, shown by /tap
    assert tap and tap[0]["route"] == "always-fails" and tap[0]["attempt"] == 4, tap


def test_a_post_is_retried_only_when_its_route_says_so(world: World) -> None:
    with httpx.Client(trust_env=False, timeout=10) as client:
        before = seen(world.v1, "/status/503", "POST")
        for _ in range(5):
            assert client.post(world.url("books", "/status/503"), content=b"pay").status_code == 503
        assert seen(world.v1, "/status/503", "POST") - before == 5  # never retried

        before = seen(world.v1, "/status/503", "POST")
        for _ in range(5):
            resp = client.post(
                world.url("books", "/status/503"),
                content=b"x" * 1000,
                headers={"x-retry-post": "1"},
            )
            assert resp.status_code == 503
        assert seen(world.v1, "/status/503", "POST") - before == 5 * 3  # 1 try + 2 retries
    assert world.web.metric("weft_proxy_retries_total", route="post") == 0


def test_a_90_10_split_between_subsets_measured_at_the_apps(world: World) -> None:
    n = 2000
    before = {app.name: seen(app, "/split") for app in (world.v1, world.v2)}
    with httpx.Client(trust_env=False, timeout=10) as client:
        for i in range(n):
            assert client.get(world.url("books", f"/split/{i}")).status_code == 200
    v1 = seen(world.v1, "/split") - before["v1"]
    v2 = seen(world.v2, "/split") - before["v2"]
    assert v1 + v2 == n
    assert abs(v2 / n - 0.10) <= 0.025, (v1, v2)  # 2000 draws: ±2.5 points is 3.7 sigma


def test_a_header_match_sends_canaries_to_v2_only(world: World) -> None:
    with httpx.Client(trust_env=False, timeout=10) as client:
        canary = Counter(
            client.get(world.url("books", "/x"), headers={"x-canary": "1"}).json()["instance"]
            for _ in range(40)
        )
        others = Counter(client.get(world.url("books", "/x")).json()["instance"] for _ in range(40))
        no_match = client.get(world.url("books", "/x"), headers={"x-canary": "0"}).json()
    assert canary == {"v2": 40}
    assert others == {"v1": 20, "v2": 20}  # the default route: both, round robin
    assert no_match["instance"] in ("v1", "v2")
    by_route = world.web.metric("weft_proxy_requests_total", peer="books", route="canary")
    assert by_route == 40


def test_fault_abort_10_percent_gives_10_percent_503s(world: World) -> None:
    n = 2000
    before = seen(world.v1, "/fault") + seen(world.v2, "/fault")
    statuses = Counter()
    with httpx.Client(trust_env=False, timeout=10) as client:
        for i in range(n):
            resp = client.get(world.url("books", f"/fault/{i}"))
            statuses[resp.status_code] += 1
            if resp.status_code == 503:
                assert resp.headers["x-weft-proxy-error"] == "fault"
    assert abs(statuses[503] / n - 0.10) <= 0.02, statuses
    reached = seen(world.v1, "/fault") + seen(world.v2, "/fault") - before
    assert reached == statuses[200]  # an aborted request never reaches an app
    injected = world.web.metric("weft_proxy_faults_injected_total", route="fault", fault="abort")
    assert injected == statuses[503]


def test_mirrored_requests_reach_the_mirror_and_the_caller_never_waits(world: World) -> None:
    with httpx.Client(trust_env=False, timeout=10) as client:
        slowest = 0.0
        for i in range(10):
            started = time.perf_counter()
            resp = client.get(world.url("books", f"/mirrored/{i}"))
            slowest = max(slowest, time.perf_counter() - started)
            assert resp.status_code == 200 and resp.json()["instance"] == "v1"
    assert slowest < 1.0  # the mirror takes 2 s to answer each copy
    wait_until(lambda: seen(world.shadow, "/mirrored") == 10, timeout=10, what="the mirror")
    assert world.shadow.seen[-1].headers["x-weft-client-id"].endswith("/svc/web")
    wait_until(
        lambda: world.web.metric("weft_proxy_mirrored_requests_total", result="2xx") == 10,
        timeout=10,
        what="mirror answers counted",
    )


def test_a_streamed_request_is_bounded_by_its_routes_timeout_too(world: World) -> None:
    """A body too large to hold for a retry streams through; the route's timeout still ends
    it (at the proxy's 100 ms timeout sweep), long before the app's 1 s."""
    with httpx.Client(trust_env=False, timeout=10) as client:
        started = time.perf_counter()
        resp = client.post(world.url("books", "/sleep?s=1"), content=b"x" * (200 * 1024))
        elapsed = time.perf_counter() - started
    assert resp.status_code == 504
    assert resp.headers["x-weft-proxy-error"] == "timeout"
    assert 0.28 <= elapsed < 0.9, elapsed


def test_no_route_answers_404_and_a_bad_v2_snapshot_is_refused_whole(world: World) -> None:
    doc = json.loads(world.web.snapshot_path.read_text())
    books = next(u for u in doc["upstreams"] if u["name"] == "books")
    books["routes"] = [r for r in books["routes"] if r["name"] != "default"]
    doc["version"] = 2
    world.web.write_snapshot(doc)
    world.web.wait_applied(2)
    with httpx.Client(trust_env=False, timeout=10) as client:
        resp = client.get(world.url("books", "/nothing-routes-this"))
    assert resp.status_code == 404
    assert resp.headers["x-weft-proxy-error"] == "no_route"

    broken = json.loads(json.dumps(doc))
    broken["version"] = 3
    target = next(u for u in broken["upstreams"] if u["name"] == "books")
    target["routes"][0]["match"] = [{"path": {"regex": "/a(["}}]
    target["routes"][1]["backends"] = [{"upstream": "nowhere"}]
    world.web.write_snapshot(broken)
    result = world.web.wait_result(3)
    assert not result["accepted"]
    assert "upstreams[0].routes[0].match[0]:" in result["reason"]
    assert "backend 'nowhere' is not an upstream" in result["reason"]
    assert world.web.config()["version"] == 2  # the last good one keeps serving
