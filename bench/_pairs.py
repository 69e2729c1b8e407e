"""What the proxy benchmarks share: processes and ports, the nginx backend, certificates, and
the A/B "snapshot pair" of sidecars that each of them measures.

    client → proxy A (outbound, plain in) → mTLS (TLS 1.3, SPIFFE IDs) → proxy B (inbound) → app

Used by bench/proxy.py, bench/profile_proxy.py, bench/skeleton_proxy.py and bench/_h2_load.py
(the scripts put the checkout on the import path before importing this).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.harness._pki import TestCA  # a test certificate factory

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/nginx-proxy-temp;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  server {{
    listen 127.0.0.1:{port};
    location / {{ root {dir}/www; try_files /1k =404; }}
    location = /v1/traces {{ return 200; }}
  }}
}}
"""

HAPROXY_CONF = """
global
  nbthread {threads}
  maxconn 4096
  ssl-default-bind-options ssl-min-ver TLSv1.3
  ssl-default-server-options ssl-min-ver TLSv1.3
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
  http-reuse always
{body}
"""

HAPROXY_A = """
frontend outbound
  bind 127.0.0.1:{listen}
  default_backend mesh
backend mesh
  server b 127.0.0.1:{upstream} ssl verify required ca-file {bundle} crt {crt} alpn http/1.1
"""

HAPROXY_B = """
frontend inbound
  bind 127.0.0.1:{listen} ssl crt {crt} ca-file {bundle} verify required alpn http/1.1
  default_backend app
backend app
  server nginx 127.0.0.1:{upstream}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def cpu_seconds(pid: int) -> float:
    """CPU time of `pid` and of every process in its process group (a `weft proxy --workers N`
    is a parent and N workers; HAProxy's threads are counted in its own figures)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            _, _, tail = stat.read_text().rpartition(")")
        except OSError:
            continue  # gone meanwhile
        fields = tail.split()
        if int(stat.parent.name) == pid or int(fields[2]) == pid:  # fields[2]: the group
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> tuple[float, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]
    hwm = int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]
    return rss, hwm


class Stack:
    """Processes started for the benchmark; all stopped at the end."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self, name: str, args: list[str], cpus: set[int] | None = None, **kwargs: object
    ) -> subprocess.Popen[bytes]:
        log = open(self.work / f"{name}.log", "wb")  # noqa: SIM115
        if cpus:
            kwargs["preexec_fn"] = lambda: os.sched_setaffinity(0, cpus)
        proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **kwargs
        )  # type: ignore[call-overload]
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def start_nginx(stack: Stack, nginx: str, cpus: set[int] | None = None) -> int:
    """nginx serving a 1 KB body on every path (and 200 to POST /v1/traces), once it listens:
    its port."""
    work = stack.work
    (work / "www").mkdir()
    (work / "www" / "1k").write_bytes(b"x" * 1024)
    port = free_port()
    (work / "nginx.conf").write_text(NGINX_CONF.format(dir=work, port=port))
    stack.start("nginx", [nginx, "-c", str(work / "nginx.conf")], cpus=cpus)
    wait_port(port)
    return port


def certificates(work: Path) -> tuple[TestCA, dict[str, Any]]:
    """A test CA and a certificate for each side, `a` and `b`, written under `work`."""
    ca = TestCA("weft.bench")
    return ca, {name: ca.issue(name).write(work / name) for name in ("a", "b")}


def combined_pem(work: Path, tls: dict[str, Any]) -> None:
    """Each side's certificate and key in one file, `{side}-combined.pem`, as HAProxy takes it."""
    for name, files in tls.items():
        combined = work / f"{name}-combined.pem"
        if not combined.exists():
            combined.write_bytes(files.cert.read_bytes() + files.key.read_bytes())


def weft_command(*extra: str) -> list[str]:
    """`weft proxy` as the benchmarks run it, before its --snapshot and --admin."""
    return [sys.executable, "-m", "weft", "proxy", "--log-level", "warning", *extra]


def snapshots(
    ca: TestCA,
    tls: dict[str, Any],
    *,
    a_port: int,
    b_port: int,
    app_port: int,
    schema: str = "weft.proxy.snapshot/v1",
    protocol: str = "http",
) -> dict[str, dict[str, Any]]:
    """The pair's snapshot documents: `a` listens on `a_port` with one upstream, B, whose inbound
    listens on `b_port` in front of the app on `app_port`."""
    inbound: dict[str, Any] = {"address": "127.0.0.1", "port": b_port}
    if protocol != "http":
        inbound["protocol"] = protocol
    inbound["app"] = {"port": app_port}
    b_endpoint = {"address": "127.0.0.1", "port": b_port, "identity": ca.spiffe("b")}
    return {
        "b": {
            "schema": schema,
            "version": 1,
            "identity": ca.spiffe("b"),
            "tls": tls["b"].as_snapshot(),
            "inbound": inbound,
        },
        "a": {
            "schema": schema,
            "version": 1,
            "identity": ca.spiffe("a"),
            "tls": tls["a"].as_snapshot(),
            "upstreams": [
                {"name": "b", "port": a_port, "protocol": protocol, "endpoints": [b_endpoint]}
            ],
        },
    }


@dataclass
class Pair:
    """Two proxies started: A (the client's side) in front of B."""

    a_port: int
    b_port: int
    a: subprocess.Popen[bytes]
    b: subprocess.Popen[bytes]

    @property
    def pids(self) -> list[int]:
        return [self.a.pid, self.b.pid]

    def wait(self) -> None:
        """Until both listen."""
        wait_port(self.b_port)
        wait_port(self.a_port)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM to both, and wait for them to exit (a profiler then writes its figures)."""
        for proc in (self.b, self.a):
            proc.send_signal(signal.SIGTERM)
        for proc in (self.b, self.a):
            proc.wait(timeout=timeout)


def start_pair(
    stack: Stack,
    *,
    a: tuple[str, list[str]],
    b: tuple[str, list[str]],
    a_port: int,
    b_port: int,
    cpus: set[int] | None = None,
    wait: bool = True,
    **popen: Any,
) -> Pair:
    """B, then A, each a (name, command) started on `stack`; with `wait`, once both listen."""
    proc_b = stack.start(b[0], b[1], cpus=cpus, **popen)
    proc_a = stack.start(a[0], a[1], cpus=cpus, **popen)
    pair = Pair(a_port, b_port, proc_a, proc_b)
    if wait:
        pair.wait()
    return pair


def weft_args(stack: Stack, name: str, doc: dict[str, Any], command: list[str]) -> list[str]:
    """`command` (see `weft_command`) on the snapshot `doc`, written to `{name}.json`."""
    snapshot = stack.work / f"{name}.json"
    snapshot.write_text(json.dumps(doc))
    return [*command, "--snapshot", str(snapshot), "--admin", "127.0.0.1:0"]


def start_weft_pair(
    stack: Stack,
    docs: dict[str, dict[str, Any]],
    *,
    command: list[str] | Callable[[str], list[str]],
    names: tuple[str, str] = ("weft-a", "weft-b"),
    cpus: set[int] | None = None,
    wait: bool = True,
    **popen: Any,
) -> Pair:
    """Two `weft proxy` processes on the snapshots `docs` (from `snapshots`). `command` is
    `weft proxy` and its options (see `weft_command`), or a function of the side ("a" or "b")
    that gives them; `names` are A's and B's process names (and snapshot files)."""
    sides = {
        side: (
            name,
            weft_args(stack, name, docs[side], command(side) if callable(command) else command),
        )
        for side, name in zip(("a", "b"), names, strict=True)
    }
    return start_pair(
        stack,
        a=sides["a"],
        b=sides["b"],
        a_port=docs["a"]["upstreams"][0]["port"],
        b_port=docs["b"]["inbound"]["port"],
        cpus=cpus,
        wait=wait,
        **popen,
    )


def start_haproxy_pair(
    stack: Stack,
    haproxy: str,
    tls: dict[str, Any],
    *,
    app_port: int,
    threads: int,
    cpus: set[int] | None = None,
) -> Pair:
    """The same path through HAProxy (HTTP/1.1, mTLS verified both ways), once both listen."""
    work = stack.work
    combined_pem(work, tls)
    b_port, a_port = free_port(), free_port()
    sides = {}
    for side, template, listen, upstream in (
        ("b", HAPROXY_B, b_port, app_port),
        ("a", HAPROXY_A, a_port, b_port),
    ):
        cfg = work / f"haproxy-{side}.cfg"
        body = template.format(
            listen=listen,
            upstream=upstream,
            crt=work / f"{side}-combined.pem",
            bundle=tls[side].bundle,
        )
        cfg.write_text(HAPROXY_CONF.format(threads=threads, body=body))
        sides[side] = (f"haproxy-{side}", [haproxy, "-db", "-f", str(cfg)])
    return start_pair(stack, a=sides["a"], b=sides["b"], a_port=a_port, b_port=b_port, cpus=cpus)
