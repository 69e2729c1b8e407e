"""The talk's four examples (/work/shared/seeds/000_e4cb10eab74c21b6.txt, the "Linkerd2 -
Service Profile" and "Istio - Virtual Service" slides), applied with `weft apply` and proven
by traffic through real agents, real sidecars (mTLS) and real applications:

    client ──► productpage's sidecar ══► webapp's sidecar  ──► app (fails a share on request)
                                     ══► authors' sidecar ──► app (slow on request)
                                     ══► details v1 / v2, reviews v1 / v3 sidecars ──► apps

Every figure is counted where a user would count it: at the client and at the applications.

The slides show only each resource's `spec`, and the two VirtualService slides are not valid
YAML as printed (a `- route:` / `- destination:` one level off; any YAML parser, kubectl's
included, refuses them: `test_the_slides_yaml_as_printed_is_refused_naming_the_line`). So the
documents applied are the golden files tests/golden/importers/*/talk-*.yaml: the slide's
fields and values unchanged, wrapped in apiVersion/kind/metadata, indentation normalised. The
subsets they name come from Istio's bookinfo destination-rule-all.yaml (golden files too).
Two more anchor documents close the file: a DestinationRule's outlier detection and the Istio
reference's rewrite example, each shown by traffic too.
"""

from __future__ import annotations

import math
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ca import KeyEncryptionKey
from tests.harness import WeftAgent, WeftServer, free_port, wait_until

from .test_cli_registry import weft
from .test_cli_traffic import cli
from .test_proxy_support import Background, HttpApp

pytestmark = pytest.mark.timeout(180)

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "importers"
# The talk's "Istio - Virtual Service" slide, first block, character for character (the seed
# ../shared/seeds/000_e4cb10eab74c21b6.txt): its `- route:` sits one level off.
SLIDE = """\
spec:
  gateways:
    - bookinfo-gateway
  hosts:
    - details
  http:
    - match:
        - headers:
            end-user:
              exact: sam
      - route:
          - destination:
              host: details
              subset: v1
"""


def golden(kind: str, name: str) -> str:
    return (GOLDEN / kind / f"{name}.yaml").read_text()


@dataclass
class Talk:
    server: WeftServer
    tmp: Path
    apps: dict[str, HttpApp]
    app_ports: dict[str, int]
    local: dict[str, int]  # upstream service -> productpage's local port for it
    admin: str  # productpage's sidecar admin address

    def url(self, service: str, path: str) -> str:
        return f"http://127.0.0.1:{self.local[service]}{path}"

    def apply(self, *texts: str) -> str:
        paths: list[str] = []
        for text in texts:
            path = self.tmp / f"apply-{uuid.uuid4().hex[:8]}.yaml"
            path.write_text(text)
            paths += ["-f", str(path)]
        done = cli(self.server, "apply", *paths)
        assert done.returncode == 0, done.stderr
        return str(done.stderr)

    def routes(self, service: str) -> list[str]:
        config = httpx.get(f"http://{self.admin}/config", timeout=5).json()
        upstream = next(u for u in config["snapshot"]["upstreams"] if u["name"] == service)
        return [r["name"] for r in upstream.get("routes", [])]

    def metric(self, name: str, **labels: str) -> float:
        total = 0.0
        for line in httpx.get(f"http://{self.admin}/metrics", timeout=5).text.splitlines():
            if not line.startswith(name + "{"):
                continue
            head, _, value = line.rpartition(" ")
            if all(f'{k}="{v}"' in head for k, v in labels.items()):
                total += float(value)
        return total


def seen(app: HttpApp, path: str, method: str = "GET") -> int:
    return sum(1 for s in app.seen if s.target.startswith(path) and s.method == method)


def instances(client: httpx.Client, url: str, n: int, **headers: str) -> Counter[str]:
    out: Counter[str] = Counter()
    for _ in range(n):
        resp = client.get(url, headers=headers)
        out[resp.json()["instance"] if resp.status_code == 200 else str(resp.status_code)] += 1
    return out


@pytest.fixture(scope="module")
def talk(etcd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Talk]:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("talk")
    kek = tmp / "kek"
    kek.write_text(KeyEncryptionKey.generate().to_text())
    server = WeftServer(
        etcd.endpoints,
        f"/weft-test-{uuid.uuid4().hex[:12]}/",
        tmp,
        args=("--ca-kek-file", str(kek), "--ca-allow-short-leaves"),
    )
    agents: list[WeftAgent] = []
    # (node, service, instance, meta version): webapp and authors as in Linkerd's booksapp,
    # details and reviews as in Istio's bookinfo.
    layout = [
        ("vm-b", "webapp", "webapp", None),
        ("vm-b", "details", "details-v1", "v1"),
        ("vm-b", "reviews", "reviews-v1", "v1"),
        ("vm-c", "authors", "authors", None),
        ("vm-c", "details", "details-v2", "v2"),
        ("vm-c", "reviews", "reviews-v3", "v3"),
        ("vm-a", "reviews", "reviews-v2", "v2"),  # only the rewrite example routes to it
    ]
    apps = {name: HttpApp(name) for _, _, name, _ in layout}
    try:
        server.start()
        httpx.post(
            server.url + "/v1/ca/init", json={"trust_domain": "talk.test"}, headers=server.headers()
        ).raise_for_status()

        def agent(node: str) -> WeftAgent:
            resp = httpx.post(
                server.url + "/v1/tokens",
                json={"role": "agent", "node": node},
                headers=server.headers(),
            )
            resp.raise_for_status()
            made = WeftAgent(server.url, resp.json()["secret"], tmp, node=node)
            agents.append(made)
            return made

        with Background() as bg:
            ports = {name: bg.start(app.serve) for name, app in apps.items()}
            nodes = {node: agent(node) for node in ("vm-b", "vm-c", "vm-a")}
            for node, service, name, version in layout:
                meta = f'meta = {{ version = "{version}" }}\n' if version else ""
                nodes[node].define(
                    name,
                    f'name = "{service}"\nport = {ports[name]}\n{meta}'
                    f"[sidecar]\nport = {free_port()}\n",
                )
            local = {s: free_port() for s in ("webapp", "authors", "details", "reviews")}
            page = nodes["vm-a"]
            page.define(
                "productpage",
                f'name = "productpage"\nport = {free_port()}\n[sidecar]\nport = {free_port()}\n'
                + "".join(
                    f'[[upstreams]]\nservice = "{s}"\nlocal_port = {p}\n' for s, p in local.items()
                ),
            )
            for made in nodes.values():
                made.start()
            world = Talk(server, tmp, apps, ports, local, "")
            with httpx.Client(trust_env=False, timeout=5) as client:
                for service, names in (
                    ("webapp", {"webapp"}),
                    ("authors", {"authors"}),
                    ("details", {"details-v1", "details-v2"}),
                    ("reviews", {"reviews-v1", "reviews-v2", "reviews-v3"}),
                ):
                    wait_until(
                        lambda s=service, n=names: (
                            set(instances(client, world.url(s, "/"), 8)) == n
                        ),
                        timeout=60,
                        what=f"productpage's sidecar to reach every {service} instance",
                    )
            world.admin = next(
                s["sidecar"]["proxy"]["admin"]
                for s in page.status()["services"]
                if s["name"] == "productpage"
            )
            yield world
    finally:
        for made in agents:
            made.stop()
        server.stop()


def test_the_slides_yaml_as_printed_is_refused_naming_the_line(tmp_path: Path) -> None:
    """Why the applied documents normalise the indentation: the slides' VirtualServices, as
    printed, are no YAML at all, and Weft says where (the ServiceProfile slides parse)."""
    path = tmp_path / "slide.yaml"
    path.write_text(
        "apiVersion: networking.istio.io/v1beta1\nkind: VirtualService\n"
        "metadata: {name: details}\n" + SLIDE
    )
    done = weft("convert", "-f", str(path))
    assert done.returncode != 0
    assert "slide.yaml" in done.stderr and "line 14" in done.stderr, done.stderr


def test_retryable_annotations_route_succeeds_far_more_often_and_the_budget_caps_the_load(
    talk: Talk,
) -> None:
    """The slide's ServiceProfile (retryBudget 0.2 / 10 per second / 10 s, `GET
    /api/annotations` isRetryable). The app fails every 4th, then every 2nd request: a share
    that never fails 7 times in a row, which would eject the only instance (Weft's failure
    accrual, another feature), so the budget alone is what is measured."""
    said = talk.apply(golden("serviceprofile", "talk-webapp-retry-budget"))
    assert "condition.isRetryable belongs to the route" in said
    wait_until(
        lambda: talk.routes("webapp") == ["get-api-annotations", "default"],
        timeout=5,
        interval=0.05,
        what="the profile in productpage's sidecar",
    )
    app = talk.apps["webapp"]
    direct = f"http://127.0.0.1:{talk.app_ports['webapp']}/api/annotations"

    def run(client: httpx.Client, url: str, n: int) -> Counter[int]:
        return Counter(client.get(url).status_code for _ in range(n))

    with httpx.Client(trust_env=False, timeout=10) as client:
        # A quarter fail: without the mesh a quarter of the calls fail; through it none do.
        assert run(client, direct + "?failevery=4", 100) == {200: 75, 503: 25}
        before = seen(app, "/api/annotations")
        started = time.perf_counter()
        assert run(client, talk.url("webapp", "/api/annotations?failevery=4"), 100) == {200: 100}
        retried = seen(app, "/api/annotations") - before - 100
        assert 25 <= retried <= 34, retried  # each failure retried once (and 1 in 4 twice)

        # Half fail, and every failure wants a retry: far more than the budget allows.
        assert run(client, direct + "?failevery=2", 100) == {200: 50, 503: 50}
        n = 300
        before = seen(app, "/api/annotations")
        meshed = run(client, talk.url("webapp", "/api/annotations?failevery=2"), n)
        elapsed = time.perf_counter() - started
    extra = seen(app, "/api/annotations") - before - n
    assert meshed[200] / n >= 0.65, meshed  # still far more often than the app's one half
    # Budget: ratio x requests + minRetriesPerSecond x ttl per ttl window, for both runs
    # together (the 3 retries a request may have would be 300 here alone). Requests are all
    # the sidecar ever sent webapp, the fixture's own included: their deposits may be live.
    sent = talk.metric("weft_proxy_requests_total", direction="outbound", peer="webapp")
    windows = math.ceil(elapsed / 10)
    assert 100 + n <= sent <= 100 + n + 100, sent
    assert 100 <= retried + extra <= 0.2 * sent + 10 * 10 * windows, (extra, sent, elapsed)
    assert extra < n / 2  # half the requests failed once: the budget refused some retries
    exhausted = talk.metric("weft_proxy_retry_budget_exhausted_total", route="get-api-annotations")
    assert exhausted > 0

    # A route the profile does not call retryable, and POST on this one: never retried.
    with httpx.Client(trust_env=False, timeout=10) as client:
        before = seen(app, "/api/books")
        assert run(client, talk.url("webapp", "/api/books?failevery=2"), 60)[503] == 30
        assert seen(app, "/api/books") - before == 60
        before = seen(app, "/api/annotations", "POST")
        posts = Counter(
            client.post(
                talk.url("webapp", "/api/annotations?failevery=2"), content=b"x"
            ).status_code
            for _ in range(20)
        )
        assert posts == {200: 10, 503: 10}
        assert seen(app, "/api/annotations", "POST") - before == 20


def test_head_authors_json_times_out_at_300ms_and_other_routes_are_not_cut(talk: Talk) -> None:
    said = talk.apply(golden("serviceprofile", "talk-authors-timeout"))
    assert "read as spec.routes[0].timeout" in said
    wait_until(
        lambda: talk.routes("authors") == ["head-authors-id.json", "default"],
        timeout=5,
        interval=0.05,
        what="the profile in productpage's sidecar",
    )
    with httpx.Client(trust_env=False, timeout=10) as client:
        started = time.perf_counter()
        resp = client.head(talk.url("authors", "/authors/7.json?sleep=1"))
        elapsed = time.perf_counter() - started
        assert resp.status_code == 504 and resp.headers["x-weft-proxy-error"] == "timeout"
        assert 0.25 <= elapsed <= 0.9, elapsed  # about 300 ms, not the app's 1 s

        assert client.head(talk.url("authors", "/authors/7.json")).status_code == 200
        for method, path in (
            ("GET", "/authors/7.json"),  # another method
            ("HEAD", "/authors/7/books.json"),  # [^/]* is one segment, anchored
            ("HEAD", "/v1/authors/7.json"),  # the regex matches the whole path
        ):
            started = time.perf_counter()
            resp = client.request(method, talk.url("authors", f"{path}?sleep=1"))
            elapsed = time.perf_counter() - started
            assert resp.status_code == 200, (method, path, resp.status_code)
            assert elapsed >= 0.95, (method, path, elapsed)  # waited for the slow app


def test_end_user_sam_goes_to_details_v1_and_other_requests_get_istios_404(talk: Talk) -> None:
    said = talk.apply(
        golden("destinationrule", "istio-bookinfo-details"),
        golden("virtualservice", "talk-end-user-sam"),
    )
    assert "spec.gateways without mesh is widened" in said
    wait_until(
        lambda: talk.routes("details") == ["http-0"],
        timeout=5,
        interval=0.05,
        what="the VirtualService in productpage's sidecar",
    )
    with httpx.Client(trust_env=False, timeout=10) as client:
        assert instances(client, talk.url("details", "/details/0"), 40, **{"end-user": "sam"}) == {
            "details-v1": 40
        }
        for headers in ({"end-user": "jason"}, {}):
            missed = client.get(talk.url("details", "/details/0"), headers=headers)
            assert missed.status_code == 404
            assert missed.headers["x-weft-proxy-error"] == "no_route"


def test_reviews_splits_50_50_between_v1_and_v3_and_times_out_at_half_a_second(
    talk: Talk,
) -> None:
    said = talk.apply(
        golden("destinationrule", "istio-bookinfo-reviews"),
        golden("virtualservice", "talk-reviews-50-50"),
    )
    assert "Istio would retry twice" in said  # the implicit retries, made explicit, are said
    wait_until(
        lambda: talk.routes("reviews") == ["http-0"],
        timeout=5,
        interval=0.05,
        what="the VirtualService in productpage's sidecar",
    )
    n = 400
    v1, v3 = talk.apps["reviews-v1"], talk.apps["reviews-v3"]
    before = seen(v1, "/reviews/") + seen(v3, "/reviews/")
    with httpx.Client(trust_env=False, timeout=10) as client:
        got = instances(client, talk.url("reviews", "/reviews/1"), n)
    assert set(got) == {"reviews-v1", "reviews-v3"}, got
    # 400 fair draws: 3.5 sigma is 0.0875 either side of one half
    assert abs(got["reviews-v1"] / n - 0.5) <= 0.0875, got
    assert seen(v1, "/reviews/") + seen(v3, "/reviews/") - before == n

    with httpx.Client(trust_env=False, timeout=10) as client:
        for _ in range(2):  # whichever subset is drawn
            started = time.perf_counter()
            resp = client.get(talk.url("reviews", "/reviews/1?sleep=1.5"))
            elapsed = time.perf_counter() - started
            assert resp.status_code == 504 and resp.headers["x-weft-proxy-error"] == "timeout"
            assert 0.45 <= elapsed <= 1.2, elapsed  # about 0.5 s, not the app's 1.5 s
        started = time.perf_counter()
        assert client.get(talk.url("reviews", "/reviews/1?sleep=0.2")).status_code == 200
        assert time.perf_counter() - started >= 0.2


OUTLIER = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: authors}
spec:
  host: authors.booksapp.svc.cluster.local
  trafficPolicy:
    outlierDetection:
      consecutive5xxErrors: 1
      interval: 1s
      baseEjectionTime: 2s
"""


def test_a_destination_rules_outlier_detection_ejects_a_failing_instance(talk: Talk) -> None:
    """Not one of the talk's examples: the DestinationRule trafficPolicy the importer now
    honours (outlierDetection as the sidecar's failure accrual), shown by traffic."""
    said = talk.apply(OUTLIER)
    assert "outlierDetection.interval is not supported" in said  # said per field

    def accrual() -> dict:  # type: ignore[type-arg]
        config = httpx.get(f"http://{talk.admin}/config", timeout=5).json()
        upstream = next(u for u in config["snapshot"]["upstreams"] if u["name"] == "authors")
        return dict(upstream.get("failure_accrual", {}))

    wait_until(
        lambda: accrual().get("consecutive_failures") == 1,
        timeout=5,
        interval=0.05,
        what="the outlier detection in productpage's sidecar",
    )
    app = talk.apps["authors"]
    with httpx.Client(trust_env=False, timeout=10) as client:
        before = seen(app, "/ejected")
        first = client.get(talk.url("authors", "/ejected?failevery=1"))
        assert first.status_code == 503 and "x-weft-proxy-error" not in first.headers
        started = time.monotonic()
        # One 5xx ejects the only instance (Istio's consecutive5xxErrors: 1): the sidecar
        # answers for it, and the app is not asked, until the ejection time has passed.
        out = client.get(talk.url("authors", "/ejected"))
        assert out.status_code == 503
        assert out.headers["x-weft-proxy-error"] == "unavailable"
        assert "ejected after consecutive failures" in out.text
        assert seen(app, "/ejected") - before == 1
        back = wait_until(
            lambda: client.get(talk.url("authors", "/ejected")).status_code == 200,
            timeout=10,
            interval=0.2,
            what="the instance back after its ejection",
        )
        assert back and time.monotonic() - started >= 1.5  # baseEjectionTime: 2s


def test_istios_rewrite_example_sends_the_new_path_to_the_app(talk: Talk) -> None:
    """Not one of the talk's examples: the Istio reference's first VirtualService (two
    prefixes rewritten to /newcatalog for subset v2, everything else to v1), by traffic."""
    talk.apply(
        golden("destinationrule", "istio-bookinfo-reviews"),
        golden("virtualservice", "istio-reference-match-uri-rewrite"),
    )
    wait_until(
        lambda: talk.routes("reviews") == ["reviews-v2-routes", "reviews-v1-route"],
        timeout=5,
        interval=0.05,
        what="the VirtualService in productpage's sidecar",
    )
    v1, v2 = talk.apps["reviews-v1"], talk.apps["reviews-v2"]
    with httpx.Client(trust_env=False, timeout=10) as client:
        for asked, sent in (
            ("/wpcatalog/books?page=2", "/newcatalog/books?page=2"),
            ("/consumercatalog", "/newcatalog"),
        ):
            resp = client.get(talk.url("reviews", asked))
            assert resp.json()["instance"] == "reviews-v2"
            assert resp.json()["path"] == sent == v2.seen[-1].target  # what the app received
        other = client.get(talk.url("reviews", "/catalog/wpcatalog")).json()
    assert other["instance"] == "reviews-v1" and v1.seen[-1].target == "/catalog/wpcatalog"
