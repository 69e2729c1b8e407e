"""Golden metrics are right: a load generator at a known rate, with a known failure share,
through real sidecars to an app with known latency; `weft stat`, `routes`, `edges` and `tap`
(the CLI as a subprocess) report what the load generator itself measured.

Real server, real etcd, real agents, real proxies; the agents push every second and the
server keeps one-second samples so a 10 s window fits in a short test.
"""

from __future__ import annotations

import bisect
import json
import os
import pty
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import trio
import yaml

from ca import KeyEncryptionKey
from proxy._metrics import BUCKETS
from tests.harness import free_port, spawn, wait_until

from .test_agent_mesh import TD, Mesh
from .test_cli_traffic import cli

DOCS = Path(__file__).resolve().parents[2] / "docs" / "observability"

pytestmark = pytest.mark.timeout(120)

RATE = 40.0  # requests per second, open loop
FAIL_EVERY = 10  # every 10th request is answered 500: 90 % success
LATENCY = (0.045, 0.055)  # the app's answer time, uniform

# The app: answers after 45-55 ms; 500 when asked to fail. A plain threaded HTTP server in
# its own process, so its latency does not share a loop with anything else.
APP = """
import random, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path != "/health":
            time.sleep(random.uniform(float(sys.argv[2]), float(sys.argv[3])))
        status = 500 if self.headers.get("x-fail") else 200
        body = b'{"service": "api"}'
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""

ROUTE = """\
apiVersion: weft.dev/v1
kind: Route
metadata: {name: api}
spec:
  service: api
  rules:
  - name: items
    match: [{path: {segmentPrefix: /items}}]
    backends: [{service: api}]
  - name: orders
    match: [{path: {segmentPrefix: /orders}}]
    backends: [{service: api}]
"""


class Load:
    """An open-loop load generator: request n starts at n / RATE; it records its own truth."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.done: list[tuple[float, float, int, str]] = []  # (end, latency, status, path)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=lambda: trio.run(self._run), daemon=True)

    async def _one(self, http: httpx.AsyncClient, n: int) -> None:
        path = f"/items/{n % 3}" if n % 4 else f"/orders/{n % 3}"
        headers = {"x-fail": "1"} if n % FAIL_EVERY == 0 else {}
        started = time.monotonic()
        try:
            status = (
                await http.get(f"http://127.0.0.1:{self.port}{path}", headers=headers)
            ).status_code
        except httpx.HTTPError:
            status = 0
        end = time.monotonic()
        self.done.append((time.time(), end - started, status, path))

    async def _run(self) -> None:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with (
            httpx.AsyncClient(trust_env=False, timeout=5, limits=limits) as http,
            trio.open_nursery() as nursery,
        ):
            start = trio.current_time()
            n = 0
            while not self.stop.is_set():
                await trio.sleep_until(start + n / RATE)
                nursery.start_soon(self._one, http, n)
                n += 1

    def truth(self, since: float, until: float) -> dict[str, float]:
        window = [d for d in self.done if since <= d[0] <= until]
        latencies = sorted(d[1] for d in window)
        failures = sum(1 for d in window if d[2] >= 500 or d[2] == 0)
        return {
            "rps": len(window) / (until - since),
            "success": 1 - failures / len(window),
            "p50": latencies[len(latencies) // 2],
            "p99": latencies[int(len(latencies) * 0.99)],
        }


def bucket(seconds: float) -> int:
    return bisect.bisect_left(BUCKETS, seconds)


@pytest.fixture
def metrics_mesh(start_server, tmp_path: Path):
    kek = tmp_path / "kek"
    kek.write_text(KeyEncryptionKey.generate().to_text())
    server = start_server(
        "--ca-kek-file",
        str(kek),
        "--ca-allow-short-leaves",
        "--metrics-resolution",
        "1s",
        "--metrics-min-interval",
        "0.5s",
    )
    httpx.post(
        server.url + "/v1/ca/init", json={"trust_domain": TD}, headers=server.headers()
    ).raise_for_status()
    m = Mesh(server, tmp_path)
    try:
        yield m
    finally:
        m.close()


def start_prometheus(mesh: Mesh, tmp_path: Path) -> str:
    """A real Prometheus (Debian's `prometheus`) discovering the sidecars through the
    server's HTTP service discovery, with the scrape configuration docs/observability ships.
    (Debian builds Prometheus without Consul discovery; the Consul path's contract, the
    catalog's `weft_metrics` meta, is checked at the end of the test.)"""
    binary = shutil.which("prometheus")
    assert binary, "Prometheus is not installed: scripts/bootstrap test installs it"
    config = yaml.safe_load((DOCS / "prometheus-http-sd.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    sd = config["scrape_configs"][0]["http_sd_configs"][0]
    sd["url"] = mesh.server.url + "/v1/metrics/targets"
    sd["authorization"]["credentials"] = mesh.server.token
    sd["refresh_interval"] = "1s"
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    mesh.apps.append(
        spawn(
            [
                binary,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            log_path=tmp_path / "prometheus.log",
        )
    )
    return f"http://127.0.0.1:{port}"


def prometheus_targets(url: str) -> set[str]:
    try:
        active = httpx.get(url + "/api/v1/targets", timeout=2).json()["data"]["activeTargets"]
    except (httpx.HTTPError, ValueError, KeyError):
        return set()
    return {t["labels"].get("service", "") for t in active if t["health"] == "up"}


def on_a_terminal(mesh: Mesh, *args: str) -> str:
    """Run `weft ARGS` with a pseudo-terminal as its output; what it wrote."""
    main, child = pty.openpty()
    env = {**os.environ, "WEFT_TOKEN": mesh.server.token, "TERM": "xterm"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "weft", *args, "--address", mesh.server.url],
        stdout=child,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    os.close(child)
    out = b""
    try:
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # EIO: the child closed its end
                break
            if not chunk:
                break
            out += chunk
        assert proc.wait(timeout=30) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
        os.close(main)
    return out.decode(errors="replace")


def stat_json(mesh: Mesh, *args: str) -> dict:
    done = cli(mesh.server, *args, "-o", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_stat_routes_edges_and_tap_report_what_the_load_generator_measured(
    metrics_mesh: Mesh, tmp_path: Path
) -> None:
    mesh = metrics_mesh
    route = tmp_path / "route.yaml"
    route.write_text(ROUTE)
    assert cli(mesh.server, "apply", "-f", str(route)).returncode == 0

    app_port = free_port()
    mesh.apps.append(
        spawn(
            [sys.executable, "-c", APP, str(app_port), *map(str, LATENCY)],
            log_path=tmp_path / "app-api.log",
        )
    )
    api = mesh.agent("vm-b", metrics_interval="1s")
    api.define("api", f'name = "api"\nport = {app_port}\n[sidecar]\nport = {free_port()}\n')
    api.start()
    upstream = free_port()
    web = mesh.agent("vm-a", metrics_interval="1s")
    web.define(
        "web",
        f'name = "web"\nport = {free_port()}\n[sidecar]\nport = {free_port()}\n'
        f'[[upstreams]]\nservice = "api"\nlocal_port = {upstream}\n',
    )
    web.start()
    wait_until(
        lambda: httpx.get(f"http://127.0.0.1:{upstream}/items/0", timeout=5).status_code == 200,
        timeout=40,
        what="web's sidecar to reach api",
    )

    prometheus = start_prometheus(mesh, tmp_path)
    wait_until(
        lambda: prometheus_targets(prometheus) == {"api", "web"},
        timeout=30,
        what="Prometheus to find both sidecars through the Consul catalog",
    )

    load = Load(upstream)
    load.thread.start()
    try:
        # The measurement period (not a wait for a condition): a 10 s window wholly inside
        # the load, with a sample of the servers' on either side of it.
        time.sleep(12.5)
        asked = time.time()
        stat = stat_json(mesh, "stat", "api", "--window", "10s")
        truth = load.truth(asked - 10.5, asked)
        [row] = stat["rows"]
        assert row["service"] == "api" and row["proxies"] == 1 and row["instances"] == 1
        assert abs(row["rps"] - truth["rps"]) <= 0.05 * truth["rps"], (row, truth)
        assert abs(row["rps"] - RATE) <= 0.05 * RATE, (row, truth)
        assert abs(row["success_rate"] - truth["success"]) <= 0.01, (row, truth)
        assert abs(bucket(row["latency_ms"]["p50"] / 1000) - bucket(truth["p50"])) <= 1
        assert abs(bucket(row["latency_ms"]["p99"] / 1000) - bucket(truth["p99"])) <= 1
        assert row["tcp_connections"] >= 1  # web's sidecar holds pooled connections to api

        table = cli(mesh.server, "stat", "--window", "10s")  # what a person reads
        assert table.returncode == 0, table.stderr
        header, *lines = table.stdout.splitlines()
        assert header.split() == [
            "SERVICE",
            "MESHED",
            "SUCCESS",
            "RPS",
            "P50",
            "P95",
            "P99",
            "TCP_CONN",
        ]
        assert any(line.split()[:2] == ["api", "1/1"] for line in lines), table.stdout

        # The same view from Prometheus (PromQL rate over the window, histogram_quantile).
        promised = stat_json(mesh, "stat", "api", "-w", "10s", "--prometheus", prometheus)
        truth = load.truth(time.time() - 10.5, time.time())
        [prom] = promised["rows"]
        assert promised["source"] == "prometheus" and prom["service"] == "api"
        assert abs(prom["rps"] - truth["rps"]) <= 0.05 * truth["rps"], (prom, truth)
        assert abs(prom["success_rate"] - truth["success"]) <= 0.01, (prom, truth)
        assert abs(bucket(prom["latency_ms"]["p50"] / 1000) - bucket(truth["p50"])) <= 1
        assert abs(bucket(prom["latency_ms"]["p99"] / 1000) - bucket(truth["p99"])) <= 1

        callers = stat_json(mesh, "stat", "--to", "api", "--window", "10s")["rows"]
        assert [(r["from"], r["to"]) for r in callers] == [("web", "api")]
        assert abs(callers[0]["rps"] - RATE) <= 0.05 * RATE

        routes = {r["route"]: r for r in stat_json(mesh, "routes", "api", "-w", "10s")["rows"]}
        assert set(routes) >= {"items", "orders"}
        assert abs(routes["items"]["rps"] - 0.75 * RATE) <= 0.1 * RATE, routes
        assert abs(routes["orders"]["rps"] - 0.25 * RATE) <= 0.1 * RATE, routes
        assert routes.get("default", {}).get("requests", 0) == 0

        edges = stat_json(mesh, "edges", "--window", "10s")["rows"]
        assert [(e["from"], e["to"], e["client_id"]) for e in edges] == [
            ("web", "api", f"spiffe://{TD}/ns/default/svc/web")
        ]

        instance = api.status()["services"][0]["id"]
        tapped = cli(
            mesh.server,
            "tap",
            f"api/{instance}",
            "--path",
            "/orders",
            "--status",
            "5xx",
            "--direction",
            "inbound",
            "--count",
            "2",
            "--duration",
            "15s",
            "-o",
            "json",
        )
        assert tapped.returncode == 0, tapped.stderr
        events = [json.loads(line) for line in tapped.stdout.splitlines()]
        assert len(events) == 2
        for event in events:
            assert event["path"].startswith("/orders/") and event["direction"] == "inbound"
            assert event["client_id"] == f"spiffe://{TD}/ns/default/svc/web"
            assert event["service"] == "api" and event["status"] == 500
            assert event["instance"] == instance

        # On a terminal the table is redrawn in place (home + clear before each refresh).
        screen = on_a_terminal(
            mesh, "top", "api", "--duration", "2s", "--refresh", "0.5s", "--rows", "3"
        )
        assert screen.count("\x1b[H\x1b[2J") >= 2, screen
        assert "DIRECTION" in screen and "web" in screen and "api" in screen

        topped = cli(
            mesh.server, "top", "api", "--direction", "inbound", "--duration", "2s", "-o", "json"
        )
        assert topped.returncode == 0, topped.stderr
        final = json.loads(topped.stdout.splitlines()[-1])["rows"]
        assert {(r["from"], r["to"], r["method"]) for r in final} == {("web", "api", "GET")}
        assert {r["path"] for r in final} <= {
            f"/{p}/{n}" for p in ("items", "orders") for n in range(3)
        }
        counted = sum(r["count"] for r in final)
        assert RATE <= counted <= 3 * RATE, final  # about two seconds of traffic
    finally:
        load.stop.set()
        load.thread.join(timeout=10)

    assert api.status()["metrics"]["pushed"] > 10  # the agent's own account of it
    # Prometheus finds the sidecar's metrics endpoint through the Consul catalog.
    catalog = httpx.get(
        mesh.server.url + "/v1/catalog/service/api", headers=mesh.server.headers()
    ).json()
    target = catalog[0]["ServiceMeta"]["weft_metrics"]
    assert (
        "weft_proxy_response_latency_seconds_bucket" in httpx.get(f"http://{target}/metrics").text
    )
