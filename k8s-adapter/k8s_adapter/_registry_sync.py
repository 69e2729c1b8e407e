"""Kubernetes -> registry: write the difference, in batches, while this replica leads.

On taking the lead (and every `resync`) it reads what the registry holds for this cluster's
source (`GET /v1/registry/instances?source=k8s/<cluster>`), then writes only what differs
from the cluster, through `POST /v1/registry/batch`. After that, informer changes mark the
registry services they touch; after a short coalescing pause the marked services are
diffed and written. A new leader whose informers are warm therefore finds nothing to write:
a handover never empties the registry, even for a 900-endpoint Service.

Entries are persistent (no etcd lease): a dead adapter's entries stay until an adapter of
the same cluster lists and diffs again, so the data plane keeps its endpoints through
adapter restarts, upgrades and API-server outages. `purge()` removes a decommissioned
cluster's entries.

A batch the registry rejects for one entry (`upserts[i]...` in its error) is retried without
that entry, which is logged and not sent again until it changes.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import trio

from registry.client import APIError, RegistryClient, ServerUnreachable
from registry.lifecycle import Backoff

from ._cluster import ClusterState
from ._diff import Plan, plan
from ._entry import Entry, EntryKey

log = logging.getLogger("weft.k8s.sync")

_UPSERT_FIELD = re.compile(r"^upserts\[(\d+)\]")


@dataclass
class SyncStats:
    batches: int = 0
    transactions: int = 0
    upserts: int = 0
    deletes: int = 0
    rejected: int = 0
    loads: int = 0
    passes: int = 0
    errors: int = 0
    last_sync: float = 0.0  # trio clock of the last pass that left nothing to write


class RegistrySync:
    def __init__(
        self,
        client: RegistryClient,
        state: ClusterState,
        *,
        source: str,
        batch_size: int = 500,
        coalesce: float = 0.05,
        resync: float = 300.0,
        parallel: int = 4,
    ) -> None:
        self.client = client
        self.parallel = parallel
        self.state = state
        self.source = source
        self.batch_size = batch_size
        self.coalesce = coalesce
        self.resync = resync
        self.stats = SyncStats()
        self.current: dict[EntryKey, Entry] = {}
        self._by_service: dict[str, set[EntryKey]] = defaultdict(set)
        self._by_node_id: dict[tuple[str, str], EntryKey] = {}
        self._rejected: dict[EntryKey, Entry] = {}
        self._dirty: set[str] = set()
        self._all = True
        self._wake = trio.Event()
        self._force_load = False
        self.in_sync = False

    # -- marks from the informers ------------------------------------------------------------

    def mark(self, names: set[str]) -> None:
        if names:
            self._dirty |= names
            self.in_sync = False
            self._wake.set()

    def mark_all(self, *, reload: bool = False) -> None:
        self._all = True
        self._force_load = self._force_load or reload
        self.in_sync = False
        self._wake.set()

    # -- the leader's loop -------------------------------------------------------------------

    async def lead(self, synced: trio.Event) -> None:
        """Keep the registry equal to the cluster until cancelled (leadership lost)."""
        await synced.wait()
        backoff = Backoff()
        next_load = 0.0
        try:
            while True:
                try:
                    if trio.current_time() >= next_load or self._force_load:
                        await self.load()
                        next_load = trio.current_time() + self.resync
                        self._all = True
                    if not (self._all or self._dirty):
                        with trio.move_on_at(next_load):
                            await self._wake.wait()
                        if not (self._all or self._dirty):
                            continue
                        await trio.sleep(self.coalesce)
                    await self.sync_marked()
                    backoff.reset()
                except (APIError, ServerUnreachable) as exc:
                    self.stats.errors += 1
                    delay = backoff.next()
                    log.warning(
                        "registry write failed: %s; reading the registry again in %.1fs",
                        exc,
                        delay,
                        extra={"kv": {"source": self.source}},
                    )
                    # A failed batch may have been partly applied: trust only a fresh read.
                    self._force_load = True
                    await trio.sleep(delay)
        finally:
            self.in_sync = False

    async def load(self) -> None:
        views = await self.client.instances(source=self.source)
        self._force_load = False
        self.current.clear()
        self._by_service.clear()
        self._by_node_id.clear()
        for view in views:
            try:
                entry = Entry.from_view(view)
            except (KeyError, TypeError, ValueError):
                log.warning("unreadable registry instance %r", view.get("id"))
                continue
            self._put(entry)
        self.stats.loads += 1
        log.info(
            "read the registry", extra={"kv": {"source": self.source, "instances": len(views)}}
        )

    async def sync_marked(self) -> None:
        self._wake = trio.Event()
        names, everything = self._dirty, self._all
        self._dirty, self._all = set(), False
        try:
            wanted: dict[EntryKey, Entry] = {}
            current: dict[EntryKey, Entry] = {}
            # Everything: every name the cluster claims or the registry holds entries for.
            scope = (self.state.names() | self._by_service.keys()) if everything else names
            for name in sorted(scope):
                try:
                    wanted.update(self.state.entries(name))
                except Exception:
                    # A bug meeting an odd object must not cost the service its entries:
                    # leave what the registry has for it, and say so.
                    log.exception("cannot compute %s; its entries are left as they are", name)
                    continue
                for key in self._by_service.get(name, ()):
                    current[key] = self.current[key]
            todo = plan(wanted, current)
            todo.upserts = [e for e in todo.upserts if self._rejected.get(e.key) != e]
            await self._write_plan(todo)
        except BaseException:
            self._dirty |= names
            self._all = self._all or everything
            raise
        self.stats.passes += 1
        if not (self._dirty or self._all):
            self.in_sync = True
            self.stats.last_sync = trio.current_time()

    async def _write_plan(self, todo: Plan) -> None:
        """One request when the plan fits a batch; else all upserts (batches in parallel),
        then all deletes, so new endpoints are registered before old ones leave."""
        if len(todo) <= self.batch_size:
            if todo:
                await self._write(todo)
            return
        limiter = trio.CapacityLimiter(self.parallel)
        for phase in (Plan(upserts=todo.upserts), Plan(deletes=todo.deletes)):
            errors: list[Exception] = []
            async with trio.open_nursery() as nursery:
                for batch in phase.batches(self.batch_size):
                    nursery.start_soon(self._write_limited, batch, limiter, errors)
            if errors:
                raise errors[0]

    async def _write_limited(
        self, batch: Plan, limiter: trio.CapacityLimiter, errors: list[Exception]
    ) -> None:
        async with limiter:
            try:
                await self._write(batch)
            except (APIError, ServerUnreachable) as exc:
                errors.append(exc)  # raised by the caller, outside the nursery

    async def _write(self, batch: Plan) -> None:
        upserts = [e.registration(self.source) for e in batch.upserts]
        deletes = [{"service": k[0], "node": k[1], "id": k[2]} for k in batch.deletes]
        while True:
            try:
                result = await self.client.batch(upserts, deletes)
                break
            except APIError as exc:
                match = _UPSERT_FIELD.match(exc.field or "")
                if exc.status != 400 or match is None:
                    raise
                index = int(match.group(1))
                if index >= len(upserts):
                    raise
                entry = batch.upserts.pop(index)
                upserts.pop(index)
                self._rejected[entry.key] = entry
                self.stats.rejected += 1
                log.error(
                    "the registry refused an instance: %s; left out until it changes",
                    exc,
                    extra={"kv": {"service": entry.service, "id": entry.id}},
                )
                if not upserts and not deletes:
                    return
        self.stats.batches += 1
        self.stats.transactions += int(result.get("transactions", 0))
        self.stats.upserts += len(batch.upserts)
        self.stats.deletes += len(batch.deletes)
        for entry in batch.upserts:
            self._rejected.pop(entry.key, None)
            self._put(entry)
        for key in batch.deletes:
            self._drop(key)
        log.debug(
            "wrote a batch",
            extra={
                "kv": {
                    "upserts": len(upserts),
                    "deletes": len(deletes),
                    "transactions": result.get("transactions"),
                }
            },
        )

    def _put(self, entry: Entry) -> None:
        moved = self._by_node_id.get((entry.node, entry.id))
        if moved is not None and moved != entry.key:
            self._drop(moved)  # the registry moved this ID to the entry's service
        self.current[entry.key] = entry
        self._by_service[entry.service].add(entry.key)
        self._by_node_id[(entry.node, entry.id)] = entry.key

    def _drop(self, key: EntryKey) -> None:
        if self.current.pop(key, None) is None:
            return
        keys = self._by_service.get(key[0])
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_service[key[0]]
        if self._by_node_id.get((key[1], key[2])) == key:
            del self._by_node_id[(key[1], key[2])]

    def status(self) -> dict[str, Any]:
        return {
            "in_sync": self.in_sync,
            "registered": len(self.current),
            "pending_services": len(self._dirty),
            **{k: v for k, v in vars(self.stats).items()},
        }


async def purge(client: RegistryClient, source: str, batch_size: int = 500) -> tuple[int, int]:
    """Delete every registry entry of `source` (a decommissioned cluster), and the traffic
    resources its CRD objects made; returns how many (instances, resources) went."""
    views = await client.instances(source=source)
    keys = sorted({(str(v["service"]), str(v["node"]), str(v["id"])) for v in views})
    todo = Plan(deletes=list(keys))
    for batch in todo.batches(batch_size):
        await client.batch([], [{"service": s, "node": n, "id": i} for s, n, i in batch.deletes])
    stored, _ = await client.resources()
    owned = [r for r in stored if r["metadata"].get("source") == source]
    for r in owned:
        await client.delete_resource(r["kind"], r["metadata"]["name"])
    return len(keys), len(owned)
