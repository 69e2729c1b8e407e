"""Keeps a server's Mirror in step with etcd through one watch, and wakes waiters.

Big changes (a resync after compaction, a recursive delete of 30,000 keys) are applied in
chunks with a checkpoint between them, so the trio loop keeps answering health checks and
blocking queries meanwhile: no chunk holds it for more than a few milliseconds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import trio

from ._backoff import Backoff
from ._etcd_types import _b64
from ._fanout import Hub
from ._freshness import Freshness
from ._mirror import Changes, Mirror
from .etcd import (
    EtcdClient,
    EtcdCompacted,
    EtcdError,
    Event,
    RangeResult,
    WatchStatus,
    prefix_end,
)

log = logging.getLogger("weft.registry.sync")

CHUNK = 500  # events applied between checkpoints (~2-5 ms of work on a slow core)
PAGE = 1000  # keys per range page when re-reading (one page's JSON parses in ~10 ms)


class MirrorSync:
    def __init__(
        self, etcd: EtcdClient, mirror: Mirror, hub: Hub, *, staleness_bound: float = 5.0
    ) -> None:
        self.etcd = etcd
        self.mirror = mirror
        self.hub = hub
        self.healthy = False  # loaded: False only until the first full read
        self.watch = WatchStatus()
        self.freshness = Freshness(staleness_bound, 0.0)
        # The first stream starts right after a full read; later ones resume after a gap and
        # are trusted once a barrier written after the reconnect has come back through them.
        self._synced_epoch = 1
        # Called with every batch of changes before waiters wake (sessions start lock-delays).
        self.listeners: list[Callable[[Changes], None]] = []

    def stale_reason(self) -> str | None:
        """Why this server's view of etcd cannot be trusted now (None: it can)."""
        if not self.healthy:
            return "the registry is still loading from etcd"
        if self.watch.epoch > self._synced_epoch:
            return "the etcd watch reconnected and is catching up"
        return self.freshness.stale_reason(
            trio.current_time(),
            self.mirror.revision,
            watch_connected=self.watch.connected,
            watch_down_since=self.watch.down_since,
        )

    async def probe_forever(self) -> None:
        """Ask etcd for the newest change under the prefix, a few times per bound."""
        bound = self.freshness.bound
        prefix = self.mirror.keys.prefix
        body = {
            "key": _b64(prefix),
            "range_end": _b64(prefix_end(prefix)),
            "limit": "1",
            "sort_order": "DESCEND",
            "sort_target": "MOD",
            "keys_only": True,
        }
        while True:
            with trio.move_on_after(bound):
                try:
                    if self.watch.connected and self.watch.epoch > self._synced_epoch:
                        await self._barrier(self.watch.epoch)
                    answer = await self.etcd.call("/v3/kv/range", body)
                    kvs = answer.get("kvs") or [{}]
                    latest = int(kvs[0].get("mod_revision", 0))
                    self.freshness.probed(trio.current_time(), latest)
                except (EtcdError, ValueError, KeyError) as exc:
                    log.debug("freshness probe failed: %s", exc)
            await trio.sleep(bound / 5)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Read the whole prefix, then follow it forever; reports started once loaded."""
        snapshot = await self._read_all("cannot read the registry from etcd yet")
        self.mirror.load((), snapshot.revision)
        await self._apply(self.mirror.resync_events(snapshot.kvs, snapshot.revision), 0)
        self.freshness.probed(trio.current_time(), snapshot.revision)
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

    async def _read_all(self, what: str) -> RangeResult:
        backoff = Backoff(initial=0.2, maximum=5.0)
        while True:
            try:
                return await self.etcd.range_all(self.mirror.keys.prefix, page=PAGE)
            except EtcdError as exc:
                log.warning("%s (%s); retrying", what, exc)
                await trio.sleep(backoff.next())

    async def _barrier(self, epoch: int) -> None:
        """Write a key and wait for it through the watch: events come in revision order, so
        once it is back, everything etcd had when the watch reconnected has been applied."""
        revision = await self.etcd.put(self.mirror.keys.prefix + "sync-barrier", b"")
        if await self.caught_up(revision, timeout=self.freshness.bound):
            self._synced_epoch = max(self._synced_epoch, epoch)

    async def _follow(self) -> None:
        start = self.mirror.revision + 1
        async with self.etcd.watch(
            self.mirror.keys.prefix, start_revision=start, status=self.watch
        ) as batches:
            async for batch in batches:
                await self._apply(batch.events, batch.revision)

    async def _reload(self) -> None:
        snapshot = await self._read_all("re-read of the registry failed")
        await trio.lowlevel.checkpoint()
        events = self.mirror.resync_events(snapshot.kvs, snapshot.revision)
        log.info("resyncing the registry", extra={"kv": {"changed": len(events)}})
        await self._apply(events, snapshot.revision)

    async def _apply(self, events: Sequence[Event], revision: int) -> None:
        """Apply events in chunks; the revision moves (and waiters wake) once all are in."""
        changes = Changes()
        for start in range(0, len(events), CHUNK):
            if start:
                await trio.lowlevel.checkpoint()
            changes.merge(self.mirror.apply(events[start : start + CHUNK], 0, advance=False))
        if revision:
            self.mirror.advance(events, revision)
        for listener in self.listeners:
            listener(changes)
        if changes:
            self.hub.notify(changes)
        self.hub.notify_revision(self.mirror.revision)

    async def caught_up(self, revision: int, timeout: float = 5.0) -> bool:
        """Wait until this server's view includes `revision` (read-your-writes)."""
        return await self.hub.wait_for_revision(revision, self.mirror.revision, timeout)
