"""Registry benchmark: registrations/s, blocking-query fan-out latency, memory at 100k instances.

    .venv/bin/python bench/registry.py [--quick]

Starts its own etcd and `weft server` (real processes, loopback), drives them with a raw-socket
HTTP/1.1 client on trio (so the load generator is not the bottleneck), and prints:
  - etcd's own put rate through the JSON gateway (baseline for the same machine, same run)
  - registrations per second through one server
  - p50/p99 time from a registration until 1,000 blocking-query clients have all seen it
  - the server's RSS holding 100,000 instances
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._http import Conn, request  # noqa: E402
from registry.etcd import EtcdClient  # noqa: E402
from tests.harness import EtcdCluster, WeftServer  # noqa: E402


async def etcd_baseline(etcd_url: str, seconds: float) -> float:
    """Single puts/s straight to etcd's JSON gateway, 32 concurrent (what one server faces)."""
    async with EtcdClient([etcd_url], max_connections=32) as client:
        count = 0
        deadline = trio.current_time() + seconds

        async def worker(w: int) -> None:
            nonlocal count
            i = 0
            while trio.current_time() < deadline:
                await client.put(f"/bench-baseline/{w}/{i}", b"x" * 200)
                i += 1
                count += 1

        started = trio.current_time()
        async with trio.open_nursery() as nursery:
            for w in range(32):
                nursery.start_soon(worker, w)
        elapsed = trio.current_time() - started
        await client.delete("/bench-baseline/", prefix=True)
    return count / elapsed


async def registrations(host: str, port: int, token: str, seconds: float, conns: int) -> float:
    count = 0
    deadline = trio.current_time() + seconds

    async def worker(w: int) -> None:
        nonlocal count
        conn = await Conn.open(host, port)
        i = 0
        while trio.current_time() < deadline:
            body = json.dumps(
                {"Name": f"reg{w % 50}", "ID": f"r-{w}-{i}", "Port": 8000, "Tags": ["bench"]}
            ).encode()
            await conn.send(request("PUT", "/v1/agent/service/register", token, body))
            status, _ = await conn.response()
            if status != 200:
                raise RuntimeError(f"registration failed with HTTP {status}")
            i += 1
            count += 1

    started = trio.current_time()
    async with trio.open_nursery() as nursery:
        for w in range(conns):
            nursery.start_soon(worker, w)
    return count / (trio.current_time() - started)


async def fanout(
    host: str, port: int, token: str, watchers: int, rounds: int
) -> tuple[list[float], list[float]]:
    """Per round: time until all `watchers` saw a registration; and every watcher's latency."""
    writer = await Conn.open(host, port)
    conns = []
    for _ in range(watchers):
        conns.append(await Conn.open(host, port))
    all_seen: list[float] = []
    each: list[float] = []
    await writer.send(
        request(
            "PUT", "/v1/agent/service/register", token, b'{"Name": "fan", "ID": "fan-0", "Port": 1}'
        )
    )
    await writer.response()
    for r in range(rounds):
        await writer.send(request("GET", "/v1/health/service/fan", token))
        _, headers = await writer.response()
        index = int(headers[b"x-consul-index"])
        for conn in conns:
            await conn.send(request("GET", f"/v1/health/service/fan?index={index}&wait=60s", token))
        # Every watcher must be parked before the write, or the figure measures nothing.
        while True:
            await writer.send(request("GET", "/v1/weft/health", token))
            await writer.response()
            health = json.loads(writer.state.body)
            if health["blocking_queries"] >= watchers:
                break
            await trio.sleep(0.01)
        seen: list[float] = []
        started = trio.current_time()

        async def wait_one(conn: Conn, seen: list[float] = seen, started: float = started) -> None:
            await conn.response()
            seen.append(trio.current_time() - started)

        async with trio.open_nursery() as nursery:
            for conn in conns:
                nursery.start_soon(wait_one, conn)
            body = json.dumps({"Name": "fan", "ID": f"fan-{r + 1}", "Port": 1}).encode()
            await writer.send(request("PUT", "/v1/agent/service/register", token, body))
            await writer.response()
        all_seen.append(max(seen))
        each.extend(seen)
    return all_seen, each


async def load_instances(url: str, token: str, total: int) -> float:
    import httpx

    started = time.monotonic()
    async with httpx.AsyncClient(headers={"X-Consul-Token": token}, timeout=120) as http:
        batch = 2000
        for start in range(0, total, batch):
            upserts = [
                {
                    "service": f"mem{i % 1000}",
                    "id": f"m-{i}",
                    "node": f"node-{i % 500}",
                    "address": f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}",
                    "port": 8080,
                    "tags": ["bench", "v1"],
                    "meta": {"zone": f"z{i % 3}"},
                }
                for i in range(start, min(start + batch, total))
            ]
            resp = await http.post(url + "/v1/registry/batch", json={"upserts": upserts})
            resp.raise_for_status()
    return time.monotonic() - started


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run (smoke test)")
    args = parser.parse_args()
    seconds = 3.0 if args.quick else 10.0
    rounds = 5 if args.quick else 30
    instances = 10_000 if args.quick else 100_000

    with tempfile.TemporaryDirectory(prefix="weft-bench-") as tmp:
        work = Path(tmp)
        etcd = EtcdCluster(work / "etcd")
        etcd.start()
        server = WeftServer(etcd.endpoints, "/bench/", work, args=["--log-level", "warning"])
        try:
            server.start()
            host, port = server.address.rsplit(":", 1)
            token = server.token or ""
            print(f"etcd {etcd.url}, weft server {server.url} (pid {server.proc.pid})")

            baseline = trio.run(etcd_baseline, etcd.url, seconds)
            print(f"baseline: etcd JSON gateway single puts, 32 concurrent: {baseline:,.0f}/s")

            rate = trio.run(registrations, host, int(port), token, seconds, 32)
            print(
                f"registrations through one server, 32 connections: {rate:,.0f}/s "
                f"(target >= 2,000/s; {rate / baseline:.1f}x the direct-put baseline)"
            )

            all_seen, each = trio.run(fanout, host, int(port), token, 1000, rounds)
            print(
                f"fan-out to 1,000 blocking queries, {rounds} registrations: "
                f"all-seen p50 {pct(all_seen, 0.5) * 1000:.0f} ms, "
                f"p99 {pct(all_seen, 0.99) * 1000:.0f} ms (target p99 < 250 ms); "
                f"per-watcher p50 {statistics.median(each) * 1000:.0f} ms"
            )

        finally:
            server.stop()
        # Memory on a fresh server, so the fan-out's 1,000 connections do not blur it.
        fresh = WeftServer(etcd.endpoints, "/bench-memory/", work, args=["--log-level", "warning"])
        try:
            fresh.start()
            before = rss_mb(fresh.proc.pid)
            took = trio.run(load_instances, fresh.url, fresh.token or "", instances)
            after = rss_mb(fresh.proc.pid)
            print(
                f"memory: {before:.0f} MB idle, {after:.0f} MB holding {instances:,} "
                f"instances ({(after - before) * 1024 * 1024 / instances:,.0f} bytes each; "
                f"loaded in {took:.1f}s through /v1/registry/batch)"
            )
            restarted = WeftServer(
                etcd.endpoints,
                "/bench-memory/",
                work,
                bootstrap=False,
                args=["--log-level", "warning"],
            )
            started = time.monotonic()
            restarted.start()
            print(
                f"a new server loads those {instances:,} instances and serves in "
                f"{time.monotonic() - started:.1f}s ({rss_mb(restarted.proc.pid):.0f} MB)"
            )
            restarted.stop()
        finally:
            fresh.stop()
            etcd.stop()


if __name__ == "__main__":
    main()
