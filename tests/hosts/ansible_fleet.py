"""Two systemd test hosts made into a mesh by Weft's playbooks, driven through `weft rollout`.

alpha runs `weft server` and an agent, beta an agent; etcd is the test session's, on the
machine's loopback (hosts share its network namespace). Each host runs two demo apps
(tests/hosts/mesh_demo_app.py) as systemd units: `api`, and `web`, which calls `api` through its
sidecar, so `web` on either host reaches `api` on either host over mTLS. Every port is unique
on the machine (`unique_free_port`).

Builds: the worktree's own (its wheelhouse cached under .cache/wheelhouse/test-<content hash>,
so a code change is never installed from a stale cache), and variants made by `make_build`: a
copy of the tree with another version, optionally with HTTP checks broken, as a bad release.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.harness.hosts import SystemdHost, unique_free_port

REPO = Path(__file__).parents[2]
ANSIBLE = REPO / "ansible"
APP = Path(__file__).with_name("mesh_demo_app.py")
PACKAGES = ("weft", "registry", "ca", "agent", "proxy", "k8s-adapter")
IGNORED = (".git", ".venv", ".cache", "build", "dist", "*.egg-info", "__pycache__", "tests",
           "bench", ".pytest_cache", ".ruff_cache", ".mypy_cache", ".weft-dev")  # fmt: skip
HOST_PYTHON = "3.11"  # Debian bookworm's, in the test hosts


def source_hash(root: Path) -> str:
    digest = hashlib.sha256()
    files = [root / "pyproject.toml"]
    for package in PACKAGES:
        files += sorted(p for p in (root / package).rglob("*") if p.is_file()
                        and "__pycache__" not in p.parts)  # fmt: skip
    for path in files:
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def wheelhouse_for(source: Path) -> Path:
    """Where the role builds (or finds) this tree's wheelhouse: keyed by its content."""
    return (
        REPO
        / ".cache"
        / "wheelhouse"
        / (f"test-{source_hash(source)}-py{HOST_PYTHON}-{platform.machine()}")
    )


def make_build(directory: Path, version: str, *, break_http_checks: bool = False) -> Path:
    """A copy of the worktree as another release: `version`, maybe with HTTP checks that
    report every answer as critical (a regression a rollout must catch)."""
    tree = directory / f"weft-{version}"
    shutil.copytree(REPO, tree, ignore=shutil.ignore_patterns(*IGNORED), symlinks=True)
    for path, old, new in (
        ("pyproject.toml", 'version = "0.1.0"', f'version = "{version}"'),
        ("weft/__init__.py", '__version__ = "0.1.0"', f'__version__ = "{version}"'),
    ):
        text = (tree / path).read_text()
        assert old in text, f"{path} no longer says {old}; update make_build"
        (tree / path).write_text(text.replace(old, new))
    if break_http_checks:
        checks = tree / "registry" / "checks.py"
        text = checks.read_text()
        marker = "def classify_http(status_code: int) -> Status:\n"
        assert marker in text, "registry/checks.py changed; update make_build"
        checks.write_text(text.replace(marker, marker + "    return Status.CRITICAL  # broken\n"))
    return tree


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    summary: dict[str, Any]
    seconds: float

    def changed(self) -> dict[str, int]:
        return {host: row["changed"] for host, row in self.summary["hosts"].items()}

    def explain(self) -> str:
        return (
            f"exit {self.returncode}\n--- stdout\n{self.stdout[-6000:]}\n--- stderr\n"
            + (self.stderr[-3000:])
        )


@dataclass
class HostPorts:
    agent: int
    web: int
    web_sidecar: int
    web_upstream: int
    api: int
    api_sidecar: int


class Fleet:
    def __init__(
        self, start_host, etcd, prefix: str, tmp_path: Path, *, sidecars: bool = True
    ) -> None:
        self.dir = tmp_path
        self.sidecars = sidecars
        self.alpha = start_host("alpha", wait=False)
        self.beta = start_host("beta", wait=False)
        self.hosts: dict[str, SystemdHost] = {"alpha": self.alpha, "beta": self.beta}
        self.server_port = unique_free_port()
        self.ports = {
            name: HostPorts(*(unique_free_port() for _ in range(6))) for name in self.hosts
        }
        self.etcd_endpoints = list(etcd.endpoints)
        # (client, peer, metrics) of each host's etcd member, when the etcd role runs there
        self.etcd_ports = {name: (unique_free_port(), unique_free_port(), unique_free_port())
                           for name in self.hosts}  # fmt: skip
        self.tls = True  # the server role's default: HTTPS from Weft's CA
        self.prefix = prefix
        self.runs = 0
        for host in self.hosts.values():
            host.wait_until_running()
        for name, host in self.hosts.items():
            self._install_apps(name, host)

    # -- the hosts' apps -----------------------------------------------------------------------

    def _install_apps(self, name: str, host: SystemdHost) -> None:
        host.copy_in(APP, "/usr/local/lib/mesh_demo_app.py")
        ports = self.ports[name]
        for app, port, upstream in (
            ("api", ports.api, ""),
            ("web", ports.web, f"--upstream 127.0.0.1:{ports.web_upstream}"),
        ):
            host.install_unit(
                f"demo-{app}.service",
                f"[Unit]\nDescription=demo {app}\n[Service]\n"
                f"ExecStart=/usr/bin/python3 /usr/local/lib/mesh_demo_app.py --name {app} "
                f"--node {name} --port {port} {upstream}\nRestart=always\n"
                "[Install]\nWantedBy=multi-user.target\n",
            )
            host.systemctl("start", f"demo-{app}.service")

    def services(self, name: str) -> list[dict[str, Any]]:
        ports = self.ports[name]

        def check(app: str, port: int) -> dict[str, Any]:
            return {"id": f"{app}-health", "http": f"http://127.0.0.1:{port}/health",
                    "interval": "1s", "timeout": "2s"}  # fmt: skip

        services = [
            {"name": "api", "port": ports.api, "protocol": "http", "tags": [name],
             "sidecar": {"port": ports.api_sidecar}, "checks": [check("api", ports.api)]},
            {"name": "web", "port": ports.web, "protocol": "http", "tags": [name],
             "sidecar": {"port": ports.web_sidecar},
             "upstreams": [{"service": "api", "local_port": ports.web_upstream}],
             "checks": [check("web", ports.web)]},
        ]  # fmt: skip
        if not self.sidecars:
            for service in services:
                service.pop("sidecar")
                service.pop("upstreams", None)
        return services

    # -- inventory and runs ----------------------------------------------------------------------

    @property
    def inventory(self) -> Path:
        return self.dir / "inventory" / "hosts.yml"

    @property
    def secrets(self) -> Path:
        return self.inventory.parent / "secrets"

    def write_inventory(
        self, source: Path = REPO, *, etcd_hosts: tuple[str, ...] = (), **extra: Any
    ) -> Path:
        """The inventory `weft rollout` gets: the fleet, its ports and services; `extra` goes
        to `all: vars:`; `etcd_hosts` form an etcd cluster with the etcd role (else the
        servers use the session's etcd)."""
        hosts = {}
        for name, host in self.hosts.items():
            hosts[name] = {
                **host.ansible_vars(),
                "weft_agent_api_listen": f"127.0.0.1:{self.ports[name].agent}",
                "weft_agent_node_address": "127.0.0.1",
                "weft_agent_services": self.services(name),
            }
        hosts["alpha"].update(weft_server_bind="127.0.0.1", weft_server_port=self.server_port,
                              weft_server_advertise_host="127.0.0.1")  # fmt: skip
        for name in etcd_hosts:
            hosts[name].update(etcd_advertise_host="127.0.0.1",
                               etcd_client_port=self.etcd_ports[name][0],
                               etcd_peer_port=self.etcd_ports[name][1],
                               etcd_metrics_port=self.etcd_ports[name][2])  # fmt: skip
        self.tls = extra.get("weft_server_tls", "weft_ca") != "none"
        inventory = {
            "all": {
                "hosts": hosts,
                "vars": {
                    "weft_common_source_dir": str(source),
                    "weft_common_wheelhouse_dir": str(wheelhouse_for(source))
                    if source == REPO
                    else "",
                    "weft_server_etcd_endpoints": [] if etcd_hosts else self.etcd_endpoints,
                    "weft_server_etcd_prefix": self.prefix,
                    "weft_server_trust_domain": "weft.test",
                    # the role's mesh denies what no intention allows: web calls api
                    "weft_server_intentions": [
                        {"source": "web", "destination": "api", "action": "allow"}
                    ],
                    **extra,
                },
                "children": {
                    "etcd": {"hosts": dict.fromkeys(etcd_hosts)},
                    "weft_servers": {"hosts": {"alpha": None}},
                    "weft_agents": {"hosts": {"alpha": None, "beta": None}},
                },
            }
        }
        self.inventory.parent.mkdir(parents=True, exist_ok=True)
        self.inventory.write_text(yaml.safe_dump(inventory, sort_keys=False))
        return self.inventory

    def run(self, playbook: str, *args: str, extra: dict[str, Any] | None = None,
            timeout: float = 900) -> Run:  # fmt: skip
        """`weft rollout --playbook PLAYBOOK` against the fleet, as an operator would run it."""
        self.runs += 1
        summary_path = self.dir / f"summary-{self.runs}.json"
        argv = [sys.executable, "-m", "weft", "rollout", "--inventory", str(self.inventory),
                "--playbook", playbook, "--ansible-dir", str(ANSIBLE),
                "--artifacts-dir", str(self.dir / "artifacts"),
                "--summary-json", str(summary_path), *args]  # fmt: skip
        if extra:
            vars_file = self.dir / f"extra-{self.runs}.yml"
            vars_file.write_text(yaml.safe_dump(extra))
            argv += ["-e", f"@{vars_file}"]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WEFT_", "ANSIBLE_"))}
        started = time.monotonic()
        proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)  # fmt: skip
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        return Run(proc.returncode, proc.stdout, proc.stderr, summary,
                   time.monotonic() - started)  # fmt: skip

    # -- the registry ----------------------------------------------------------------------------

    @property
    def server_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.server_port}"

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """What verifies the server: the bundle the server role keeps on the controller."""
        if not self.tls:
            return True
        return ssl.create_default_context(cafile=str(self.secrets / "server-ca.pem"))

    def token(self) -> str:
        return (self.secrets / "operator.token").read_text().strip()

    def get(self, path: str, **params: Any) -> Any:
        resp = httpx.get(self.server_url + path, params=params, timeout=10,
                         headers={"X-Consul-Token": self.token()}, verify=self.verify)  # fmt: skip
        resp.raise_for_status()
        return resp.json()

    def installed_version(self, name: str) -> str:
        result = self.hosts[name].run(
            "/opt/weft/bin/python -c \"import importlib.metadata as m; print(m.version('weft'))\""
        )
        return result.stdout.strip()


@dataclass
class Load:
    """Steady traffic across the mesh, as a Consul-aware load balancer in front of `web` sends
    it: only to `web` instances in the registry's ?passing view (kept fresh by a blocking
    query; the last view stays while the registry is away), each request answered by `web`
    after it called `api` through its sidecar. Every failed request is kept with its reason."""

    fleet: Fleet
    workers: int = 3
    pause: float = 0.05
    ok: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    maintenance_seen: dict[str, float] = field(default_factory=dict)
    targets: list[tuple[str, str]] = field(default_factory=list)  # (node, url)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Load:
        self._refresh(None)
        threads = [threading.Thread(target=self._watch, daemon=True)]
        threads += [threading.Thread(target=self._send, args=(i,), daemon=True)
                    for i in range(self.workers)]  # fmt: skip
        self._threads = threads
        for thread in threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    @property
    def total(self) -> int:
        return sum(self.ok.values())

    def _refresh(self, index: int | None) -> int | None:
        params: dict[str, Any] = {"passing": ""}
        if index:
            params.update(index=index, wait="10s")
        resp = httpx.get(f"{self.fleet.server_url}/v1/registry/services/web", params=params,
                         headers={"X-Consul-Token": self.fleet.token()}, timeout=30,
                         verify=self.fleet.verify)  # fmt: skip
        resp.raise_for_status()
        self.targets = [(i["node"], f"http://{i['address']}:{i['port']}/")
                        for i in resp.json()["instances"]]  # fmt: skip
        return int(resp.headers["X-Weft-Index"])

    def _watch(self) -> None:
        index = None
        while not self._stop.is_set():
            try:
                index = self._refresh(index)
                self._note_maintenance()
            except (httpx.HTTPError, ValueError, KeyError):
                index = None  # the server restarts in a rollout: keep the last view
                self._stop.wait(0.2)

    def _note_maintenance(self) -> None:
        try:
            nodes = self.fleet.get("/v1/registry/maintenance")
        except httpx.HTTPError:
            return
        for node in nodes:
            self.maintenance_seen.setdefault(node, time.monotonic())

    def _send(self, worker: int) -> None:
        turn = worker
        with httpx.Client(timeout=15) as client:
            while not self._stop.is_set():
                targets = self.targets
                if not targets:
                    self.failures.append("no passing web instance in the registry")
                    self._stop.wait(0.5)
                    continue
                node, url = targets[turn % len(targets)]
                turn += 1
                try:
                    resp = client.get(url)
                    if resp.status_code == 200:
                        self.ok[resp.text.strip()] += 1
                    else:
                        self.failures.append(f"{node}: HTTP {resp.status_code} {resp.text[:200]}")
                except httpx.HTTPError as exc:
                    self.failures.append(f"{node}: {type(exc).__name__}: {exc}")
                self._stop.wait(self.pause)
