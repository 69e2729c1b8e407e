"""Keeps a server's Mirror in step with etcd through one watch, and wakes waiters."""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from ._fanout import Hub
from ._mirror import Changes, Mirror
from .etcd import EtcdClient, EtcdCompacted, EtcdError

log = logging.getLogger("weft.registry.sync")


class MirrorSync:
    def __init__(self, etcd: EtcdClient, mirror: Mirror, hub: Hub) -> None:
        self.etcd = etcd
        self.mirror = mirror
        self.hub = hub
        self.healthy = False
        # Called with every batch of changes before waiters wake (sessions start lock-delays).
        self.listeners: list[Callable[[Changes], None]] = []

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Read the whole prefix, then follow it forever; reports started once loaded."""
        prefix = self.mirror.keys.prefix
        backoff = 0.2
        while True:
            try:
                snapshot = await self.etcd.range_all(prefix)
                break
            except EtcdError as exc:
                log.warning("cannot read the registry from etcd yet (%s); retrying", exc)
                await trio.sleep(backoff)
                backoff = min(backoff * 2, 5)
        self.mirror.load(snapshot.kvs, snapshot.revision)
        self.healthy = True
        log.info(
            "registry loaded",
            extra={"kv": {"keys": len(snapshot.kvs), "revision": snapshot.revision}},
        )
        task_status.started()
        while True:
            try:
                await self._follow()
            except EtcdCompacted as exc:
                log.warning("%s; re-reading the registry", exc)
                await self._reload()

    async def _follow(self) -> None:
        start = self.mirror.revision + 1
        async with self.etcd.watch(self.mirror.keys.prefix, start_revision=start) as batches:
            async for batch in batches:
                changes = self.mirror.apply(batch.events, batch.revision)
                for listener in self.listeners:
                    listener(changes)
                if changes:
                    self.hub.notify(changes)
                self.hub.notify_revision(self.mirror.revision)

    async def _reload(self) -> None:
        backoff = 0.2
        while True:
            try:
                snapshot = await self.etcd.range_all(self.mirror.keys.prefix)
                break
            except EtcdError as exc:
                log.warning("re-read of the registry failed (%s); retrying", exc)
                await trio.sleep(backoff)
                backoff = min(backoff * 2, 5)
        changes = self.mirror.resync(snapshot.kvs, snapshot.revision)
        for listener in self.listeners:
            listener(changes)
        self.hub.notify(changes)
        self.hub.notify_revision(self.mirror.revision)

    async def caught_up(self, revision: int, timeout: float = 5.0) -> bool:
        """Wait until this server's view includes `revision` (read-your-writes)."""
        return await self.hub.wait_for_revision(revision, self.mirror.revision, timeout)
