"""`weft apply` through the whole mesh: server -> agents -> sidecars, with real agents, real
sidecars and real apps. A Route applied reaches the caller's sidecar within 2 s and steers
traffic; deleting it steers it back."""

from __future__ import annotations

import time
from collections import Counter

import httpx
import pytest

from tests.harness import free_port, wait_until

from .test_agent_mesh import Mesh, mesh  # noqa: F401 - the fixture
from .test_cli_traffic import cli

pytestmark = pytest.mark.timeout(120)

RESOURCES = """\
apiVersion: weft.dev/v1
kind: Subset
metadata: {name: books-v1}
spec: {service: books, subset: v1, tags: [v1]}
---
apiVersion: weft.dev/v1
kind: Subset
metadata: {name: books-v2}
spec: {service: books, subset: v2, tags: [v2]}
---
apiVersion: weft.dev/v1
kind: Route
metadata: {name: books}
spec:
  service: books
  rules:
  - name: canary
    match:
    - headers: [{name: x-canary, exact: "1"}]
    backends: [{service: books, subset: v2}]
  - name: stable
    match:
    - path: {segmentPrefix: /stable}
    backends: [{service: books, subset: v1}]
"""


def book_instance(world: Mesh, node: str, version: str) -> None:
    app = world.app(f"books-{version}")
    agent = world.agent(node)
    agent.define(
        "books",
        f'name = "books"\nport = {app}\ntags = ["{version}"]\n[sidecar]\nport = {free_port()}\n',
    )
    agent.start()


def served_by(port: int, path: str, n: int, **headers: str) -> Counter[str]:
    with httpx.Client(trust_env=False, timeout=5) as client:
        return Counter(
            client.get(f"http://127.0.0.1:{port}{path}", headers=headers).json()["service"]
            for _ in range(n)
        )


def test_an_applied_route_reaches_the_sidecars_within_two_seconds_and_steers_traffic(
    mesh: Mesh,  # noqa: F811 - the fixture
    tmp_path,
) -> None:
    book_instance(mesh, "vm-b", "v1")
    book_instance(mesh, "vm-c", "v2")
    upstream = free_port()
    shop = mesh.agent("vm-a")
    shop.define(
        "shop",
        f'name = "shop"\nport = {mesh.app("shop")}\n[sidecar]\nport = {free_port()}\n'
        f'[[upstreams]]\nservice = "books"\nlocal_port = {upstream}\n',
    )
    shop.start()
    wait_until(
        lambda: set(served_by(upstream, "/x", 10)) == {"books-v1", "books-v2"},
        timeout=40,
        what="shop's sidecar to reach both books instances",
    )
    admin = shop.status()["services"][0]["sidecar"]["proxy"]["admin"]

    def routes() -> list[str]:
        config = httpx.get(f"http://{admin}/config").json()
        books = next(u for u in config["snapshot"]["upstreams"] if u["name"] == "books")
        return [r["name"] for r in books.get("routes", [])]

    assert routes() == []
    path = tmp_path / "books.yaml"
    path.write_text(RESOURCES)
    done = cli(mesh.server, "apply", "-f", str(path))
    assert done.returncode == 0, done.stderr
    applied = time.monotonic()
    wait_until(
        lambda: routes() == ["canary", "stable", "default"],
        timeout=5,
        interval=0.05,
        what="the route in shop's sidecar",
    )
    assert time.monotonic() - applied < 2.0

    assert served_by(upstream, "/x", 20, **{"x-canary": "1"}) == {"books-v2": 20}
    assert served_by(upstream, "/stable/a", 20) == {"books-v1": 20}
    assert set(served_by(upstream, "/x", 20)) == {"books-v1", "books-v2"}  # the default route

    gone = cli(mesh.server, "delete", "Route", "books")
    assert gone.returncode == 0, gone.stderr
    deleted = time.monotonic()
    wait_until(lambda: routes() == [], timeout=5, interval=0.05, what="the route to go")
    assert time.monotonic() - deleted < 2.0
    assert set(served_by(upstream, "/x", 20, **{"x-canary": "1"})) == {"books-v1", "books-v2"}
