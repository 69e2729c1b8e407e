"""CA benchmark: CSR signings per second through `weft server`.

    .venv/bin/python bench/ca.py [--quick]

Starts its own etcd and `weft server` with the CA initialised (EC P-256), makes the keys and
CSRs beforehand (key generation is the host's cost, not the server's), then sends
`POST /v1/ca/sign` over 16 keep-alive connections and reports signed certificates per second.
Baseline in the same run: the same server answering `GET /v1/ca/roots` (HTTP + routing alone).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._http import Conn, request  # noqa: E402
from ca import KeyEncryptionKey, SpiffeId, make_key_and_csr  # noqa: E402
from tests.harness import EtcdCluster, WeftServer  # noqa: E402


async def drive(
    host: str, port: int, bodies: list[bytes], path: str, token: str, conns: int
) -> float:
    queue = list(bodies)
    done = 0

    async def worker() -> None:
        nonlocal done
        conn = await Conn.open(host, port)
        while queue:
            body = queue.pop()
            method = "POST" if body else "GET"
            await conn.send(request(method, path, token, body))
            status, _ = await conn.response()
            if status != 200:
                raise RuntimeError(f"{path} answered HTTP {status}: {conn.state.body[:200]!r}")
            done += 1

    started = trio.current_time()
    async with trio.open_nursery() as nursery:
        for _ in range(conns):
            nursery.start_soon(worker)
    return done / (trio.current_time() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run (smoke test)")
    args = parser.parse_args()
    count = 1000 if args.quick else 5000
    with tempfile.TemporaryDirectory(prefix="weft-bench-ca-") as tmp:
        work = Path(tmp)
        kek = work / "kek"
        kek.write_text(KeyEncryptionKey.generate().to_text())
        etcd = EtcdCluster(work / "etcd")
        etcd.start()
        server = WeftServer(
            etcd.endpoints,
            "/bench-ca/",
            work,
            args=[
                "--ca-kek-file",
                str(kek),
                "--ca-sign-rate",
                "1000000",
                "--ca-sign-burst",
                "1000000",
                "--log-level",
                "warning",
            ],
        )
        try:
            server.start()
            import httpx

            httpx.post(
                server.url + "/v1/ca/init",
                json={"trust_domain": "bench.local"},
                headers=server.headers(),
            ).raise_for_status()
            host, port = server.address.rsplit(":", 1)
            print(f"making {count} keys and CSRs (client side, not timed)...")
            identity = SpiffeId("bench.local", "default", "api")
            bodies = [
                json.dumps(
                    {"csr": make_key_and_csr(identity).csr_pem.decode(), "service": "api"}
                ).encode()
                for _ in range(count)
            ]
            token = server.token or ""
            baseline = trio.run(drive, host, int(port), [b""] * count, "/v1/ca/roots", token, 16)
            print(f"baseline: GET /v1/ca/roots through the same server: {baseline:,.0f}/s")
            rate = trio.run(drive, host, int(port), bodies, "/v1/ca/sign", token, 16)
            print(
                f"CSR signings through weft server: {rate:,.0f}/s "
                f"(target >= 500/s; Consul's default limit is 50/s)"
            )
        finally:
            server.stop()
            etcd.stop()


if __name__ == "__main__":
    main()
