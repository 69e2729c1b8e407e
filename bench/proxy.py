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
Markdown report. Its parts: bench/_pairs.py (processes, nginx, certificates, the A/B pairs, shared
with bench/profile_proxy.py and bench/skeleton_proxy.py), bench/_load.py (wrk and the serial
client), bench/_report.py (the tables and summary lines).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import timeit
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import _load as load  # noqa: E402
from bench._h2_load import section as h2_section  # noqa: E402
from bench._pairs import (  # noqa: E402
    Pair,
    Stack,
    certificates,
    free_port,
    rss_mib,
    snapshots,
    start_haproxy_pair,
    start_nginx,
    start_weft_pair,
    wait_port,
    weft_args,
    weft_command,
)
from bench._report import report  # noqa: E402
from weft._settings import parse_workers  # noqa: E402


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


def routed(doc_a: dict[str, Any], port: int) -> dict[str, Any]:
    """Sidecar A's snapshot as schema v2 on `port`, with 20 routes (the benchmark's `GET /`
    matches the last), a retry policy on each and a retry budget: the `weft-routes` target."""
    doc = json.loads(json.dumps(doc_a))
    doc["schema"] = "weft.proxy.snapshot/v2"
    upstream = doc["upstreams"][0]
    upstream["port"] = port
    upstream["retry_budget"] = {"ratio": 0.2, "min_per_second": 10, "ttl_ms": 10_000}
    retry = {"attempts": 2, "on": ["gateway-error"]}
    upstream["routes"] = [
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
    return doc


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
        ca, tls = certificates(work)
        return h2_section(args, work, stack, nginx, haproxy, ca, tls)
    proxy_cpus: set[int] | None = None
    if args.pin:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            print("--pin needs at least two CPUs", file=sys.stderr)
            return 1
        load.LOAD_CPUS = {cpus[0]}
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

    nginx_port = start_nginx(stack, nginx, cpus=load.LOAD_CPUS)
    ca, tls = certificates(work)
    weft = weft_command("--workers", str(args.workers))

    def docs() -> dict[str, dict[str, Any]]:
        """The pair's snapshots, on ports of its own."""
        return snapshots(ca, tls, a_port=free_port(), b_port=free_port(), app_port=nginx_port)

    def start(tag: str, extra: list[str], snaps: dict[str, Any], **kwargs: Any) -> Pair:
        """An A → B pair of `weft proxy` in front of nginx: `weft-{tag}a` and `weft-{tag}b`."""
        names = (f"weft-{tag}a", f"weft-{tag}b")
        command = [*weft, *extra]
        return start_weft_pair(
            stack, snaps, command=command, names=names, cpus=proxy_cpus, **kwargs
        )

    # Only the pairs a chosen target needs run: an idle proxy still wakes up (its deadline
    # sweeper), on the proxies' CPUs.
    wanted = set(args.targets)
    plain_docs = docs()
    plain = start("", [], plain_docs, wait=False)
    targets: dict[str, tuple[int, list[int]]] = {
        "direct": (nginx_port, []),
        "weft": (plain.a_port, plain.pids),
    }
    if "weft-routes" in wanted:  # sidecar A with routes, in front of the same sidecar B
        ar_port = free_port()
        doc_ar = routed(plain_docs["a"], ar_port)
        weft_ar = stack.start("weft-ar", weft_args(stack, "weft-ar", doc_ar, weft), cpus=proxy_cpus)
        targets["weft-routes"] = (ar_port, [weft_ar.pid, plain.b.pid])
    if "weft-reactor" in wanted:  # the pair on the opt-in reactor (`--io-waits reactor`)
        reactor = start("i", ["--io-waits", "reactor"], docs())
        targets["weft-reactor"] = (reactor.a_port, reactor.pids)
    if "weft-traced" in wanted:  # with tracing: sidecar A starts 1 % of traces, B continues
        tracing = ["--trace-collector", f"http://127.0.0.1:{nginx_port}/v1/traces"]
        traced = start("t", [*tracing, "--trace-sampling", "0.01"], docs())
        targets["weft-traced"] = (traced.a_port, traced.pids)
    # The same pair from another checkout (`--base`): its code first on the import path.
    base = None
    if args.base is not None:
        base_env = {**os.environ, "PYTHONPATH": str(args.base.resolve())}
        base = start("b", [], docs(), cwd=args.base, env=base_env)
    plain.wait()
    if "weft-routes" in targets:
        wait_port(targets["weft-routes"][0])
    hap = start_haproxy_pair(
        stack, haproxy, tls, app_port=nginx_port, threads=args.workers, cpus=proxy_cpus
    )
    targets["haproxy"] = (hap.a_port, hap.pids)
    if base is not None:
        targets["weft-base"] = (base.a_port, base.pids)
    targets = {name: targets[name] for name in TARGETS if name in args.targets}
    if "weft-traced" in targets and "weft" not in targets:
        targets = {"weft": (plain.a_port, plain.pids), **targets}
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
        load.wrk(port, connections=args.connections, duration=2)

    script = work / "pace.lua"
    script.write_text(load.PACE_LUA)
    sat: dict[str, list[dict[str, float]]] = {t: [] for t in targets}
    lat: dict[str, list[dict[str, float]]] = {t: [] for t in targets}
    ser: dict[str, list[dict[str, float]]] = {t: [] for t in targets}
    for i in range(args.repeat):
        for name, (port, pids) in targets.items():
            sat[name].append(load.saturation(port, pids, args.connections, args.duration))
            print(
                f"  run {i + 1} {name:8} saturation {sat[name][-1]['rps']:9.0f} req/s", flush=True
            )
        for name, (port, _) in targets.items():
            lat[name].append(load.paced(port, script, args.duration))
            d = lat[name][-1]
            print(
                f"  run {i + 1} {name:8} paced {d['rate']:6.0f} req/s "
                f"p50 {d['p50_us']} µs p99 {d['p99_us']} µs",
                flush=True,
            )
        for name, (port, _) in targets.items():
            ser[name].append(load.serial(port))
            d = ser[name][-1]
            print(
                f"  run {i + 1} {name:8} serial p50 {d['p50_us']:.0f} µs p99 {d['p99_us']:.0f} µs",
                flush=True,
            )

    rss = {"weft-a": rss_mib(plain.a.pid), "weft-b": rss_mib(plain.b.pid)}
    if "weft-routes" in targets:
        rss["weft-a-routes"] = rss_mib(weft_ar.pid)
    if "weft-traced" in targets:
        rss["weft-a-traced"] = rss_mib(traced.a.pid)
        rss["weft-b-traced"] = rss_mib(traced.b.pid)
    rss["haproxy-a"], rss["haproxy-b"] = rss_mib(hap.a.pid), rss_mib(hap.b.pid)
    report(args, targets, sat, lat, ser, rss, parse)
    if args.no_h2:
        return 0
    return h2_section(args, work, stack, nginx, haproxy, ca, tls)


if __name__ == "__main__":
    sys.exit(main())
