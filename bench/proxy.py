"""The sidecar's cost, measured: the same HTTP/1.1 1 KB workload three ways.

    direct       wrk → nginx
    weft         wrk → Weft sidecar A → mTLS (TLS 1.3, SPIFFE IDs) → Weft sidecar B → nginx
    weft-reactor the weft path with `--io-waits reactor` (the opt-in reactor: the proxy's own
                 epoll, a socket registered once): against `weft` (trio's waits) in the same run
    weft-routes  the same, A with 20 routes (the request matches the last), a retry policy
                 on each, the retry budget and per-route metrics (snapshot schema v2)
    weft-base    the weft path run from another checkout (`--base DIR`, say a `git worktree` of
                 the commit before a change): before and after a change in the same run
    weft-traced  the weft path with tracing on (both sidecars export OTLP to a collector,
                 nginx answering POST /v1/traces) sampling 1 % of new traces: against `weft`
                 (tracing off) in the same run
    haproxy      wrk → HAProxy A → mTLS (TLS 1.3, verified both ways) → HAProxy B → nginx

For each: throughput at saturation (wrk, closed loop), latency at about 1,000 req/s (wrk paced
by a Lua script: 20 connections, each waiting a random 10-30 ms before its next request, so
arrivals are spread out rather than in lockstep bursts), CPU seconds per 1,000 requests (from
/proc, both proxies of a pair together) and the resident memory of each proxy. Added latency is
the proxied percentile minus the direct one. Runs are interleaved and repeated; medians are
reported. Also: HTTP head parse + serialize with httptools (what the proxy uses) against h11.

    scripts/bootstrap bench && .venv/bin/python bench/proxy.py [--duration 10] [--repeat 3]
        [--targets weft,weft-traced]   (a subset: a short run on a shared machine)
    .venv/bin/python bench/proxy.py --h2-only            # just the HTTP/2 (gRPC) comparison

Then the same for HTTP/2: gRPC-shaped unary calls from h2load through Weft (`protocol: grpc`:
h2c, mTLS h2, h2c) and through HAProxy in h2 mode, to nginx (h2c) (bench/_h2_load.py).

Needs wrk, nginx (nginx-light), haproxy and h2load (nghttp2-client) from Debian; prints a
Markdown report.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._h2_load import section as h2_bench  # noqa: E402
from tests.harness._pki import TestCA  # noqa: E402  (a test certificate factory)
from weft._settings import parse_workers  # noqa: E402

PACE_LUA = """
-- Each connection waits a random 0.5x-1.5x `connections` ms before its next request: on average
-- 1,000 req/s in all, with arrivals spread out (a fixed delay keeps the connections in lockstep
-- and turns the load into bursts of `connections` requests, 50 times a second).
local connections = tonumber(os.getenv("PACE_CONNECTIONS"))
math.randomseed(os.time())
function delay()
  return math.random(math.floor(connections / 2), math.floor(connections * 3 / 2))
end
function done(summary, latency, requests)
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "errors": %d, '
      .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\\n',
    summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status
      + summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""

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


LOAD_CPUS: set[int] | None = None  # --pin: where wrk runs


def wrk(port: int, *, connections: int, duration: float, script: Path | None = None) -> str:
    args = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency"]
    if LOAD_CPUS:
        args[:0] = ["taskset", "-c", ",".join(map(str, sorted(LOAD_CPUS)))]
    env = dict(os.environ)
    if script is not None:
        args += ["-s", str(script)]
        env["PACE_CONNECTIONS"] = str(connections)
    args.append(f"http://127.0.0.1:{port}/")
    out = subprocess.run(
        args, capture_output=True, text=True, check=True, env=env, timeout=duration + 60
    )
    return out.stdout


def saturation(port: int, pids: list[int], connections: int, duration: float) -> dict[str, float]:
    cpu0 = sum(cpu_seconds(p) for p in pids)
    text = wrk(port, connections=connections, duration=duration)
    cpu1 = sum(cpu_seconds(p) for p in pids)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", text).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", text)
    return {
        "rps": rps,
        "cpu_per_1k": (cpu1 - cpu0) / total * 1000 if pids else 0.0,
        "errors": 1.0 if errors else 0.0,
    }


def paced(port: int, script: Path, duration: float, connections: int = 20) -> dict[str, float]:
    text = wrk(port, connections=connections, duration=duration, script=script)
    line = next(line for line in text.splitlines() if line.startswith('{"requests"'))
    doc = json.loads(line)
    doc["rate"] = doc["requests"] / (doc["duration_us"] / 1e6)
    return doc


def serial(port: int, n: int = 3000) -> dict[str, float]:
    """One keep-alive connection, one request at a time, a millisecond apart: the latency a
    lone caller sees, free of wrk's own scheduling (the client costs the same on every path)."""
    request = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
    latencies = []
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(n + 50):
            start = time.perf_counter()
            s.sendall(request)
            got = b""
            while not (got.endswith(b"x" * 16) and got.count(b"x") >= 1024):
                chunk = s.recv(65536)
                if not chunk:
                    raise RuntimeError(f"port {port} closed the connection")
                got += chunk
            if i >= 50:  # the first requests warm the path up
                latencies.append((time.perf_counter() - start) * 1e6)
            time.sleep(0.001)
    latencies.sort()
    return {
        "p50_us": latencies[len(latencies) // 2],
        "p99_us": latencies[int(len(latencies) * 0.99)],
    }


def parsers() -> dict[str, float]:
    """µs per request head and per response head, parse + serialize, httptools core vs h11."""
    import h11

    from proxy._h1 import (
        Limits,
        encode_request,
        encode_response,
        parse_request_head,
        parse_response_head,
    )

    req = (
        b"GET /api/items?page=2 HTTP/1.1\r\nHost: billing\r\nUser-Agent: bench/1.0\r\n"
        b"Accept: application/json\r\nAccept-Encoding: gzip\r\n"
        b"traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n"
        b"X-Request-Id: 3f2a9c\r\n\r\n"
    )
    resp = (
        b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Thu, 26 Nov 2026 10:00:00 GMT\r\n"
        b"Content-Type: application/json\r\nContent-Length: 1024\r\nConnection: keep-alive\r\n"
        b'ETag: "6565"\r\n\r\n'
    )
    limits = Limits()

    def weft_request() -> bytes:
        return encode_request(parse_request_head(req, limits))

    def weft_response() -> bytes:
        return encode_response(parse_response_head(resp, b"GET", limits), keep_alive=True)

    def h11_request() -> bytes:
        server = h11.Connection(h11.SERVER)
        server.receive_data(req)
        event = server.next_event()
        client = h11.Connection(h11.CLIENT)
        return client.send(
            h11.Request(method=event.method, target=event.target, headers=event.headers)
        )

    def h11_response() -> bytes:
        client = h11.Connection(h11.CLIENT)
        client.send(h11.Request(method="GET", target="/", headers=[("host", "b")]))
        client.receive_data(resp)
        event = client.next_event()
        server = h11.Connection(h11.SERVER)
        server.receive_data(b"GET / HTTP/1.1\r\nHost: b\r\n\r\n")
        server.next_event()
        return server.send(h11.Response(status_code=event.status_code, headers=event.headers))

    out = {}
    for name, fn in (
        ("httptools_request", weft_request),
        ("httptools_response", weft_response),
        ("h11_request", h11_request),
        ("h11_response", h11_response),
    ):
        n = 20000
        out[name] = min(timeit.repeat(fn, number=n, repeat=3)) / n * 1e6
    return out


def _added(us: float, base_us: float) -> str:
    return "-" if base_us != base_us else f"{(us - base_us) / 1000:+.3f} ms"  # NaN: no direct


TARGETS = (
    "direct",
    "weft",
    "weft-base",
    "weft-reactor",
    "weft-traced",
    "weft-routes",
    "haproxy",
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections at saturation")
    parser.add_argument(
        "--workers",
        default="1",
        help="processes per Weft proxy (`weft proxy --workers`, a number or auto) and threads "
        "per HAProxy (nbthread)",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="pin wrk and nginx to the first CPU and the proxies to the next `--workers` CPUs "
        "(on a machine with enough cores this shows scaling with workers; on fewer, CPU per "
        "request is the figure that scales)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--h2-only", action="store_true", help="only the HTTP/2 (gRPC) comparison")
    parser.add_argument("--no-h2", action="store_true", help="skip the HTTP/2 (gRPC) comparison")
    parser.add_argument("--h2-clients", type=int, default=8, help="h2load connections")
    parser.add_argument("--h2-streams", type=int, default=10, help="h2load streams per connection")
    parser.add_argument(
        "--targets",
        default=None,
        help=f"comma-separated subset of {', '.join(TARGETS)} (default: all; weft-base only "
        "with --base; the summary lines whose paths ran are printed)",
    )
    parser.add_argument(
        "--base",
        type=Path,
        metavar="DIR",
        help="another checkout of Weft (e.g. `git worktree add /tmp/base HEAD~1`) whose proxies "
        "run as the `weft-base` target: before and after a change, interleaved in one run",
    )
    args = parser.parse_args()
    chosen = args.targets is not None
    args.targets = [t for t in (args.targets or ",".join(TARGETS)).split(",") if t]
    if args.base is None:
        if chosen and "weft-base" in args.targets:
            parser.error("--targets weft-base needs --base DIR (the checkout to compare with)")
        args.targets = [t for t in args.targets if t != "weft-base"]
    elif not (args.base / "proxy" / "__init__.py").is_file():
        parser.error(f"--base: {args.base} is not a checkout of Weft (no proxy/__init__.py)")
    elif "weft-base" not in args.targets:
        args.targets.append("weft-base")
    try:
        args.workers = parse_workers(args.workers)
    except ValueError as exc:
        parser.error(f"--workers: {exc}")
    if not args.targets or set(args.targets) - set(TARGETS):
        parser.error(f"--targets: choose among {', '.join(TARGETS)}")
    for tool in ("wrk", "nginx", "haproxy", "h2load"):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            print(f"{tool} is missing: run scripts/bootstrap bench", file=sys.stderr)
            return 1
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    work = Path(tempfile.mkdtemp(prefix="weft-bench-"))
    work.chmod(0o755)  # nginx workers may run as another user (www-data) when started by root
    stack = Stack(work)
    try:
        return run(args, work, stack, nginx, haproxy)
    finally:
        stack.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path, stack: Stack, nginx: str, haproxy: str) -> int:
    if args.h2_only:
        ca = TestCA("weft.bench")
        tls = {name: ca.issue(name).write(work / name) for name in ("a", "b")}
        return h2_section(args, work, stack, nginx, haproxy, ca, tls)
    global LOAD_CPUS
    proxy_cpus: set[int] | None = None
    if args.pin:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            print("--pin needs at least two CPUs", file=sys.stderr)
            return 1
        LOAD_CPUS = {cpus[0]}
        proxy_cpus = set(cpus[1 : 1 + args.workers])
        if len(proxy_cpus) < args.workers:
            print(
                f"note: {args.workers} workers share {len(proxy_cpus)} CPU(s) left after the "
                "load generator's",
                file=sys.stderr,
            )
        print(f"# pinned: wrk and nginx on CPU {cpus[0]}, proxies on {sorted(proxy_cpus)}")
    print("# parsing (µs per head, parse + serialize, best of 3)")
    parse = parsers()
    for name, us in parse.items():
        print(f"  {name:20} {us:6.2f} µs")

    # backend
    (work / "www").mkdir()
    (work / "www" / "1k").write_bytes(b"x" * 1024)
    nginx_port = free_port()
    (work / "nginx.conf").write_text(NGINX_CONF.format(dir=work, port=nginx_port))
    stack.start("nginx", [nginx, "-c", str(work / "nginx.conf")], cpus=LOAD_CPUS)
    wait_port(nginx_port)

    # certificates
    ca = TestCA("weft.bench")
    a_tls = ca.issue("a").write(work / "a")
    b_tls = ca.issue("b").write(work / "b")

    # Weft
    b_port, a_port = free_port(), free_port()
    snap_b = {
        "schema": "weft.proxy.snapshot/v1",
        "version": 1,
        "identity": ca.spiffe("b"),
        "tls": b_tls.as_snapshot(),
        "inbound": {"address": "127.0.0.1", "port": b_port, "app": {"port": nginx_port}},
    }
    snap_a = {
        "schema": "weft.proxy.snapshot/v1",
        "version": 1,
        "identity": ca.spiffe("a"),
        "tls": a_tls.as_snapshot(),
        "upstreams": [
            {
                "name": "b",
                "port": a_port,
                "protocol": "http",
                "endpoints": [{"address": "127.0.0.1", "port": b_port, "identity": ca.spiffe("b")}],
            }
        ],
    }
    ar_port = free_port()
    snap_ar = json.loads(json.dumps(snap_a))
    snap_ar["schema"] = "weft.proxy.snapshot/v2"
    routed = snap_ar["upstreams"][0]
    routed["port"] = ar_port
    routed["retry_budget"] = {"ratio": 0.2, "min_per_second": 10, "ttl_ms": 10_000}
    retry = {"attempts": 2, "on": ["gateway-error"]}
    routed["routes"] = [
        # 19 routes the benchmark's `GET /` passes over, of the kinds real tables have...
        {
            "name": f"r{i}",
            "match": [
                {"method": "POST", "path": {"exact": f"/api/v1/things/{i}"}}
                if i % 3 == 0
                else {"path": {"segment_prefix": f"/api/v{i}"}}
                if i % 3 == 1
                else {"headers": [{"name": "x-route", "exact": str(i)}]}
            ],
            "retry": retry,
        }
        for i in range(19)
    ] + [{"name": "rest", "match": [{"path": {"segment_prefix": "/"}}], "retry": retry}]
    weft = [sys.executable, "-m", "weft", "proxy", "--log-level", "warning"]
    weft += ["--workers", str(args.workers)]
    for name, doc in (("weft-b", snap_b), ("weft-a", snap_a), ("weft-ar", snap_ar)):
        (work / f"{name}.json").write_text(json.dumps(doc))
    weft_b = stack.start(
        "weft-b",
        [*weft, "--snapshot", str(work / "weft-b.json"), "--admin", "127.0.0.1:0"],
        cpus=proxy_cpus,
    )
    weft_a = stack.start(
        "weft-a",
        [*weft, "--snapshot", str(work / "weft-a.json"), "--admin", "127.0.0.1:0"],
        cpus=proxy_cpus,
    )
    weft_ar = stack.start(
        "weft-ar",
        [*weft, "--snapshot", str(work / "weft-ar.json"), "--admin", "127.0.0.1:0"],
        cpus=proxy_cpus,
    )

    def start_pair(
        tag: str, extra: list[str], **popen: Any
    ) -> tuple[int, subprocess.Popen[bytes], subprocess.Popen[bytes]]:
        """Another A → B pair like weft-a/weft-b, on ports of its own, once both listen:
        (A's port, A, B)."""
        pb_port, pa_port = free_port(), free_port()
        doc_b = json.loads(json.dumps(snap_b))
        doc_b["inbound"]["port"] = pb_port
        doc_a = json.loads(json.dumps(snap_a))
        doc_a["upstreams"][0]["port"] = pa_port
        doc_a["upstreams"][0]["endpoints"][0]["port"] = pb_port
        procs = []
        for side, doc in (("b", doc_b), ("a", doc_a)):
            name = f"weft-{tag}{side}"
            (work / f"{name}.json").write_text(json.dumps(doc))
            args_ = [*weft, *extra, "--snapshot", str(work / f"{name}.json")]
            args_ += ["--admin", "127.0.0.1:0"]
            procs.append(stack.start(name, args_, cpus=proxy_cpus, **popen))
        wait_port(pb_port)
        wait_port(pa_port)
        return pa_port, procs[1], procs[0]

    # The same pair on the opt-in reactor (`--io-waits reactor`): what it gains over the default.
    ia_port, weft_ia, weft_ib = start_pair("i", ["--io-waits", "reactor"])
    # The same pair with tracing: sidecar A starts 1 % of traces, B continues them.
    tracing = ["--trace-collector", f"http://127.0.0.1:{nginx_port}/v1/traces"]
    ta_port, weft_ta, weft_tb = start_pair("t", [*tracing, "--trace-sampling", "0.01"])
    # The same pair from another checkout (`--base`): its code first on the import path.
    base_pair = None
    if args.base is not None:
        base_env = {**os.environ, "PYTHONPATH": str(args.base.resolve())}
        base_pair = start_pair("b", [], cwd=args.base, env=base_env)
    for port in (b_port, a_port, ar_port):
        wait_port(port)

    # HAProxy
    hb_port, ha_port = free_port(), free_port()
    for name, tls in (("a", a_tls), ("b", b_tls)):
        (work / f"{name}-combined.pem").write_bytes(tls.cert.read_bytes() + tls.key.read_bytes())
    (work / "haproxy-b.cfg").write_text(
        HAPROXY_CONF.format(
            threads=args.workers,
            body=HAPROXY_B.format(
                listen=hb_port,
                upstream=nginx_port,
                crt=work / "b-combined.pem",
                bundle=b_tls.bundle,
            ),
        )
    )
    (work / "haproxy-a.cfg").write_text(
        HAPROXY_CONF.format(
            threads=args.workers,
            body=HAPROXY_A.format(
                listen=ha_port, upstream=hb_port, crt=work / "a-combined.pem", bundle=a_tls.bundle
            ),
        )
    )
    hap_b = stack.start(
        "haproxy-b", [haproxy, "-db", "-f", str(work / "haproxy-b.cfg")], cpus=proxy_cpus
    )
    hap_a = stack.start(
        "haproxy-a", [haproxy, "-db", "-f", str(work / "haproxy-a.cfg")], cpus=proxy_cpus
    )
    wait_port(hb_port)
    wait_port(ha_port)

    targets = {
        "direct": (nginx_port, []),
        "weft": (a_port, [weft_a.pid, weft_b.pid]),
        "weft-traced": (ta_port, [weft_ta.pid, weft_tb.pid]),
        "weft-routes": (ar_port, [weft_ar.pid, weft_b.pid]),
        "weft-reactor": (ia_port, [weft_ia.pid, weft_ib.pid]),
        "haproxy": (ha_port, [hap_a.pid, hap_b.pid]),
    }
    if base_pair is not None:
        ba_port, weft_ba, weft_bb = base_pair
        targets["weft-base"] = (ba_port, [weft_ba.pid, weft_bb.pid])
    targets = {name: targets[name] for name in TARGETS if name in args.targets}
    if "weft-traced" in targets and "weft" not in targets:
        targets = {"weft": (a_port, [weft_a.pid, weft_b.pid]), **targets}
    for name, (port, _) in targets.items():  # every path answers, and warms up
        out = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{port}/"],
            capture_output=True,
            text=True,
            check=False,
        )
        if out.stdout != "200":
            print(f"{name} does not answer 200 (got {out.stdout!r}); see {work}", file=sys.stderr)
            args.keep = True
            return 1
        wrk(port, connections=args.connections, duration=2)

    script = work / "pace.lua"
    script.write_text(PACE_LUA)
    sat: dict[str, list[dict[str, float]]] = {t: [] for t in targets}
    lat: dict[str, list[dict[str, float]]] = {t: [] for t in targets}
    ser: dict[str, list[dict[str, float]]] = {t: [] for t in targets}
    for i in range(args.repeat):
        for name, (port, pids) in targets.items():
            sat[name].append(saturation(port, pids, args.connections, args.duration))
            print(
                f"  run {i + 1} {name:8} saturation {sat[name][-1]['rps']:9.0f} req/s", flush=True
            )
        for name, (port, _) in targets.items():
            lat[name].append(paced(port, script, args.duration))
            d = lat[name][-1]
            print(
                f"  run {i + 1} {name:8} paced {d['rate']:6.0f} req/s "
                f"p50 {d['p50_us']} µs p99 {d['p99_us']} µs",
                flush=True,
            )
        for name, (port, _) in targets.items():
            ser[name].append(serial(port))
            d = ser[name][-1]
            print(
                f"  run {i + 1} {name:8} serial p50 {d['p50_us']:.0f} µs p99 {d['p99_us']:.0f} µs",
                flush=True,
            )

    def med(values: list[dict[str, float]], key: str) -> float:
        return statistics.median(v[key] for v in values)

    rss = {
        "weft-a": rss_mib(weft_a.pid),
        "weft-b": rss_mib(weft_b.pid),
        "weft-a-routes": rss_mib(weft_ar.pid),
        "weft-a-traced": rss_mib(weft_ta.pid),
        "weft-b-traced": rss_mib(weft_tb.pid),
        "haproxy-a": rss_mib(hap_a.pid),
        "haproxy-b": rss_mib(hap_b.pid),
    }
    has = set(targets)
    # "added" latencies are against the direct path; without it they are not printed.
    direct50 = med(lat["direct"], "p50_us") if "direct" in has else float("nan")
    direct99 = med(lat["direct"], "p99_us") if "direct" in has else float("nan")
    print()
    print(
        f"## Proxy (bench/proxy.py, {args.repeat} runs of {args.duration:g}s, medians; "
        f"{args.workers} worker(s) per proxy{', pinned' if args.pin else ''})"
    )
    print()
    print(
        "| path | req/s at saturation | CPU s / 1k req (both proxies) | rate paced "
        "| p50 | p99 | added p50 | added p99 |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in targets:
        p50, p99 = med(lat[name], "p50_us"), med(lat[name], "p99_us")
        cpu = med(sat[name], "cpu_per_1k")
        rps, rate = med(sat[name], "rps"), med(lat[name], "rate")
        print(
            f"| {name} | {rps:,.0f} | {cpu:.3f} | {rate:,.0f}/s "
            f"| {p50 / 1000:.3f} ms | {p99 / 1000:.3f} ms "
            f"| {_added(p50, direct50)} | {_added(p99, direct99)} |"
        )
    print()
    print("One connection, one request per millisecond (added = proxied minus direct):")
    print()
    print("| path | p50 | p99 | added p50 | added p99 |")
    print("|---|---:|---:|---:|---:|")
    serial50 = med(ser["direct"], "p50_us") if "direct" in has else float("nan")
    serial99 = med(ser["direct"], "p99_us") if "direct" in has else float("nan")
    for name in targets:
        p50, p99 = med(ser[name], "p50_us"), med(ser[name], "p99_us")
        print(
            f"| {name} | {p50 / 1000:.3f} ms | {p99 / 1000:.3f} ms "
            f"| {_added(p50, serial50)} | {_added(p99, serial99)} |"
        )
    print()
    print("| proxy | RSS now | RSS peak |")
    print("|---|---:|---:|")
    for name, (now, peak) in rss.items():
        print(f"| {name} | {now:.1f} MiB | {peak:.1f} MiB |")
    print()

    def per_run(a: str, b: str) -> tuple[float, str]:
        """Runs are interleaved, so each run's two figures saw the same machine: the median
        of the per-run ratios is steadier than the ratio of the medians."""
        ratios = [x["rps"] / y["rps"] for x, y in zip(sat[a], sat[b], strict=True)]
        return statistics.median(ratios), ", ".join(f"{r:.2f}" for r in ratios)

    if {"weft", "haproxy"} <= has:
        ratio_rps, ratios = per_run("weft", "haproxy")
        ratio_cpu = med(sat["weft"], "cpu_per_1k") / med(sat["haproxy"], "cpu_per_1k")
        print(f"Weft/HAProxy throughput ratio: {ratio_rps:.2f} (goal >= 0.6; per run: {ratios})")
        print(f"Weft/HAProxy CPU per request:  {ratio_cpu:.2f}x (goal <= 2x)")
    if {"weft", "haproxy", "direct"} <= has:
        added99 = (med(lat["weft"], "p99_us") - direct99) / 1000
        haproxy99 = (med(lat["haproxy"], "p99_us") - direct99) / 1000
        serial_added99 = (med(ser["weft"], "p99_us") - serial99) / 1000
        print(
            f"Weft added p99 at ~1,000 req/s: {added99:.3f} ms (target < 2 ms; "
            f"HAProxy: {haproxy99:.3f} ms; one connection, 1 req/ms: {serial_added99:.3f} ms)"
        )
    worst_rss = max(peak for name, (_, peak) in rss.items() if name.startswith("weft"))
    print(f"Weft peak RSS per proxy:       {worst_rss:.1f} MiB (target < 40 MiB)")
    if {"weft", "weft-routes"} <= has:
        routes_rps, _ = per_run("weft-routes", "weft")
        routes_added99 = (med(lat["weft-routes"], "p99_us") - med(lat["weft"], "p99_us")) / 1000
        print(
            f"20 routes + retry budget vs no routes: throughput {routes_rps:.2f}x "
            f"(target >= 0.90), paced p99 {routes_added99:+.3f} ms (target <= +0.3 ms)"
        )

    def versus(a: str, b: str) -> str:
        rps, runs = per_run(a, b)
        cpu = med(sat[a], "cpu_per_1k") / med(sat[b], "cpu_per_1k")
        return f"throughput {rps:.2f}x (per run: {runs}), CPU per request {cpu:.2f}x"

    if {"weft", "weft-reactor"} <= has:
        print(f"Reactor vs trio's waits: {versus('weft-reactor', 'weft')}")
    if {"weft", "weft-base"} <= has:
        print(f"This tree vs --base {args.base}: {versus('weft', 'weft-base')}")
    if {"weft-reactor", "haproxy"} <= has:
        print(f"Weft (reactor)/HAProxy: {versus('weft-reactor', 'haproxy')}")
    if {"weft", "weft-traced"} <= has:
        traced_rps, traced_runs = per_run("weft-traced", "weft")
        traced_added99 = (med(lat["weft-traced"], "p99_us") - med(lat["weft"], "p99_us")) / 1000
        print(
            f"Tracing at 1 % vs off: throughput {traced_rps:.2f}x (target >= 0.95; per run: "
            f"{traced_runs}), paced p99 {traced_added99:+.3f} ms"
        )
    print(
        "httptools vs h11 (request + response head, parse + serialize): "
        f"{parse['httptools_request'] + parse['httptools_response']:.1f} µs vs "
        f"{parse['h11_request'] + parse['h11_response']:.1f} µs"
    )
    errors = [n for n, runs in sat.items() if any(r["errors"] for r in runs)]
    errors += [n for n, runs in lat.items() if any(r["errors"] for r in runs)]
    if errors:
        print(f"warning: errors during the runs of {', '.join(sorted(set(errors)))}")
    if args.no_h2:
        return 0
    return h2_section(args, work, stack, nginx, haproxy, ca, {"a": a_tls, "b": b_tls})


def h2_section(
    args: argparse.Namespace,
    work: Path,
    stack: Stack,
    nginx: str,
    haproxy: str,
    ca: TestCA,
    tls: dict[str, Any],
) -> int:
    """The HTTP/2 comparison (bench/_h2_load.py) with this script's helpers."""
    return h2_bench(args, work, stack, nginx, haproxy, ca, tls, free_port, wait_port, cpu_seconds)


if __name__ == "__main__":
    sys.exit(main())
