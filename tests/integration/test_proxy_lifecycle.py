"""Lifecycle: fail static, reloads, certificate rotation, draining, workers, settings, admin."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.harness import wait_until
from tests.harness._procs import weft_command

from .test_proxy_support import (
    Background,
    HttpApp,
    LineEcho,
    Mesh,
    ProxyProc,
    proxies,
    raw_exchange,
    run_quietly,
    status_of,
)

pytestmark = pytest.mark.timeout(90)


@dataclass
class World:
    root: Path
    mesh: Mesh
    app: HttpApp
    echo: LineEcho
    b: ProxyProc
    b_tcp: ProxyProc


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("lifecycle")
    mesh = Mesh(root)
    with Background() as bg:
        app = HttpApp("b")
        bg.start(app.serve)
        echo = LineEcho()
        bg.start(echo.serve)
        b = ProxyProc(root, "b", mesh.snapshot("b", app_port=app.port))
        b_tcp = ProxyProc(root, "b-tcp", mesh.snapshot("echo", app_port=echo.port, protocol="tcp"))
        with proxies(b, b_tcp):
            yield World(root, mesh, app, echo, b, b_tcp)


def a_snapshot(world: World, version: int = 1, **extra: object) -> dict:
    ups = [
        world.mesh.upstream("b", [world.b.inbound_port]),
        world.mesh.upstream("echo", [world.b_tcp.inbound_port], protocol="tcp"),
    ]
    return world.mesh.snapshot("a", version=version, upstreams=ups, **extra)  # type: ignore[arg-type]


def get(proxy: ProxyProc, path: str = "/", upstream: str = "b") -> int:
    with httpx.Client(trust_env=False, timeout=10) as c:
        return c.get(f"http://127.0.0.1:{proxy.listener(f'upstream/{upstream}')}{path}").status_code


def test_traffic_keeps_flowing_when_the_snapshot_source_goes_away(world: World) -> None:
    a = ProxyProc(world.root, "a-gone", a_snapshot(world))
    with proxies(a):
        port = a.listener("upstream/b")
        a.snapshot_path.unlink()
        wait_until(lambda: "snapshot source unavailable" in a.log(), what="the source to be missed")
        with httpx.Client(trust_env=False, timeout=10) as c:
            for _ in range(10):
                assert c.get(f"http://127.0.0.1:{port}/").status_code == 200
        assert a.config()["version"] == 1
        assert a.get("/ready")[0] == 200


def test_an_invalid_snapshot_is_refused_whole_and_traffic_keeps_flowing(world: World) -> None:
    a = ProxyProc(world.root, "a-invalid", a_snapshot(world))
    with proxies(a):
        a.write_snapshot('{"schema": "weft.proxy.snapshot/v1", "version": 2, ')  # cut short
        wait_until(
            lambda: "not valid JSON" in (a.config()["last_result"] or {}).get("reason", ""),
            what="the broken JSON to be refused",
        )
        assert get(a) == 200

        bad = a_snapshot(world, version=3)
        bad["upstreams"][0]["endpoints"][0]["port"] = 70000
        a.write_snapshot(bad)
        result = a.wait_result(3)
        assert not result["accepted"]
        assert (
            "upstreams[0].endpoints[0].port: 70000 is more than the maximum 65535"
            in result["reason"]
        )
        assert get(a) == 200

        # A document whose listener would bind but whose certificate is missing: nothing of it
        # is applied (no new listener), since it is refused as a whole.
        half = a_snapshot(world, version=4)
        half["upstreams"].append(
            world.mesh.upstream("b2", [world.b.inbound_port], identity=world.mesh.spiffe("b"))
        )
        half["tls"]["cert"] = str(world.root / "missing.pem")
        a.write_snapshot(half)
        result = a.wait_result(4)
        assert not result["accepted"] and "tls.cert" in result["reason"]
        config = a.config()
        assert config["version"] == 1 and "upstream/b2" not in config["listeners"]
        assert get(a) == 200
        assert a.metric("weft_proxy_snapshots_total", result="rejected") >= 3
        assert "snapshot refused; keeping the last good one" in a.log()

        good = a_snapshot(world, version=5)
        good["upstreams"].append(
            world.mesh.upstream("b2", [world.b.inbound_port], identity=world.mesh.spiffe("b"))
        )
        a.write_snapshot(good)
        a.wait_applied(5)
        assert get(a, upstream="b2") == 200 and get(a) == 200


def test_sighup_reloads_the_snapshot(world: World) -> None:
    a = ProxyProc(world.root, "a-hup", a_snapshot(world), "--watch-interval", "1h")
    with proxies(a):
        a.write_snapshot(a_snapshot(world, version=2))
        time.sleep(0.5)  # no file watching at this interval: nothing happens by itself...
        assert a.config()["version"] == 1
        a.sighup()  # ...until SIGHUP
        a.wait_applied(2)
        assert get(a) == 200


def _server_cert_not_after(port: int, world: World) -> float:
    tls = world.mesh.tls("a")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(tls.bundle)
    ctx.load_cert_chain(tls.cert, tls.key)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, ctx.wrap_socket(raw) as s:
        return ssl.cert_time_to_seconds(s.getpeercert()["notAfter"])


def test_new_certificates_are_used_without_dropping_open_connections(world: World) -> None:
    import datetime as dt

    a = ProxyProc(world.root, "a-rotate", a_snapshot(world))
    with proxies(a):
        before = _server_cert_not_after(world.b_tcp.inbound_port, world)
        address = ("127.0.0.1", a.listener("upstream/echo"))
        with socket.create_connection(address, timeout=10) as s, s.makefile("rwb") as f:
            f.write(b"before\n")
            f.flush()
            assert f.readline() == b"before\n"
            # The agent renews: new files for the same identity, written in place.
            later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=48)
            paths = world.mesh.tls("echo")
            renewed = world.mesh.ca.issue("echo", not_after=later)
            paths.key.write_bytes(renewed.key_pem)
            paths.cert.write_bytes(renewed.chain_pem)
            wait_until(
                lambda: world.b_tcp.config()["certificate"]["expires_in_seconds"] > 40 * 3600,
                what="B to load the renewed certificate",
            )
            # the open connection goes on...
            f.write(b"after\n")
            f.flush()
            assert f.readline() == b"after\n"
        # ...and new connections get the new certificate
        after = _server_cert_not_after(world.b_tcp.inbound_port, world)
        assert after - before > 20 * 3600
        assert "certificates reloaded" in world.b_tcp.log()


def test_sigterm_stops_accepting_and_drains_in_flight_requests(world: World) -> None:
    a = ProxyProc(world.root, "a-drain", a_snapshot(world))
    with proxies(a):
        port = a.listener("upstream/b")
        outcome: dict[str, object] = {}

        def slow_request() -> None:
            with httpx.Client(trust_env=False, timeout=10) as c:
                resp = c.get(f"http://127.0.0.1:{port}/sleep?s=1.0")
                outcome["status"] = resp.status_code
                outcome["connection"] = resp.headers.get("connection")

        seen = len(world.app.seen)
        thread = threading.Thread(target=slow_request)
        thread.start()
        wait_until(
            lambda: any(s.target.startswith("/sleep") for s in world.app.seen[seen:]),
            what="the slow request to reach the application",
        )
        started = time.monotonic()
        a.proc.signal(signal.SIGTERM)
        wait_until(lambda: a.get("/ready")[0] == 503, timeout=5, what="/ready to say draining")
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        thread.join(10)
        assert outcome == {"status": 200, "connection": "close"}
        assert a.proc.popen.wait(timeout=10) == 0
        assert time.monotonic() - started < 2.5  # it left when the work was done, not at the grace


def _mesh_client(world: World) -> httpx.Client:
    """An HTTPS client holding `a`'s mesh certificate, as A's sidecar would."""
    tls = world.mesh.tls("a")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(tls.bundle)
    ctx.load_cert_chain(tls.cert, tls.key)
    return httpx.Client(verify=ctx, trust_env=False, timeout=10)


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def test_workers_share_the_listeners_with_so_reuseport(world: World) -> None:
    doc = world.mesh.snapshot("b", app_port=world.app.port)
    b2 = ProxyProc(world.root, "b-workers", doc, "--workers", "2")
    with proxies(b2):
        assert len(b2.config()["workers"]) == 2
        url = f"https://127.0.0.1:{b2.inbound_port}/"
        for _ in range(40):  # a new connection each time: the kernel spreads them
            with _mesh_client(world) as c:
                assert c.get(url, headers={"connection": "close"}).status_code == 200
        workers = b2.config()["workers"]
        assert [w["requests"] > 0 for w in workers] == [True, True], workers
        assert sum(w["requests"] for w in workers) == 40
        assert b2.metric("weft_proxy_requests_total", direction="inbound", peer="a") == 40
        assert b2.get("/ready") == (200, b"2 workers ready; snapshot version 1\n")
        # the parent's /tap merges the workers' request streams
        lines: list[dict] = []

        def read_tap() -> None:
            tap = b2.admin + "/tap?limit=4"
            with httpx.Client(trust_env=False, timeout=20) as c, c.stream("GET", tap) as r:
                lines.extend(json.loads(line) for line in r.iter_lines() if line)

        reader = threading.Thread(target=read_tap)
        reader.start()
        deadline = time.monotonic() + 15
        while reader.is_alive() and time.monotonic() < deadline:
            with _mesh_client(world) as c:
                c.get(url + "tapped", headers={"connection": "close"})
        reader.join(5)
        assert len(lines) == 4 and all(line["path"] == "/tapped" for line in lines)
        workers = b2.config()["workers"]
        pids = {w["pid"] for w in workers}
        assert len(pids) == 2 and b2.info["pid"] not in pids
        # a worker that dies is started again
        os.kill(workers[0]["pid"], signal.SIGKILL)
        wait_until(
            lambda: (
                b2.config()["workers"][0]["pid"] not in (None, workers[0]["pid"])
                and b2.get("/ready")[0] == 200
            ),
            timeout=20,
            what="the killed worker to be replaced",
        )
        with _mesh_client(world) as c:
            assert c.get(url).status_code == 200
    assert b2.proc.popen.returncode == 0


def test_the_opt_in_reactor_carries_a_pair_and_holds_against_hostile_clients(
    world: World,
) -> None:
    """`--io-waits reactor` on both sidecars: keep-alive and concurrent traffic arrive whole,
    and a reset, a smuggling attempt, a slowloris and a pipeliner that never reads are handled
    as on trio's waits (the full corpus on the reactor: `make test-reactor`)."""
    doc = world.mesh.snapshot("b", app_port=world.app.port)
    b_r = ProxyProc(world.root, "b-reactor", doc, "--io-waits", "reactor")
    with proxies(b_r):
        ups = [world.mesh.upstream("b", [b_r.inbound_port])]
        a_doc = world.mesh.snapshot("a", upstreams=ups)
        a_r = ProxyProc(
            world.root, "a-reactor", a_doc, "--io-waits", "reactor", "--header-timeout", "1s"
        )
        with proxies(a_r):
            assert a_r.info["io_waits"] == b_r.info["io_waits"] == "reactor"
            port = a_r.listener("upstream/b")
            base = f"http://127.0.0.1:{port}"
            with httpx.Client(trust_env=False, timeout=10) as c:  # one keep-alive connection
                for i in range(100):
                    r = c.get(f"{base}/k{i}")
                    assert r.status_code == 200 and r.json()["path"] == f"/k{i}"
                echoed = c.post(f"{base}/echo", content=b"x" * 300_000).json()
                assert echoed["length"] == 300_000
            errors: list[BaseException] = []

            def caller(n: int) -> None:
                try:
                    with httpx.Client(trust_env=False, timeout=10) as c:
                        for i in range(25):
                            assert c.get(f"{base}/c{n}/{i}").json()["path"] == f"/c{n}/{i}"
                except BaseException as exc:  # reported below
                    errors.append(exc)

            threads = [threading.Thread(target=caller, args=(n,)) for n in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            assert not errors, errors
            before = len(world.app.seen)
            # a caller that resets while its answer is on the way
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"GET /sleep?s=0.3 HTTP/1.1\r\nHost: b\r\n\r\n")
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
            # a smuggling attempt: refused, and nothing of it reaches the app
            smuggle = (
                b"POST / HTTP/1.1\r\nHost: b\r\nContent-Length: 4\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n"
            )
            assert status_of(raw_exchange(port, smuggle)) == 400
            # slowloris: an unfinished head is answered 408 at the header timeout
            started = time.monotonic()
            answer = raw_exchange(port, b"GET /slow HTTP/1.1\r\nHost: b\r\n", timeout=6)
            assert status_of(answer) == 408 and time.monotonic() - started < 5
            wait_until(
                lambda: any(x.target == "/sleep?s=0.3" for x in world.app.seen[before:]),
                what="the reset caller's request to have reached the app",
            )
            # a pipeliner that never reads its answers (100 KB each): the proxy stops
            # reading it once its answers back up, rather than buffer them, and serves others
            hog = socket.socket()
            hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            hog.connect(("127.0.0.1", port))
            hog.setblocking(False)
            request = (
                b"GET /chunked?parts=1&size=100000 HTTP/1.1\r\nHost: b\r\nX-Pad: "
                + b"p" * 4000
                + b"\r\n\r\n"
            )
            sent = 0
            deadline = time.monotonic() + 30
            while sent < 5_000 * len(request) and time.monotonic() < deadline:
                if not select.select([], [hog], [], 1.0)[1]:
                    break  # a second with no room: the proxy stopped reading this caller
                try:
                    sent += hog.send(request)
                except BlockingIOError:
                    continue
            assert sent < 5_000 * len(request), "the proxy kept reading a caller that never reads"
            assert _rss_mib(a_r.info["pid"]) < 100
            with httpx.Client(trust_env=False, timeout=10) as c:
                assert c.get(f"{base}/after").status_code == 200
            hogged = sum(x.target.startswith("/chunked") for x in world.app.seen[before:])
            assert 0 < hogged <= 200, hogged
            hog.close()
            assert not any(x.target in ("/smuggled", "/slow") for x in world.app.seen[before:])
            assert a_r.proc.popen.poll() is None and b_r.proc.popen.poll() is None
            assert get(a_r, "/still") == 200


@pytest.mark.parametrize(
    ("args", "env", "field"),
    [
        (["--workers", "0"], {}, "workers"),
        (["--header-timeout", "soon"], {}, "header_timeout"),
        ([], {"WEFT_PROXY_ADMIN": "nonsense"}, "admin"),
        ([], {"WEFT_PROXY_LOG_FORMAT": "xml"}, "log_format"),
    ],
)
def test_bad_settings_exit_64_naming_the_field(
    world: World, args: list[str], env: dict[str, str], field: str
) -> None:
    snapshot = world.b.snapshot_path
    result = run_quietly(
        [*weft_command(), "proxy", "--snapshot", str(snapshot), *args], env=_env(env)
    )
    assert result.returncode == 64, result.stderr
    assert field in result.stderr


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEFT_PROXY_")}
    env.update(extra)
    return env


def test_a_missing_snapshot_setting_or_a_bad_snapshot_at_start_exit_64(world: World) -> None:
    result = run_quietly([*weft_command(), "proxy"], env=_env({}))
    assert result.returncode == 64 and "snapshot" in result.stderr
    bad = world.root / "bad-start.json"
    doc = world.mesh.snapshot("a", upstreams=[world.mesh.upstream("b", [1])])
    doc["upstreams"][0]["balancer"] = "random"
    bad.write_text(json.dumps(doc))
    result = run_quietly(
        [*weft_command(), "proxy", "--snapshot", str(bad), "--admin", "127.0.0.1:0"], env=_env({})
    )
    assert result.returncode == 64
    assert "upstreams[0].balancer" in result.stderr
    config = world.root / "proxy.toml"
    config.write_text("[proxy]\nworkerz = 2\n")
    result = run_quietly([*weft_command(), "proxy", "--config", str(config)], env=_env({}))
    assert result.returncode == 64 and "workerz" in result.stderr


def test_check_validates_a_snapshot_without_serving(world: World) -> None:
    good = run_quietly(
        [*weft_command(), "proxy", "--check", "--snapshot", str(world.b.snapshot_path)],
        env=_env({}),
    )
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["identity"] == world.mesh.spiffe("b")
    broken = world.root / "check.json"
    doc = world.mesh.snapshot("b", app_port=1)
    doc["tls"]["key"] = str(world.mesh.tls("a").key)  # a key that is not the certificate's
    broken.write_text(json.dumps(doc))
    bad = run_quietly(
        [*weft_command(), "proxy", "--check", "--snapshot", str(broken)], env=_env({})
    )
    assert bad.returncode == 65 and "tls.cert/tls.key" in bad.stderr


def test_access_log_and_admin_endpoints(world: World) -> None:
    a = ProxyProc(world.root, "a-log", a_snapshot(world), "--access-log")
    with proxies(a):
        assert get(a, "/logged?q=1") == 200
        entry = wait_until(
            lambda: next(
                (json.loads(line) for line in a.log().splitlines() if line.startswith('{"ts"')),
                None,
            ),
            what="an access log line",
        )
        assert (
            entry["path"] == "/logged?q=1" and entry["status"] == 200 and entry["upstream"] == "b"
        )
        assert a.get("/live") == (200, b"live\n")
        assert a.get("/ready")[0] == 200
        assert a.get("/nope")[0] == 404
        with httpx.Client(trust_env=False) as c:
            assert c.post(a.admin + "/config").status_code == 405
