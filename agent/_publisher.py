"""Versioned snapshots per local proxy, and who has applied which version.

A new version is made only when a proxy's document would change. Versions come from the
clock (milliseconds) and only grow, so they keep growing across agent restarts too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import trio

from . import _snapshots


@dataclass
class Published:
    version: int
    doc: dict[str, Any]
    changed: trio.Event = field(default_factory=trio.Event)
    acked_version: int | None = None
    ack: dict[str, Any] | None = None
    published_at: float = field(default_factory=time.monotonic)  # how long a proxy lags


class Publisher:
    def __init__(self) -> None:
        self.proxies: dict[str, Published] = {}
        self._last_version = 0
        self.acked = trio.Event()

    def _next_version(self) -> int:
        self._last_version = max(self._last_version + 1, int(time.time() * 1000))
        return self._last_version

    def publish(self, proxy_id: str, doc: dict[str, Any]) -> bool:
        """Offer a (version-less) document; returns True if it made a new version."""
        current = self.proxies.get(proxy_id)
        if current is not None and _snapshots.content(current.doc) == _snapshots.content(doc):
            return False
        version = self._next_version()
        doc = {**doc, "version": version}
        published = Published(version, doc)
        if current is not None:
            published.acked_version, published.ack = current.acked_version, current.ack
            current.changed.set()
        self.proxies[proxy_id] = published
        return True

    def remove(self, proxy_id: str) -> None:
        current = self.proxies.pop(proxy_id, None)
        if current is not None:
            current.changed.set()

    async def wait_newer(self, proxy_id: str, than: int, deadline: float) -> Published | None:
        """The proxy's snapshot once its version is above `than` (or None at the deadline)."""
        with trio.move_on_at(deadline):
            while True:
                current = self.proxies.get(proxy_id)
                if current is None:
                    return None
                if current.version > than:
                    return current
                await current.changed.wait()
        return self.proxies.get(proxy_id)

    def record_ack(self, proxy_id: str, ack: dict[str, Any]) -> None:
        current = self.proxies.get(proxy_id)
        if current is None:
            return
        current.ack = ack
        if ack.get("accepted") and isinstance(ack.get("version"), int):
            current.acked_version = ack["version"]
        self.acked.set()
        self.acked = trio.Event()

    def all_configured(self, ids: set[str]) -> bool:
        """Each of these proxies is published and has applied some snapshot (READY=1)."""
        return all(i in self.proxies and self.proxies[i].acked_version is not None for i in ids)

    def all_applied(self) -> bool:
        return all(p.acked_version == p.version for p in self.proxies.values())
