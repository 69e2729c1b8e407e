"""The load the proxy benchmarks put on a path, and its figures: wrk at saturation, wrk paced
by a Lua script, and one connection sending one request at a time (`serial`).

`LOAD_CPUS` (bench/proxy.py --pin) pins wrk to those CPUs.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
from pathlib import Path

from bench._pairs import cpu_seconds

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


def requests_in(text: str) -> int:
    """How many requests a wrk run completed (its `N requests in T` line)."""
    return int(re.search(r"(\d+) requests in", text).group(1))  # type: ignore[union-attr]


def saturation(port: int, pids: list[int], connections: int, duration: float) -> dict[str, float]:
    cpu0 = sum(cpu_seconds(p) for p in pids)
    text = wrk(port, connections=connections, duration=duration)
    cpu1 = sum(cpu_seconds(p) for p in pids)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    total = requests_in(text)
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
