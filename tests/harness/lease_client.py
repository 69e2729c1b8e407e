"""A stand-in for an agent: registers instances under its own lease and keeps it alive.

Run as a subprocess (`python -m tests.harness.lease_client URL TOKEN SERVICE COUNT TTL READY`)
so a test can SIGKILL it like a crashed host agent.
"""

from __future__ import annotations

import sys
from pathlib import Path

import trio

from registry.client import RegistryClient


async def main(url: str, token: str, service: str, count: int, ttl: int, ready: str) -> None:
    async with RegistryClient(url, token=token) as client:
        lease = await client.grant_lease(ttl)
        for i in range(count):
            await client.register(
                {
                    "service": service,
                    "id": f"{service}-{i}",
                    "node": "lease-node",
                    "address": "127.0.0.1",
                    "port": 10000 + i,
                    "lease": lease,
                }
            )
        Path(ready).write_text(lease)
        while True:
            await trio.sleep(ttl / 3)
            await client.keepalive(lease)


if __name__ == "__main__":
    url, token, service, count, ttl, ready = sys.argv[1:7]
    trio.run(main, url, token, service, int(count), int(ttl), ready)
