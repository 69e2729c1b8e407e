"""What a test prefix holds in etcd, for "nothing was stored" assertions."""

from __future__ import annotations

from typing import Any

from registry.etcd import EtcdClient

# Records a running server or agent rewrites on its own schedule (announcements, reports,
# metrics samples): they change whatever a request did, so "nothing stored" leaves them out.
HEARTBEATS = ("servers/", "agents/", "metrics/")


async def etcd_state(etcd: Any, prefix: str) -> list[tuple[str, int]]:
    """Every key under `prefix` with its mod revision, heartbeat records left out."""
    async with EtcdClient(etcd.endpoints) as client:
        result = await client.range(prefix, prefix=True)
    skip = tuple(prefix + h for h in HEARTBEATS)
    return [(kv.key, kv.mod_revision) for kv in result.kvs if not kv.key.startswith(skip)]
