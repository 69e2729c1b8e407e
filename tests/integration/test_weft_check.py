"""`weft check` against a real server, real etcd, real agents and proxies: it passes on a
healthy mesh, and each injected fault (etcd stopped, a root near its end, a proxy that refused
its snapshot, a host with a skewed clock) gives one precise failing line and exit status 1."""

from __future__ import annotations

import datetime as dt
import json
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from ca import KeyEncryptionKey
from tests.harness import EtcdCluster, TestCA, WeftServer, free_port, wait_until

# Imported for its fixture: a server with an initialised CA that allows short leaves.
from tests.integration.test_agent_mesh import Mesh, mesh  # noqa: F401

FAST_REPORTS = {"report_interval": "1s"}


def weft_check(server: WeftServer, *args: str, json_out: bool = True) -> tuple[int, object]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "weft",
            "check",
            "--address",
            server.url,
            "--token",
            server.token or "",
            *(["-o", "json"] if json_out else []),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.stderr == "", done.stderr
    return done.returncode, json.loads(done.stdout) if json_out else done.stdout


def lines(report: object, status: str | None = None) -> dict[str, list[str]]:
    """{check: [messages]} of the report's lines (only those with `status`, if given)."""
    assert isinstance(report, dict)
    out: dict[str, list[str]] = {}
    for line in report["checks"]:
        if status is None or line["status"] == status:
            out.setdefault(line["check"], []).append(line["message"] + " - " + line["fix"])
    return out


def sidecar(agent, name: str, *upstreams: str) -> None:
    text = f'name = "{name}"\nport = {free_port()}\n[sidecar]\nport = {free_port()}\n'
    for upstream in upstreams:
        text += f'[[upstreams]]\nservice = "{upstream}"\nlocal_port = {free_port()}\n'
    agent.define(name, text)


def test_weft_check_passes_on_a_healthy_mesh(mesh: Mesh, start_server) -> None:  # noqa: F811
    # A second server: `weft check` is given only the first and finds it by its announcement.
    start_server("--ca-kek-file", str(mesh.tmp / "kek"), "--ca-allow-short-leaves")
    agent = mesh.agent("vm-ok", **FAST_REPORTS)
    sidecar(agent, "web")
    agent.start()

    last: list[object] = []

    def passing() -> object:
        status, report = weft_check(mesh.server)
        last[:] = [report]
        # The second server's first announcement and the report naming the sidecar's
        # proxy and certificate may each take a moment after start.
        return status == 0 and "2 known" in str(report) and "proxies" in str(report) and report

    try:
        report = wait_until(passing, timeout=20, what="weft check to pass")
    except AssertionError:
        raise AssertionError(
            f"weft check still fails: {last and lines(last[0], 'fail')}; "
            f"agent log: {agent.log()[-2000:]}"
        ) from None
    assert lines(report, "fail") == {}
    seen = lines(report, "ok")
    assert {
        "etcd",
        "etcd quota",
        "servers",
        "ca root",
        "ca intermediate",
        "agents",
        "clock",
        "proxies",
        "certificates",
    } <= set(seen)
    assert seen["servers"] == ["2 known, 2 answer; agree on CA roots, intention default allow - "]
    assert "1 agent connected" in seen["agents"][0]
    assert "1 proxy ready on their latest snapshot" in seen["proxies"][0]
    # People get one line per check, each marked.
    status, text = weft_check(mesh.server, json_out=False)
    assert status == 0
    assert isinstance(text, str) and text.startswith("✔ etcd: healthy")
    assert all(line[0] in "✔!" for line in text.splitlines())


def test_weft_check_names_a_host_whose_clock_is_skewed(mesh: Mesh) -> None:  # noqa: F811
    agent = mesh.agent("vm-skewed", **FAST_REPORTS)
    agent.define("db", f'name = "db"\nport = {free_port()}\n')
    agent.start(env={"WEFT_TEST_CLOCK_SKEW": "7"})

    def failing() -> object:
        status, report = weft_check(mesh.server)
        return status == 1 and "clock" in lines(report, "fail") and report

    report = wait_until(failing, timeout=20, what="the skewed clock to be named")
    (line,) = lines(report, "fail")["clock"]
    host = mesh.server.url.split("://", 1)[1]
    assert line.startswith(f"host vm-skewed's clock is 7.0s ahead of the server at {host} ")
    assert "synchronise vm-skewed's clock" in line
    assert set(lines(report, "fail")) == {"clock"}  # nothing else is wrong


def test_weft_check_names_a_proxy_that_refused_its_snapshot(mesh: Mesh) -> None:  # noqa: F811
    agent = mesh.agent("vm-p", **FAST_REPORTS)
    sidecar(agent, "shop", "books")
    agent.start()
    wait_until(lambda: weft_check(mesh.server)[0] == 0, timeout=20, what="a healthy start")
    applied = agent.status()["services"][0]["sidecar"]["applied_version"]
    # The certificate file is damaged on disk; the next snapshot (a new `books` endpoint)
    # makes the proxy load it again, and it refuses, still serving what it had.
    (agent.dir / "data" / "certs" / "shop.pem").write_text("not a certificate\n")
    httpx.put(
        mesh.server.url + "/v1/registry/instances",
        json={
            "service": "books",
            "id": "books-1",
            "node": "vm-books",
            "address": "127.0.0.1",
            "port": free_port(),
            "sidecar_port": free_port(),
            "identity": "spiffe://mesh.test/ns/default/svc/books",
        },
        headers=mesh.server.headers(),
    ).raise_for_status()

    def failing() -> object:
        status, report = weft_check(mesh.server)
        return status == 1 and "proxies" in lines(report, "fail") and report

    report = wait_until(failing, timeout=20, what="the refusal to be named")
    (line,) = lines(report, "fail")["proxies"]
    assert line.startswith("shop on vm-p refused snapshot v")
    assert "holds no PEM certificate" in line and f"still serving v{applied}" in line


def test_weft_check_names_a_ca_root_near_its_end(start_server, tmp_path: Path) -> None:
    kek = tmp_path / "kek"
    kek.write_text(KeyEncryptionKey.generate().to_text())
    server = start_server("--ca-kek-file", str(kek))
    pki = TestCA("short.test", lifetime=dt.timedelta(days=3))
    root, cert, key = pki.write_intermediate(tmp_path / "pki")
    httpx.post(
        server.url + "/v1/ca/init",
        json={
            "trust_domain": "short.test",
            "root_cert": root.read_text(),
            "intermediate_cert": cert.read_text(),
            "intermediate_key": key.read_text(),
        },
        headers=server.headers(),
    ).raise_for_status()
    status, report = weft_check(server)
    assert status == 1
    failed = lines(report, "fail")
    assert set(failed) == {"ca root", "ca intermediate"}
    assert failed["ca root"][0].startswith("root ")
    assert (
        "expires in 2d 23h" in failed["ca root"][0]
        and "within the 30d 0h threshold" in (failed["ca root"][0])
    )
    assert "weft ca rotate" in failed["ca root"][0]
    # The threshold is the operator's: two days' notice is enough for them, and it passes.
    status, report = weft_check(server, "--ca-expiry", "2d")
    assert status == 0, lines(report, "fail")


def test_weft_check_names_etcd_when_it_stops(tmp_path: Path) -> None:
    etcd = EtcdCluster(tmp_path / "etcd", size=1)  # its own etcd: the session's keeps running
    server = WeftServer(etcd.endpoints, "/weft/", tmp_path, args=("--staleness-bound", "1s"))
    try:
        etcd.start()
        server.start()
        _, report = weft_check(server)
        assert "etcd" in lines(report, "ok"), report
        etcd.stop()

        def failing() -> object:
            status, report = weft_check(server)
            return status == 1 and "etcd" in lines(report, "fail") and report

        report = wait_until(failing, timeout=20, what="weft check to name etcd")
        (line,) = lines(report, "fail")["etcd"]
        assert line.startswith(f"unreachable from server {server.url} (etcd has not")
        assert "start etcd, or fix etcd_endpoints" in line
    finally:
        server.stop()
        etcd.stop()


def test_agent_reports_refuse_bad_input_and_other_nodes_and_store_nothing(
    server: WeftServer,
) -> None:
    token = httpx.post(
        server.url + "/v1/tokens",
        json={"role": "agent", "node": "n1"},
        headers=server.headers(),
    ).json()["secret"]
    agent = {"X-Consul-Token": token}
    lease = httpx.post(server.url + "/v1/registry/leases", json={"ttl": 30}, headers=agent).json()[
        "id"
    ]
    url = server.url + "/v1/registry/agents/"
    good = {"lease": lease, "time": 1.0, "proxies": [], "certificates": []}
    cases = [
        ("n2", good, 403, "bound to node 'n1'"),
        ("n1", b'{"lease": "%s", "time": NaN}' % lease.encode(), 400, "NaN"),
        ("n1", {**good, "time": "soon"}, 400, "time"),
        ("n1", b'{"lease": "%s", "time": 1e400}' % lease.encode(), 400, "time"),
        ("n1", {**good, "colour": "red"}, 400, "colour: unknown field"),
        ("n1", {"time": 1.0}, 400, "lease: required"),
        ("n1", {**good, "lease": "beef"}, 404, "lease beef has expired"),
        ("n1", {**good, "proxies": [{"id": "x" * 2000}]}, 400, "proxies[0].id: at most"),
        ("n1", {**good, "proxies": [{}] * 1001}, 400, "proxies: at most 1000"),
        ("bad!", good, 400, "not a valid node name"),
    ]
    for node, body, status, words in cases:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        resp = httpx.put(url + node, content=content, headers=agent)
        assert resp.status_code == status, (node, body, resp.text)
        assert words in resp.text, (words, resp.text)
    assert httpx.get(server.url + "/v1/registry/agents").status_code == 403  # a token is needed
    listed = httpx.get(server.url + "/v1/registry/agents", headers=server.headers()).json()
    assert listed["agents"] == []
    # The good report is stored, stamped with the server's clock against the host's.
    resp = httpx.put(url + "n1", json=good, headers=agent)
    assert resp.status_code == 200, resp.text
    (stored,) = httpx.get(server.url + "/v1/registry/agents", headers=server.headers()).json()[
        "agents"
    ]
    assert stored["node"] == "n1" and stored["lease_alive"] is True
    assert stored["clock_offset_seconds"] < -1e9  # a host whose clock says 1970
    # Both endpoints, and the servers' list, are in the OpenAPI document.
    paths = httpx.get(server.url + "/v1/openapi.json").json()["paths"]
    assert {"put"} <= set(paths["/v1/registry/agents/{node}"])
    assert {"get"} <= set(paths["/v1/registry/agents"]) and "get" in paths["/v1/weft/servers"]


def test_weft_check_pre_reads_the_real_etcd_and_names_a_port_in_use() -> None:
    from tests.harness._etcd import etcd_binary

    with socket.socket() as held:
        held.bind(("0.0.0.0", 0))
        held.listen()
        busy = held.getsockname()[1]
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "weft",
                "check",
                "--pre",
                "-o",
                "json",
                "--etcd-binary",
                etcd_binary(),
                "--port",
                str(busy),
                "--port",
                str(free_port()),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert lines(report, "fail") == {
        "ports": [
            f"port {busy} is in use - stop what listens there (`ss -ltnp 'sport = :{busy}'`), "
            "or set another listen/api_listen address"
        ]
    }
    (etcd,) = lines(report, "ok")["etcd"]
    assert etcd.startswith("etcd 3.") and etcd_binary() in etcd
    assert {"python", "ports"} <= set(lines(report, "ok"))
