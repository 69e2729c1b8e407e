"""Keeping etcd's storage bounded: compaction by the leading server, and the size figures
every server's health endpoint reports.

etcd keeps every revision of every key until told to compact; every agent sync rewrites its
records, so without compaction the database grows until it hits `--quota-backend-bytes` and
etcd refuses all writes (a NOSPACE alarm). The leader compacts to the revision etcd had
`retention` seconds ago. Revisions newer than that stay: a server whose watch broke resumes
from its last revision instead of re-reading the registry, as long as it was away for less
than `retention` (default 10 minutes, the longest a blocking query waits). Blocking queries
themselves never need history: their index is a revision the server's mirror has already
applied. Compaction frees pages inside etcd's file; giving them back to the filesystem
needs a defragmentation (docs/operations.md).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

import httpx
import trio

from .etcd import EtcdClient, EtcdError

log = logging.getLogger("weft.registry.etcd_upkeep")

WARN_FRACTION = 0.7


class RetentionWindow:
    """Which revision may be compacted now: the newest one seen `retention` seconds ago.

    Pure: times and revisions in, a revision out (0 while nothing is old enough).
    """

    def __init__(self, retention: float) -> None:
        self.retention = retention
        self._samples: deque[tuple[float, int]] = deque()

    def observe(self, now: float, revision: int) -> int:
        self._samples.append((now, revision))
        target = 0
        while self._samples and self._samples[0][0] <= now - self.retention:
            target = self._samples.popleft()[1]
        return target


async def compact_forever(
    etcd: EtcdClient,
    *,
    retention: float,
    interval: float,
    clock: Callable[[], float] = trio.current_time,
) -> None:
    """Compact etcd every `interval` to what it held `retention` seconds before (a leader duty)."""
    window = RetentionWindow(retention)
    compacted = 0
    while True:
        try:
            revision = int((await etcd.status())["header"]["revision"])
            target = window.observe(clock(), revision)
            if target > compacted:
                await etcd.compact(target)
                compacted = target
                log.info("compacted etcd", extra={"kv": {"revision": target}})
        except EtcdError as exc:
            log.warning("etcd compaction failed (will retry): %s", exc)
        await trio.sleep(interval)


class StorageMonitor:
    """The size of etcd's database on its largest member, against the configured quota."""

    def __init__(self, etcd: EtcdClient, *, quota_bytes: int, interval: float) -> None:
        self.etcd = etcd
        self.quota_bytes = quota_bytes
        self.interval = interval
        self.db_size = 0
        self.db_size_in_use = 0
        self.alarms: list[str] = []

    def report(self) -> dict[str, object]:
        return {
            "db_size_bytes": self.db_size,
            "db_size_in_use_bytes": self.db_size_in_use,
            "quota_bytes": self.quota_bytes,
            "alarms": self.alarms,
        }

    def warnings(self) -> list[str]:
        out = []
        if self.quota_bytes and self.db_size >= WARN_FRACTION * self.quota_bytes:
            out.append(
                f"etcd's database is {self.db_size / self.quota_bytes:.0%} of its "
                f"{self.quota_bytes} byte quota (--quota-backend-bytes): compact and "
                "defragment it before writes are refused (docs/operations.md)"
            )
        out.extend(f"etcd raised an alarm: {alarm}" for alarm in self.alarms)
        return out

    async def run(self) -> None:
        while True:
            await self.check()
            await trio.sleep(self.interval)

    async def check(self) -> None:
        sizes: list[int] = []
        in_use: list[int] = []
        alarms: set[str] = set()
        for endpoint in self.etcd.endpoints:
            try:
                with trio.move_on_after(self.interval):
                    status = await self.etcd.status(endpoint)
                    sizes.append(int(status.get("dbSize", 0)))
                    in_use.append(int(status.get("dbSizeInUse", 0)))
                    alarms.update(str(e) for e in status.get("errors", ()) or ())
            except (EtcdError, httpx.HTTPError, ValueError) as exc:
                log.debug("etcd status of %s failed: %s", endpoint, exc)
        if sizes:
            self.db_size, self.db_size_in_use = max(sizes), max(in_use)
            self.alarms = sorted(alarms)
