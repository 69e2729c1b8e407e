"""`weft agent` on its own (no sidecars): registration on a lease, host checks, reloads,
bad definitions, and the systemd notify protocol over a real datagram socket."""

from __future__ import annotations

import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from ca import KeyEncryptionKey, fingerprint_sha256
from tests.harness import WeftAgent, WeftServer, wait_until


def agent_token(server: WeftServer, node: str) -> str:
    resp = httpx.post(
        server.url + "/v1/tokens", json={"role": "agent", "node": node}, headers=server.headers()
    )
    resp.raise_for_status()
    return resp.json()["secret"]


def entries(server: WeftServer, service: str, *, passing: bool = False) -> list[dict]:
    params = {"passing": ""} if passing else {}
    resp = httpx.get(
        f"{server.url}/v1/health/service/{service}", params=params, headers=server.headers()
    )
    resp.raise_for_status()
    return resp.json()


@pytest.fixture
def make_agent(server: WeftServer, tmp_path):
    agents: list[WeftAgent] = []

    def make(node: str, **extra: object) -> WeftAgent:
        agent = WeftAgent(server.url, agent_token(server, node), tmp_path, node=node, extra=extra)
        agents.append(agent)
        return agent

    try:
        yield make
    finally:
        for agent in agents:
            agent.stop()


def test_agent_registers_runs_checks_and_takes_instances_along_when_killed(
    server: WeftServer, make_agent
) -> None:
    app = socket.socket()
    app.bind(("127.0.0.1", 0))
    app.listen()
    port = app.getsockname()[1]
    agent = make_agent("vm-1")
    agent.define(
        "cache",
        f'name = "cache"\nport = {port}\nprotocol = "tcp"\n'
        f'[[checks]]\ntcp = "127.0.0.1:{port}"\ninterval = "1s"\n',
    )
    agent.start()
    wait_until(
        lambda: [e["Service"]["ID"] for e in entries(server, "cache", passing=True)] == ["cache"],
        timeout=15,
        what="the TCP check to pass in the registry",
    )
    [entry] = entries(server, "cache")
    assert entry["Node"]["Node"] == "vm-1"
    app.close()
    wait_until(
        lambda: entries(server, "cache")[0]["Checks"][0]["Status"] == "critical",
        timeout=15,
        what="the closed port to turn the check critical",
    )
    agent.kill()
    killed = time.monotonic()
    wait_until(
        lambda: entries(server, "cache") == [],
        timeout=15,
        interval=0.2,
        what="the dead agent's instances to leave",
    )
    assert time.monotonic() - killed <= 5 + 2  # lease TTL + 2 s


def test_anti_entropy_removes_what_is_no_longer_defined_and_reload_applies(
    server: WeftServer, make_agent
) -> None:
    agent = make_agent("vm-2")
    agent.define("a", 'name = "alpha"\nport = 1001\n')
    agent.define("b", 'name = "beta"\nport = 1002\n')
    agent.start()
    assert len(entries(server, "alpha")) == 1 and len(entries(server, "beta")) == 1
    (agent.services_dir / "b.toml").unlink()
    agent.define("g", 'name = "gamma"\nport = 1003\n[[checks]]\nid = "gamma-ttl"\nttl = "30s"\n')
    agent.proc.signal(signal.SIGHUP)
    wait_until(
        lambda: entries(server, "beta") == [] and len(entries(server, "gamma")) == 1,
        timeout=15,
        what="the reload to apply",
    )
    # A TTL check through `weft check` via the local agent.
    env = {**os.environ, "WEFT_TOKEN": agent.token, "WEFT_AGENT_ADDR": agent.address}
    result = subprocess.run(
        [sys.executable, "-m", "weft", "check", "pass", "gamma-ttl", "--note", "all good"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    wait_until(
        lambda: entries(server, "gamma", passing=True),
        timeout=10,
        what="the TTL pass to reach the registry",
    )
    assert entries(server, "gamma")[0]["Checks"][0]["Output"] == "all good"
    # A bad file on reload is refused and the old set kept.
    agent.define("broken", 'name = "delta"\n')  # no port
    agent.proc.signal(signal.SIGHUP)
    wait_until(lambda: "reload refused" in agent.log(), timeout=10, what="the refusal")
    assert "broken.toml: port: is required" in agent.log()
    assert len(entries(server, "alpha")) == 1 and len(entries(server, "gamma")) == 1
    assert entries(server, "delta") == []


@pytest.mark.parametrize(
    ("files", "words"),
    [
        ({"x": 'name = "web"\n'}, ["x.toml", "port", "required"]),
        (
            {"x": 'name = "web"\nport = 80\n', "y": 'name = "web"\nport = 81\n'},
            ["y.toml", "name", "already defined in", "x.toml"],
        ),
        (
            {"x": 'name = "web"\nport = 80\n[[checks]]\ngrpc = "x:1"\ninterval = "1s"\n'},
            ["x.toml", "checks[0].grpc", "unknown field"],
        ),
        (
            {"x": 'name = "web"\nport = 80\n[[checks]]\ninterval = "1s"\n'},
            ["x.toml", "checks[0]", "one of ttl, http, tcp or args"],
        ),
        ({"x": 'name = "Web"\nport = 80\n'}, ["x.toml", "name", "DNS label"]),
        (
            {"x": 'name = "web"\nport = 80\n[sidecar]\nport = {busy}\n'},
            ["x.toml", "sidecar.port", "already in use"],
        ),
        ({"x": 'name = "web"\nport = 80\nbogus = true\n'}, ["x.toml", "bogus", "unknown field"]),
    ],
)
def test_bad_definitions_exit_64_naming_file_and_field(
    server: WeftServer, make_agent, files, words
) -> None:
    busy = socket.socket()
    busy.bind(("0.0.0.0", 0))
    busy.listen()
    try:
        agent = make_agent("vm-bad")
        for name, text in files.items():
            agent.define(name, text.replace("{busy}", str(busy.getsockname()[1])))
        agent.start(wait=False)
        code = agent.proc.popen.wait(timeout=30)
        assert code == 64, agent.log()
        for word in words:
            assert word in agent.log()
    finally:
        busy.close()


def test_bad_agent_config_exits_64(tmp_path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('servers = ["ftp://x"]\n')
    result = subprocess.run(
        [sys.executable, "-m", "weft", "agent", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 64 and "servers" in result.stderr


def _state(pid: int) -> str:
    """A process's state letter from /proc (R, S, T for stopped, ...)."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    return stat.rsplit(")", 1)[1].split()[0]


def test_notify_ready_and_watchdog_and_a_hung_loop_stops_pinging(
    server: WeftServer, make_agent, tmp_path
) -> None:
    sock_path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(0.2)
    try:
        agent = make_agent("vm-notify")
        agent.define("a", 'name = "svc"\nport = 1001\n')
        agent.start(env={"NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "400000"}, wait=False)
        messages: list[tuple[float, str]] = []

        def receive_for(seconds: float) -> None:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                try:
                    messages.append((time.monotonic(), sock.recv(4096).decode()))
                except TimeoutError:
                    pass

        def seen(what: str) -> bool:
            receive_for(0.2)
            return any(what in m for _, m in messages)

        wait_until(lambda: seen("READY=1"), timeout=30, what="READY=1")
        ready_at = next(t for t, m in messages if "READY=1" in m)
        assert entries(server, "svc"), "READY=1 came before the registration"
        assert "STATUS=" in next(m for _, m in messages if "READY=1" in m)
        receive_for(2.0)
        pings = [t for t, m in messages if "WATCHDOG=1" in m and t > ready_at]
        assert len(pings) >= 6  # every 0.2 s (half of WATCHDOG_USEC)
        agent.proc.signal(signal.SIGSTOP)  # a hung main loop
        # A ping sent just before the stop may still sit in the socket: once the process is
        # stopped for sure, take what is queued, then listen.
        wait_until(lambda: _state(agent.proc.pid) == "T", timeout=10, what="the agent stopped")
        sock.setblocking(False)
        try:
            while True:
                sock.recv(4096)
        except BlockingIOError:
            pass
        sock.settimeout(0.2)
        messages.clear()
        receive_for(1.5)
        assert not any("WATCHDOG=1" in m for _, m in messages)
        agent.proc.signal(signal.SIGCONT)
        wait_until(lambda: seen("WATCHDOG=1"), timeout=10, what="pings to resume")
    finally:
        sock.close()


def test_host_checks_map_http_and_exec_results_to_states(
    server: WeftServer, make_agent, tmp_path
) -> None:
    """HTTP: 2xx passing, 429 warning, other critical; exec: exit 0/1/other likewise."""
    answer = {"status": 200}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(answer["status"])
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    app = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=app.serve_forever, daemon=True).start()
    exit_file = tmp_path / "exit-code"
    exit_file.write_text("0")
    try:
        agent = make_agent("vm-checks")
        agent.define(
            "web",
            f'name = "web"\nport = {app.server_address[1]}\n'
            f'[[checks]]\nname = "http"\nhttp = "http://127.0.0.1:{app.server_address[1]}/"\n'
            'interval = "1s"\n'
            f'[[checks]]\nname = "exec"\nargs = ["sh", "-c", "exit $(cat {exit_file})"]\n'
            'interval = "1s"\n',
        )
        agent.start()

        def states() -> dict[str, str]:
            found = entries(server, "web")
            return {c["Name"]: c["Status"] for c in found[0]["Checks"]} if found else {}

        for http_status, code, want in (
            (200, "0", "passing"),
            (429, "1", "warning"),
            (503, "2", "critical"),
            (204, "0", "passing"),
        ):
            answer["status"] = http_status
            exit_file.write_text(code)
            wait_until(
                lambda want=want: states() == {"http": want, "exec": want},
                timeout=15,
                what=f"HTTP {http_status} and exit {code} to read {want}",
            )
    finally:
        app.shutdown()
        app.server_close()


def test_join_by_ca_fingerprint_pins_the_bundle_and_refuses_a_wrong_one(
    start_server, tmp_path
) -> None:
    kek = tmp_path / "kek"
    kek.write_text(KeyEncryptionKey.generate().to_text())
    server = start_server("--ca-kek-file", str(kek))
    httpx.post(
        server.url + "/v1/ca/init", json={"trust_domain": "weft.test"}, headers=server.headers()
    ).raise_for_status()
    roots = httpx.get(server.url + "/v1/ca/roots").json()["roots"]
    right = fingerprint_sha256(roots[0]["certificate_pem"])

    def agent(node: str, fingerprint: str, port: int) -> WeftAgent:
        made = WeftAgent(
            server.url,
            agent_token(server, node),
            tmp_path,
            node=node,
            extra={"ca_fingerprint": fingerprint},
        )
        made.define("a", f'name = "svc"\nport = {port}\n')
        return made

    good = agent("vm-join", right, 1001)
    wrong = agent("vm-wrong", ":".join(["AB"] * 32), 1002)
    try:
        good.start()
        pinned = good.dir / "data" / "ca.pem"
        assert roots[0]["certificate_pem"].strip() in pinned.read_text()

        wrong.start(wait=False)
        assert wrong.proc is not None
        code = wrong.proc.popen.wait(timeout=30)
        assert code == 64, wrong.log()
        assert "ca_fingerprint" in wrong.log() and "do not match the fingerprint" in wrong.log()
    finally:
        good.stop()
        wrong.stop()
