"""Control-plane soak: compaction under steady agent syncs, then a 5,000-instance resync.

    .venv/bin/python bench/soak.py [--minutes 10] [--agents 100] [--resync 5000]
    make soak                      # the same, with the defaults

Starts its own etcd and two `weft server`s (real processes on loopback, a fresh data directory
and key prefix) and runs two phases, then stops everything it started:

1. **Soak.** `--agents` simulated hosts, each the agent's own registration code
   (`agent._registration.Registrar`: a lease, one PUT per service, the node's instance list,
   keepalives at a third of the TTL) with its own node token, re-sync every `--sync-interval`
   for `--minutes`, while server A (the leader) compacts etcd every `--compaction-interval`,
   keeping `--compaction-retention` of history. Every `--sample` seconds etcd's status endpoint
   gives the db size (the file) and the size in use (what compaction frees within the file); the
   series is printed as it goes and in a table at the end.
2. **Resync.** Server B reaches etcd through a relay. `--resync` instances are registered
   through A (the batch API, as the Kubernetes adapter writes) and B catches up; then the relay
   is cut, every instance is rewritten, etcd is compacted past B's revision and the relay comes
   back: B's watch resumes from a compacted revision and B re-reads the whole registry. A probe
   asks B's `GET /v1/weft/health` every 50 ms throughout (cut, resync and after) and the
   longest answer time is printed, with the resync's own duration.

Bounded: every phase has a deadline and the run ends by itself; Ctrl-C stops it cleanly.
Not part of `make test`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent._definitions import ServiceDef  # noqa: E402
from agent._registration import Registrar  # noqa: E402
from registry.client import RegistryClient  # noqa: E402
from registry.etcd import EtcdClient  # noqa: E402
from tests.harness import EtcdCluster, Relay, WeftServer  # noqa: E402

SERVICES_PER_AGENT = 5
BATCH = 500


@dataclass
class Sample:
    at: float
    revision: int
    db_size: int
    db_in_use: int


@dataclass
class Probe:
    """Latency of every `GET /v1/weft/health` answer, with when it was sent."""

    url: str
    token: str
    interval: float = 0.05
    answers: list[tuple[float, float, int]] = field(default_factory=list)  # (sent, took, status)

    async def run(self) -> None:
        # A fresh connection per probe would measure connect time; one keep-alive connection
        # measures what a load balancer's health check sees on its pooled connection.
        async with httpx.AsyncClient(headers={"X-Consul-Token": self.token}, timeout=30) as http:
            while True:
                sent = time.perf_counter()
                try:
                    status = (await http.get(self.url + "/v1/weft/health")).status_code
                except httpx.HTTPError:
                    status = 0
                self.answers.append((sent, time.perf_counter() - sent, status))
                await trio.sleep(max(0.0, self.interval - (time.perf_counter() - sent)))

    def longest(self, since: float = 0.0, until: float = float("inf")) -> float:
        took = [t for s, t, _ in self.answers if since <= s <= until]
        return max(took, default=0.0)


def mib(n: int) -> str:
    return f"{n / 1024**2:.1f} MiB"


async def etcd_status(etcd: EtcdClient) -> Sample:
    status = await etcd.call("/v3/maintenance/status", {})
    return Sample(
        at=time.monotonic(),
        revision=int(status["header"]["revision"]),
        db_size=int(status.get("dbSize", 0)),
        db_in_use=int(status.get("dbSizeInUse", status.get("dbSize", 0))),
    )


async def soak_phase(args: argparse.Namespace, server: WeftServer, etcd: EtcdClient) -> None:
    token = server.token or ""
    agents: list[RegistryClient] = []
    async with RegistryClient([server.url], token=token) as admin:
        tokens = []
        for a in range(args.agents):
            made = await admin.create_token(role="agent", node=f"soak-{a:03d}")
            tokens.append(made["secret"])
    samples: list[Sample] = []
    started = time.monotonic()
    deadline = started + args.minutes * 60
    syncs = 0
    try:
        async with trio.open_nursery() as nursery:
            for a, secret in enumerate(tokens):
                client = RegistryClient([server.url], token=secret, timeout=5)
                agents.append(client)
                node = f"soak-{a:03d}"
                registrar = Registrar(
                    client,
                    node=node,
                    node_address=f"10.9.{a // 250}.{a % 250 + 1}",
                    lease_ttl=15,
                    sync_interval=args.sync_interval,
                    identity_of=lambda d: "",
                )
                registrar.set_definitions(
                    [
                        ServiceDef(
                            file=f"svc{s}.toml",
                            name=f"svc{s}",
                            id=f"svc{s}-{node}",
                            port=8000 + s,
                            tags=("soak",),
                            meta={"version": "1.0", "zone": f"z{a % 3}"},
                        )
                        for s in range(SERVICES_PER_AGENT)
                    ]
                )
                original = registrar.sync

                async def counted(original: Any = original) -> None:
                    nonlocal syncs
                    await original()
                    syncs += 1

                registrar.sync = counted  # type: ignore[method-assign]
                nursery.start_soon(registrar.run)
                # Hosts do not all boot in the same second; spread the first syncs.
                await trio.sleep(args.sync_interval / args.agents)
            print("\n  min | revision | db size  | in use   | agent syncs")
            while time.monotonic() < deadline:
                sample = await etcd_status(etcd)
                samples.append(sample)
                print(
                    f"{(sample.at - started) / 60:5.1f} | {sample.revision:8d} | "
                    f"{mib(sample.db_size):>8} | {mib(sample.db_in_use):>8} | {syncs}",
                    flush=True,
                )
                await trio.sleep(min(args.sample, max(0.0, deadline - time.monotonic())))
            nursery.cancel_scope.cancel()
    finally:
        for client in agents:
            await client.aclose()
    samples.append(await etcd_status(etcd))
    summarise_soak(samples, started, syncs)


def summarise_soak(samples: list[Sample], started: float, syncs: int) -> None:
    writes = samples[-1].revision - samples[0].revision
    # Halves by sample count; a run too short for two samples has one "half".
    first, second = samples[: len(samples) // 2] or samples, samples[len(samples) // 2 :]
    print(
        f"\nsoak: {syncs} agent syncs, {writes} etcd revisions written in "
        f"{(samples[-1].at - started) / 60:.1f} min ({len(samples)} samples)"
    )
    for what, size in (("db size", lambda s: s.db_size), ("in use ", lambda s: s.db_in_use)):
        print(
            f"{what}: first sample {mib(size(samples[0]))}, max over the first half "
            f"{mib(max(map(size, first)))}, max over the second half "
            f"{mib(max(map(size, second)))}, last {mib(size(samples[-1]))}"
        )


def instance(i: int, generation: int, lease: str) -> dict[str, Any]:
    return {
        "service": f"bulk{i % 50}",
        "id": f"bulk-{i}",
        "node": f"bulk-node-{i % 200}",
        "address": f"10.8.{i // 250 % 250}.{i % 250 + 1}",
        "port": 9000 + i % 1000,
        "tags": ["bulk"],
        "meta": {"generation": str(generation)},
        "lease": lease,
    }


async def write_bulk(admin: RegistryClient, n: int, generation: int, lease: str) -> None:
    for start in range(0, n, BATCH):
        upserts = [instance(i, generation, lease) for i in range(start, min(n, start + BATCH))]
        await admin.batch(upserts, [])


async def generation_seen(http: httpx.AsyncClient, url: str, n: int, generation: int) -> bool:
    """Whether server `url` holds the last bulk instance at `generation`."""
    node = f"bulk-node-{(n - 1) % 200}"
    resp = await http.get(url + "/v1/registry/instances", params={"node": node})
    if resp.status_code != 200:
        return False
    return any(
        i["id"] == f"bulk-{n - 1}" and i["meta"].get("generation") == str(generation)
        for i in resp.json()
    )


async def wait_for(what: str, timeout: float, check: Any) -> float:
    started = time.perf_counter()
    while not await check():
        if time.perf_counter() - started > timeout:
            raise RuntimeError(f"gave up after {timeout:.0f} s waiting for {what}")
        await trio.sleep(0.05)
    return time.perf_counter() - started


async def resync_phase(
    args: argparse.Namespace, etcd_cluster: EtcdCluster, a: WeftServer, workdir: Path
) -> None:
    n = args.resync
    relay = Relay("127.0.0.1", etcd_cluster.members[0].client_port)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(relay.serve)
        b = WeftServer([f"http://127.0.0.1:{port}"], a.prefix, workdir, bootstrap=False)
        try:
            await trio.to_thread.run_sync(b.start)
            token = a.token or ""
            async with (
                RegistryClient([a.url], token=token, timeout=60) as admin,
                httpx.AsyncClient(headers={"X-Consul-Token": token}, timeout=30) as http,
                EtcdClient(etcd_cluster.endpoints, timeout=60) as etcd,
            ):
                lease = await admin.grant_lease(3600)
                await write_bulk(admin, n, 0, lease)
                await wait_for(f"B to hold {n} instances", 120,
                               lambda: generation_seen(http, b.url, n, 0))  # fmt: skip
                probe = Probe(b.url, token)
                nursery.start_soon(probe.run)
                await trio.sleep(1)
                relay.pause()
                cut_at = time.perf_counter()
                await write_bulk(admin, n, 1, lease)
                revision = (await etcd_status(etcd)).revision
                await etcd.call("/v3/kv/compaction", {"revision": str(revision)})
                await trio.sleep(1)
                resumed_at = time.perf_counter()
                relay.resume()
                took = await wait_for("B to resync past the compaction", 120,
                                      lambda: generation_seen(http, b.url, n, 1))  # fmt: skip
                caught_up = time.perf_counter()
                await wait_for("B healthy again", 60, lambda: _healthy(http, b.url))
                await trio.sleep(3)  # keep probing after the resync
                nursery.cancel_scope.cancel()
        finally:
            b.stop()
    resynced = "re-reading the registry" in b.log()
    print(f"\nresync: {n:,} instances rewritten and etcd compacted at revision {revision} while B "
          f"was cut off ({resumed_at - cut_at:.1f} s)")  # fmt: skip
    print(f"B re-read the registry after the compaction: {'yes' if resynced else 'NO'}; "
          f"caught up {took:.2f} s after the relay came back")  # fmt: skip
    statuses = sorted({s for _, _, s in probe.answers})
    print(f"health probes: {len(probe.answers)} answered (statuses {statuses}); longest answer "
          f"{probe.longest() * 1000:.0f} ms overall, "
          f"{probe.longest(resumed_at, caught_up) * 1000:.0f} ms during the resync")  # fmt: skip


async def _healthy(http: httpx.AsyncClient, url: str) -> bool:
    return (await http.get(url + "/v1/weft/health")).status_code == 200


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cluster = EtcdCluster(Path(tmp) / "etcd")
        cluster.start()
        prefix = f"/soak-{time.monotonic_ns()}/"
        server = WeftServer(
            cluster.endpoints,
            prefix,
            Path(tmp),
            args=(
                "--compaction-retention", f"{args.compaction_retention}s",
                "--compaction-interval", f"{args.compaction_interval}s",
                "--log-level", "warning",
            ),
        )  # fmt: skip
        try:
            server.start()
            async with EtcdClient(cluster.endpoints, timeout=30) as etcd:
                print(
                    f"soak: {args.agents} agents x {SERVICES_PER_AGENT} services, sync every "
                    f"{args.sync_interval:g} s, for {args.minutes:g} min; compaction every "
                    f"{args.compaction_interval:g} s keeping {args.compaction_retention:g} s"
                )
                if args.minutes > 0:
                    await soak_phase(args, server, etcd)
            if args.resync > 0:
                await resync_phase(args, cluster, server, Path(tmp))
        finally:
            server.stop()
            cluster.stop()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="soak length (max 60)")
    parser.add_argument("--agents", type=int, default=100, help="simulated agents (max 1000)")
    parser.add_argument("--sync-interval", type=float, default=10.0,
                        help="each agent's re-sync period, s (real agents: 60)")  # fmt: skip
    parser.add_argument("--compaction-interval", type=float, default=15.0)
    parser.add_argument("--compaction-retention", type=float, default=60.0,
                        help="history kept, s; 0 turns compaction off (to compare)")  # fmt: skip
    parser.add_argument("--sample", type=float, default=15.0, help="db size sample period, s")
    parser.add_argument("--resync", type=int, default=5000, help="instances in the resync phase")
    args = parser.parse_args(argv)
    if not 0 <= args.minutes <= 60 or not 1 <= args.agents <= 1000 or not 0 <= args.resync <= 50000:
        parser.error("--minutes 0-60, --agents 1-1000, --resync 0-50000")
    if args.sync_interval < 1 or args.sample < 1:
        parser.error("--sync-interval and --sample must be at least 1 s")
    return args


if __name__ == "__main__":
    options = parse_args()
    try:
        trio.run(main, options)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
