"""Each server says it exists: `servers/<identity>` on its own lease, rewritten every few
seconds with what `weft check` compares between servers (its address, clock, view of etcd
and mesh-wide settings). A server that stops is gone from the list within the lease TTL.

Written straight to etcd rather than through the write batcher: it is one small key per
server every `interval`, and it must keep flowing while the server's own view is stale (a
stale server that can still reach etcd says so here).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import trio

import weft

from ._etcd_types import EtcdLeaseNotFound
from ._keys import Keys
from ._sync import MirrorSync
from .etcd import EtcdClient, EtcdError

log = logging.getLogger("weft.server.announce")

INTERVAL = 5.0
TTL = 15  # three missed rewrites and the record is gone


class Announcer:
    def __init__(
        self,
        etcd: EtcdClient,
        keys: Keys,
        sync: MirrorSync,
        *,
        identity: str,
        facts: Callable[[], dict[str, Any]],
        clock: Callable[[], float],
        interval: float = INTERVAL,
    ) -> None:
        self.etcd = etcd
        self.keys = keys
        self.sync = sync
        self.identity = identity
        self.facts = facts
        self.clock = clock
        self.interval = interval
        self.started_at = clock()
        self._lease = 0

    def record(self) -> dict[str, Any]:
        return {
            "identity": self.identity,
            "version": weft.__version__,
            "started_at": self.started_at,
            "time": self.clock(),
            "revision": self.sync.mirror.revision,
            "stale": self.sync.stale_reason(),
            **self.facts(),
        }

    async def announce(self) -> None:
        if self._lease:
            try:
                await self.etcd.lease_keepalive(self._lease)
            except EtcdLeaseNotFound:
                self._lease = 0  # expired while etcd was away
        if not self._lease:
            self._lease = await self.etcd.lease_grant(TTL)
        try:
            await self.etcd.put(
                self.keys.server(self.identity),
                json.dumps(self.record()).encode(),
                lease=self._lease,
            )
        except EtcdLeaseNotFound:
            self._lease = 0
            raise

    async def run(self) -> None:
        while True:
            with trio.move_on_after(self.interval):
                try:
                    await self.announce()
                except EtcdError as exc:
                    log.debug("cannot announce this server: %s", exc)
            await trio.sleep(self.interval)

    async def withdraw(self) -> None:
        """On a clean stop: leave the list at once rather than after the TTL."""
        if self._lease:
            with trio.move_on_after(2):
                try:
                    await self.etcd.lease_revoke(self._lease)
                except EtcdError:
                    pass
