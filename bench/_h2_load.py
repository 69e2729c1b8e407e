"""HTTP/2 (gRPC-shaped) load through two sidecars, Weft against HAProxy in h2 mode: part of
bench/proxy.py (`--h2-only` runs just this).

    direct    h2load → nginx (h2c)
    weft      h2load → h2c → Weft A → mTLS, ALPN h2 → Weft B → h2c → nginx   (protocol grpc)
    haproxy   h2load → h2c → HAProxy A → mTLS, ALPN h2 → HAProxy B → h2c → nginx

h2load (Debian's nghttp2-client) sends unary gRPC-shaped calls: POST of a 1 KiB gRPC message
with `content-type: application/grpc` and `te: trailers`; nginx answers 200 with a 1 KiB body
and a `grpc-status: 0` trailer, so the proxies see and classify real trailers. Closed loop:
`--h2-clients` connections with `--h2-streams` concurrent streams each.
"""

from __future__ import annotations

import re
import statistics
import subprocess
from pathlib import Path
from typing import Any

from bench._pairs import (
    combined_pem,
    cpu_seconds,
    free_port,
    snapshots,
    start_pair,
    start_weft_pair,
    wait_port,
    weft_command,
)

NGINX_H2 = """
worker_processes 1;
daemon off;
pid {dir}/nginx-h2.pid;
error_log {dir}/nginx-h2-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {dir}/h2body;
  proxy_temp_path {dir}/nginx-h2-proxy-temp;
  fastcgi_temp_path {dir}/h2fastcgi;
  uwsgi_temp_path {dir}/h2uwsgi;
  scgi_temp_path {dir}/h2scgi;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  server {{
    listen 127.0.0.1:{port} http2;
    location / {{
      default_type application/grpc;
      add_trailer grpc-status 0 always;
      return 200 "{body}";
    }}
  }}
}}
"""

HAPROXY_H2 = """
global
  nbthread 1
  maxconn 4096
  ssl-default-bind-options ssl-min-ver TLSv1.3
  ssl-default-server-options ssl-min-ver TLSv1.3
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always
{body}
"""

HAPROXY_H2_A = """
frontend outbound
  bind 127.0.0.1:{listen} proto h2
  default_backend mesh
backend mesh
  server b 127.0.0.1:{upstream} ssl verify required ca-file {bundle} crt {crt} alpn h2
"""

HAPROXY_H2_B = """
frontend inbound
  bind 127.0.0.1:{listen} ssl crt {crt} ca-file {bundle} verify required alpn h2
  default_backend app
backend app
  server nginx 127.0.0.1:{upstream} proto h2
"""

_FINISHED = re.compile(r"finished in [\d.]+\w+, ([\d.]+) req/s")
_REQUESTS = re.compile(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded")
_STATUS = re.compile(r"status codes: (\d+) 2xx")
_LATENCY = re.compile(
    r"time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)"
)


def _us(value: str, unit: str) -> float:
    return float(value) * {"us": 1.0, "ms": 1000.0, "s": 1e6}[unit]


def h2load(
    port: int, body: Path, *, clients: int, streams: int, duration: float, cpu: Any
) -> dict[str, float]:
    """One closed-loop run; `cpu()` gives the proxies' CPU seconds so far."""
    args = [
        "h2load",
        f"-c{clients}",
        f"-m{streams}",
        f"-D{max(1, round(duration))}",
        "--warm-up-time=1",
        "-d",
        str(body),
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
        f"http://127.0.0.1:{port}/weft.bench.Echo/Unary",
    ]
    before = cpu()
    out = subprocess.run(args, capture_output=True, text=True, check=False).stdout
    used = cpu() - before
    rps = float(_FINISHED.search(out).group(1)) if _FINISHED.search(out) else 0.0  # type: ignore[union-attr]
    counts = _REQUESTS.search(out)
    done = int(counts.group(3)) if counts else 0
    twos = _STATUS.search(out)
    ok = int(twos.group(1)) if twos else 0  # h2load's "succeeded" counts any answer
    lat = _LATENCY.search(out)
    mean = _us(lat.group(5), lat.group(6)) if lat else 0.0
    return {
        "rps": rps,
        "errors": max(0, done - ok),  # duration mode may count one stream in flight
        "mean_us": mean,
        "cpu_per_1k": used / done * 1000 if done else 0.0,
    }


def run_h2(
    work: Path,
    stack: Any,
    *,
    nginx: str,
    haproxy: str,
    ca: Any,
    tls: dict[str, Any],
    duration: float,
    repeat: int,
    clients: int,
    streams: int,
) -> dict[str, Any]:
    message = b"\x00\x00\x00\x04\x00" + b"x" * 1024
    body = work / "grpc-request.bin"
    body.write_bytes(message)
    nginx_port = free_port()
    (work / "nginx-h2.conf").write_text(NGINX_H2.format(dir=work, port=nginx_port, body="x" * 1029))
    stack.start("nginx-h2", [nginx, "-c", str(work / "nginx-h2.conf")])
    wait_port(nginx_port)

    b_port, a_port = free_port(), free_port()
    docs = snapshots(
        ca,
        tls,
        a_port=a_port,
        b_port=b_port,
        app_port=nginx_port,
        schema="weft.proxy.snapshot/v2",
        protocol="grpc",
    )
    weft = start_weft_pair(stack, docs, command=weft_command(), names=("weft-h2-a", "weft-h2-b"))

    hb_port, ha_port = free_port(), free_port()
    sides = {}
    for side, listen, upstream in (("b", hb_port, nginx_port), ("a", ha_port, hb_port)):
        template = HAPROXY_H2_B if side == "b" else HAPROXY_H2_A
        cfg = work / f"haproxy-h2-{side}.cfg"
        cfg.write_text(
            HAPROXY_H2.format(
                body=template.format(
                    listen=listen,
                    upstream=upstream,
                    crt=work / f"{side}-combined.pem",
                    bundle=tls[side].bundle,
                )
            )
        )
        sides[side] = (f"haproxy-h2-{side}", [haproxy, "-db", "-f", str(cfg)])
    hap = start_pair(stack, a=sides["a"], b=sides["b"], a_port=ha_port, b_port=hb_port)
    pids: dict[str, list[int]] = {"direct": [], "weft": weft.pids, "haproxy": hap.pids}

    ports = {"direct": nginx_port, "weft": weft.a_port, "haproxy": hap.a_port}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in ports}
    for name, port in ports.items():  # warm up; every path must answer (three tries: a
        # 1-second run may end with a stream in flight, counted as an error)
        for _ in range(3):
            warm = h2load(port, body, clients=2, streams=4, duration=1, cpu=lambda: 0.0)
            if warm["rps"] > 0 and not warm["errors"]:
                break
        else:
            raise RuntimeError(f"h2 path {name} does not answer ({warm}); see {work}")
    for i in range(repeat):
        for name, port in ports.items():

            def cpu(name: str = name) -> float:
                return sum(cpu_seconds(pid) for pid in pids[name])

            runs[name].append(
                h2load(port, body, clients=clients, streams=streams, duration=duration, cpu=cpu)
            )
            d = runs[name][-1]
            print(
                f"  run {i + 1} h2 {name:8} {d['rps']:9.0f} req/s mean {d['mean_us']:.0f} µs",
                flush=True,
            )
    ratio = statistics.median(
        w["rps"] / h["rps"] for w, h in zip(runs["weft"], runs["haproxy"], strict=True)
    )
    return {"runs": runs, "ratio": ratio}


def report(
    result: dict[str, Any], *, duration: float, repeat: int, clients: int, streams: int
) -> None:
    runs = result["runs"]
    print()
    print(
        f"## HTTP/2 (gRPC-shaped unary calls, h2load -c{clients} -m{streams}, "
        f"{repeat} runs of {duration:g}s, medians)"
    )
    print()
    print("| path | req/s | mean latency | CPU s / 1k req (both proxies) | errors |")
    print("|---|---:|---:|---:|---:|")
    for name, values in runs.items():
        rps = statistics.median(v["rps"] for v in values)
        mean = statistics.median(v["mean_us"] for v in values)
        cpu = statistics.median(v["cpu_per_1k"] for v in values)
        errors = sum(v["errors"] for v in values)
        cpu_cell = f"{cpu:.3f}" if name != "direct" else "-"
        print(f"| {name} | {rps:,.0f} | {mean / 1000:.2f} ms | {cpu_cell} | {errors} |")
    per_run = ", ".join(
        f"{w['rps'] / h['rps']:.2f}" for w, h in zip(runs["weft"], runs["haproxy"], strict=True)
    )
    print()
    print(f"Weft/HAProxy h2 throughput ratio: {result['ratio']:.2f} (per run: {per_run})")


def section(
    args: Any, work: Path, stack: Any, nginx: str, haproxy: str, ca: Any, tls: dict[str, Any]
) -> int:
    """bench/proxy.py's HTTP/2 part: certificates combined for HAProxy, the run, the report."""
    combined_pem(work, tls)
    result = run_h2(
        work,
        stack,
        nginx=nginx,
        haproxy=haproxy,
        ca=ca,
        tls=tls,
        duration=args.duration,
        repeat=args.repeat,
        clients=args.h2_clients,
        streams=args.h2_streams,
    )
    report(
        result,
        duration=args.duration,
        repeat=args.repeat,
        clients=args.h2_clients,
        streams=args.h2_streams,
    )
    return 0
