"""Balancing across three B instances: weights, losing an instance under load, a slow instance."""

from __future__ import annotations

import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.harness import wait_until

from .test_proxy_support import Background, HttpApp, Mesh, ProxyProc, proxies

pytestmark = pytest.mark.timeout(120)


@dataclass
class Load:
    """Closed-loop load from `workers` threads, each with its own keep-alive client."""

    url: str
    workers: int
    method: str = "GET"
    results: Counter[str] = field(default_factory=Counter)
    instances: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _run(self) -> None:
        with httpx.Client(trust_env=False, timeout=10) as c:
            while not self._stop.is_set():
                try:
                    if self.method == "GET":
                        resp = c.get(self.url)
                    else:
                        resp = c.post(self.url, content=b"x" * 100)
                    outcome = str(resp.status_code)
                    instance = resp.json().get("instance", "?") if resp.status_code == 200 else None
                    if resp.status_code != 200:
                        with self._lock:
                            self.errors.append(resp.text[:200])
                except httpx.HTTPError as exc:
                    outcome, instance = type(exc).__name__, None
                    with self._lock:
                        self.errors.append(repr(exc))
                with self._lock:
                    self.results[outcome] += 1
                    if instance:
                        self.instances[instance] += 1

    def __enter__(self) -> Load:
        for _ in range(self.workers):
            t = threading.Thread(target=self._run, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(15)

    def wait_for(self, n: int, timeout: float = 30) -> None:
        wait_until(lambda: sum(self.results.values()) >= n, timeout=timeout, what=f"{n} requests")


@dataclass
class Instance:
    name: str
    app: HttpApp
    sidecar: ProxyProc


@dataclass
class World:
    root: Path
    mesh: Mesh
    bg: Background
    instances: list[Instance]

    def client(self, name: str, upstreams: list[dict]) -> ProxyProc:
        return ProxyProc(self.root, name, self.mesh.snapshot("a", upstreams=upstreams))

    def ports(self, weights: list[int] | None = None) -> list[tuple[int, int]]:
        weights = weights or [1] * len(self.instances)
        return [(i.sidecar.inbound_port, w) for i, w in zip(self.instances, weights, strict=True)]


def start_instances(root: Path, mesh: Mesh, bg: Background, delays: list[float]) -> list[Instance]:
    out = []
    for n, delay in enumerate(delays, start=1):
        app = HttpApp(f"b{n}", delay=delay)
        bg.start(app.serve)
        out.append(
            Instance(f"b{n}", app, ProxyProc(root, f"b{n}", mesh.snapshot("b", app_port=app.port)))
        )
    for instance in out:
        instance.sidecar.wait_ready()
    return out


@pytest.fixture
def world(tmp_path: Path) -> Iterator[Callable[[list[float]], World]]:
    mesh = Mesh(tmp_path)
    started: list[Instance] = []
    with Background() as bg:

        def make(delays: list[float]) -> World:
            instances = start_instances(tmp_path, mesh, bg, delays)
            started.extend(instances)
            return World(tmp_path, mesh, bg, instances)

        try:
            yield make
        finally:
            for instance in started:
                instance.sidecar.stop()


def sequential(port: int, n: int) -> Counter[str]:
    counts: Counter[str] = Counter()
    with httpx.Client(trust_env=False, timeout=10) as c:
        for _ in range(n):
            resp = c.get(f"http://127.0.0.1:{port}/")
            assert resp.status_code == 200
            counts[resp.json()["instance"]] += 1
    return counts


def test_load_is_spread_by_weight(world: Callable[[list[float]], World]) -> None:
    w = world([0, 0, 0])
    ports = w.ports([1, 2, 3])
    a = w.client(
        "a",
        [
            w.mesh.upstream("rr", ports, balancer="round_robin", identity=w.mesh.spiffe("b")),
            w.mesh.upstream("p2c", ports, identity=w.mesh.spiffe("b")),
        ],
    )
    with proxies(a):
        rr = sequential(a.listener("upstream/rr"), 300)
        assert rr == {"b1": 50, "b2": 100, "b3": 150}
        p2c = sequential(a.listener("upstream/p2c"), 300)
        # P2C-EWMA: weights choose the candidates; equal latencies split them roughly by weight
        assert p2c["b1"] < p2c["b3"], p2c
        assert sum(p2c.values()) == 300


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_killing_an_instance_mid_load_loses_only_requests_in_flight_on_it(
    world: Callable[[list[float]], World], method: str
) -> None:
    w = world([0.002, 0.002, 0.002])
    a = w.client("a", [w.mesh.upstream("b", w.ports(), identity=w.mesh.spiffe("b"))])
    workers = 6
    with proxies(a):
        url = f"http://127.0.0.1:{a.listener('upstream/b')}/"
        with Load(url, workers, method) as load:
            load.wait_for(300)
            victim = w.instances[1]
            victim_port = victim.sidecar.inbound_port
            victim.sidecar.kill()
            w.bg.call(victim.app.stop)
            at_kill = sum(load.results.values())
            picks_at_kill = picks(a, "b", victim_port)
            load.wait_for(at_kill + 600)
        total = sum(load.results.values())
        failed = total - load.results["200"]
        print(f"{method}: {total} requests, {failed} failed after killing {victim.name}")
        # At most the requests that were on the victim when it died (one per worker, and only
        # those whose answer had started or, for POST, had been sent: an idempotent GET that
        # got no answer at all is retried on another instance).
        assert failed <= workers, load.errors[:5]
        assert load.instances["b1"] > 100 and load.instances["b3"] > 100
        # Traffic left the dead endpoint at once: its failures made its latency estimate a
        # second, so P2C prefers the live ones (accrual would eject it if it were still tried).
        assert picks(a, "b", victim_port) <= picks_at_kill + 2 * workers


def picks(proxy: ProxyProc, upstream: str, port: int) -> int:
    for endpoint in proxy.config()["upstreams"][upstream]["endpoints"]:
        if endpoint["endpoint"].endswith(f":{port}"):
            return endpoint["picks"]
    raise AssertionError(f"no endpoint :{port} in {upstream}")


def test_a_slow_instance_gets_a_clearly_smaller_share_under_p2c_ewma_than_round_robin(
    world: Callable[[list[float]], World],
) -> None:
    w = world([0.0, 0.0, 0.050])
    ports = w.ports()
    b = w.mesh.spiffe("b")
    a = w.client(
        "a",
        [
            w.mesh.upstream("rr", ports, balancer="round_robin", identity=b),
            w.mesh.upstream("p2c", ports, balancer="p2c_ewma", identity=b),
        ],
    )
    with proxies(a):
        shares = {}
        for upstream in ("rr", "p2c"):
            with Load(f"http://127.0.0.1:{a.listener(f'upstream/{upstream}')}/", 4) as load:
                load.wait_for(400)
            assert load.results["200"] == sum(load.results.values()), load.errors[:3]
            shares[upstream] = load.instances["b3"] / sum(load.instances.values())
        assert shares["rr"] > 0.25  # round robin: a third, whatever the latency
        assert shares["p2c"] < shares["rr"] / 3, shares
        endpoints = {e["endpoint"]: e for e in a.config()["upstreams"]["p2c"]["endpoints"]}
        slow = endpoints[f"127.0.0.1:{w.instances[2].sidecar.inbound_port}"]
        assert slow["latency_estimate_ms"] > 10


def test_no_available_endpoint_is_a_503_saying_so(world: Callable[[list[float]], World]) -> None:
    w = world([])
    refusing = []

    for _ in range(2):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        refusing.append(s)
    ports = [s.getsockname()[1] for s in refusing]
    a = w.client(
        "a",
        [
            w.mesh.upstream(
                "gone", ports, failure_accrual={"consecutive_failures": 1, "backoff_min_ms": 60000}
            ),
            w.mesh.upstream("empty", []),
        ],
    )
    try:
        with proxies(a), httpx.Client(trust_env=False, timeout=10) as c:
            first = c.get(f"http://127.0.0.1:{a.listener('upstream/gone')}/")
            assert (
                first.status_code == 502 and "no endpoint could be reached (2 tried" in first.text
            )
            then = c.get(f"http://127.0.0.1:{a.listener('upstream/gone')}/")
            assert then.status_code == 503
            assert "2 of 2 endpoints are ejected" in then.text
            empty = c.get(f"http://127.0.0.1:{a.listener('upstream/empty')}/")
            assert empty.status_code == 503 and "no endpoints in the snapshot" in empty.text
    finally:
        for s in refusing:
            s.close()
