"""The talk's own Istio and Linkerd examples, applied as written with `weft apply`, steer real
sidecars between real apps: a DestinationRule's subsets by label, the 50/50 reviews v1/v3
split with `timeout: 0.5s`, the `end-user: sam` match to subset v1 (others get Istio's 404),
and the ServiceProfile routes with `isRetryable`, `timeout: 300ms` and a retry budget."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.harness import free_port, wait_until

from .test_agent_mesh import Mesh, mesh  # noqa: F401 - the fixture
from .test_agent_traffic import served_by
from .test_cli_traffic import cli

pytestmark = pytest.mark.timeout(120)

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "importers"

SUBSETS = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews.default.svc.cluster.local
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v3, labels: {version: v3}}
"""

SAM = """\
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: reviews}
spec:
  gateways:
    - bookinfo-gateway
  hosts:
    - reviews
  http:
    - match:
        - headers:
            end-user:
              exact: sam
      route:
        - destination:
            host: reviews
            subset: v1
"""

PROFILE = """\
apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata: {name: reviews.default.svc.cluster.local}
spec:
  retryBudget:
    retryRatio: 0.2
    minRetriesPerSecond: 10
    ttl: 10s
  routes:
  - name: GET /api/annotations
    condition:
      method: GET
      pathRegex: /api/annotations
      isRetryable: true
  - condition:
      method: HEAD
      pathRegex: /authors/[^/]*\\.json
      name: HEAD /authors/{id}.json
      timeout: 300ms
"""


def test_the_talks_istio_and_linkerd_examples_steer_real_sidecars(
    mesh: Mesh,  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    for node, version in (("vm-b", "v1"), ("vm-c", "v3")):
        app = mesh.app(f"reviews-{version}")
        agent = mesh.agent(node)
        agent.define(
            "reviews",
            f'name = "reviews"\nport = {app}\nmeta = {{ version = "{version}" }}\n'
            f"[sidecar]\nport = {free_port()}\n",
        )
        agent.start()
    upstream = free_port()
    page = mesh.agent("vm-a")
    page.define(
        "productpage",
        f'name = "productpage"\nport = {mesh.app("productpage")}\n[sidecar]\nport = {free_port()}\n'
        f'[[upstreams]]\nservice = "reviews"\nlocal_port = {upstream}\n',
    )
    page.start()
    wait_until(
        lambda: set(served_by(upstream, "/x", 10)) == {"reviews-v1", "reviews-v3"},
        timeout=40,
        what="productpage's sidecar to reach both reviews instances",
    )
    admin = page.status()["services"][0]["sidecar"]["proxy"]["admin"]

    def routes() -> list[dict]:  # type: ignore[type-arg]
        config = httpx.get(f"http://{admin}/config").json()
        reviews = next(u for u in config["snapshot"]["upstreams"] if u["name"] == "reviews")
        return list(reviews.get("routes", []))

    def apply(*texts: str) -> str:
        paths = []
        for i, text in enumerate(texts):
            paths += ["-f", str(tmp_path / f"{len(list(tmp_path.iterdir()))}-{i}.yaml")]
            Path(paths[-1]).write_text(text)
        done = cli(mesh.server, "apply", *paths)
        assert done.returncode == 0, done.stderr
        return str(done.stderr)

    # The 50/50 split with its timeout, and the subsets by label, as the talk writes them.
    split = (GOLDEN / "virtualservice" / "talk-reviews-50-50.yaml").read_text()
    said = apply(SUBSETS, split)
    assert "Istio would retry twice" in said  # the implicit retries, made explicit, are said
    wait_until(
        lambda: [r["name"] for r in routes()] == ["http-0"],
        timeout=5,
        interval=0.05,
        what="the imported split in the sidecar",
    )
    assert routes()[0]["timeout_ms"] == 500
    retry = routes()[0]["retry"]  # Istio's implicit retries, for idempotent requests only
    assert (retry["attempts"], retry["on"], retry.get("non_idempotent", False)) == (
        2,
        ["reset", 503],
        False,
    )
    seen = served_by(upstream, "/reviews/1", 60)
    assert set(seen) == {"reviews-v1", "reviews-v3"} and min(seen.values()) >= 10

    # end-user: sam goes to v1; other requests get Istio's answer for no matching rule: 404.
    said = apply(SAM)
    assert "spec.gateways without mesh is widened" in said
    wait_until(
        lambda: httpx.get(f"http://127.0.0.1:{upstream}/r").status_code == 404,
        timeout=5,
        interval=0.05,
        what="the sam route in the sidecar",
    )
    assert served_by(upstream, "/r", 20, **{"end-user": "sam"}) == {"reviews-v1": 20}
    missed = httpx.get(f"http://127.0.0.1:{upstream}/r", headers={"end-user": "bob"})
    assert missed.status_code == 404
    assert missed.headers["x-weft-proxy-error"] == "no_route"

    # The talk's two ServiceProfile slides as one profile for reviews, indentation as on the
    # slides (route fields inside `condition`: read where they belong, and said).
    said = apply(PROFILE)
    assert "spec.routes[0].condition.isRetryable belongs to the route" in said
    assert "read as spec.routes[1].timeout" in said
    wait_until(
        lambda: (
            [r["name"] for r in routes()]
            == ["get-api-annotations", "head-authors-id.json", "default"]
        ),
        timeout=5,
        interval=0.05,
        what="the imported ServiceProfile in the sidecar",
    )
    annotations, authors, _ = routes()
    assert annotations["retry"]["attempts"] == 3 and annotations["retry"]["non_idempotent"]
    assert authors["timeout_ms"] == 300
    budget = next(
        u
        for u in httpx.get(f"http://{admin}/config").json()["snapshot"]["upstreams"]
        if u["name"] == "reviews"
    )["retry_budget"]
    assert budget["ratio"] == 0.2 and budget["min_per_second"] == 10
    assert set(served_by(upstream, "/api/annotations", 20)) == {"reviews-v1", "reviews-v3"}
    assert httpx.head(f"http://127.0.0.1:{upstream}/authors/7.json").status_code == 200
