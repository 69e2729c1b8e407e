"""The traffic CRDs: find which the cluster serves, watch them, keep the registry equal.

    discovery   GET /apis/{group}/{version} for each kind's versions, most preferred first;
                404 (no CRD) is logged once and asked again every `--resync` and on SIGHUP,
                so a CRD installed later is watched within one resync, without a restart
    informers   one per served kind, list + watch (the same Informer as Services and Pods)
    writer      (leader only) after a short coalescing pause, or every `--resync`: compile
                every object, read the registry's resources, and write the difference for
                the adapter's own source only: one POST /v1/resources per changed group of
                objects (see `_traffic_objects`: so a group is applied whole or not at all),
                one DELETE per resource of its source that no object makes any more

The conflict rule is the operator's: a resource of the same kind and name that is not of this
adapter's source (applied with `weft apply`, or another cluster's) is never replaced or
deleted; the group that would make it is skipped, logged. The registry enforces the same.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import trio

from registry import importers
from registry.client import APIError, RegistryClient, ServerUnreachable

from ._backoff import Backoff
from ._errors import KubeError, KubeUnavailable, NotFound
from ._informer import Informer
from ._kube import KubeClient
from ._problems import Problems
from ._traffic_compile import (
    ORIGIN_LABEL,
    GroupKey,
    ResourceKey,
    describe_group,
    resource_key,
)
from ._traffic_objects import TRAFFIC_KINDS, CrdKind, Plan, TrafficObjects, watch_kind

log = logging.getLogger("weft.k8s.traffic")


@dataclass
class TrafficStats:
    passes: int = 0
    applied: int = 0  # groups of objects written
    deleted: int = 0  # resources removed
    skipped: int = 0  # groups skipped (invalid, or a resource that is not ours)
    warnings: int = 0  # importer warnings logged
    errors: int = 0


def _comparable(doc: dict[str, Any]) -> tuple[Any, Any, Any]:
    meta = doc.get("metadata") or {}
    return doc.get("apiVersion"), meta.get("labels") or {}, doc.get("spec")


class TrafficSync:
    def __init__(
        self,
        kube: KubeClient,
        registry: RegistryClient,
        *,
        source: str,
        problems: Problems,
        watch_timeout: float,
        resync: float,
        coalesce: float,
        naming: importers.Naming | None = None,
    ) -> None:
        self.kube = kube
        self.registry = registry
        self.source = source
        self.problems = problems
        self.watch_timeout = watch_timeout
        self.resync = resync
        self.coalesce = coalesce
        self.objects = TrafficObjects(self.mark, naming)
        self.informers: dict[str, Informer] = {}
        self.served: dict[str, str] = {}  # kind -> the version watched
        self.stats = TrafficStats()
        self.discovered = trio.Event()
        self._changed = trio.Event()
        self._discover_now = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._logged: dict[str, str] = {}  # subject -> the skip last logged
        self._reported: set[str] = set()
        self.owned = 0

    def mark(self) -> None:
        self._changed.set()

    def relist_soon(self) -> None:
        """SIGHUP: discover again now and relist what is watched."""
        self._discover_now.set()
        for informer in self.informers.values():
            informer.relist_soon()
        self.mark()

    # -- discovery and informers (every replica) ---------------------------------------------

    async def watch(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            missing_logged: set[str] = set()
            while True:
                for crd in TRAFFIC_KINDS:
                    if crd.key in self.informers:
                        continue
                    version = await self._served_version(crd)
                    if version is None:
                        if crd.key not in missing_logged:
                            missing_logged.add(crd.key)
                            log.info(
                                "%s (%s) is not served by this cluster: not watched; asked "
                                "again every resync",
                                crd.name,
                                crd.group,
                            )
                        continue
                    self._start(crd, version)
                self.discovered.set()
                self._discover_now = trio.Event()
                with trio.move_on_after(self.resync):
                    await self._discover_now.wait()

    async def _served_version(self, crd: CrdKind) -> str | None:
        backoff = Backoff()
        for version in crd.versions:
            while True:
                try:
                    found = await self.kube.request("GET", f"/apis/{crd.group}/{version}")
                    break
                except NotFound:
                    found = None
                    break
                except (KubeUnavailable, KubeError) as exc:
                    # Not a "no": only a 404 says the CRD is absent. Ask again.
                    delay = backoff.next()
                    log.warning("discovery of %s: %s; retrying in %.1fs", crd.name, exc, delay)
                    await trio.sleep(delay)
            names = [r.get("name") for r in (found or {}).get("resources") or []]
            if crd.plural in names:
                return version
        return None

    def _start(self, crd: CrdKind, version: str) -> None:
        assert self._nursery is not None
        informer = Informer(
            self.kube,
            watch_kind(crd, version),
            self.objects,
            problems=self.problems,
            watch_timeout=self.watch_timeout,
            resync=self.resync,
        )
        self.informers[crd.key] = informer
        self.served[crd.key] = version
        log.info("watching %s %s/%s", crd.name, crd.group, version)
        self._nursery.start_soon(informer.run)

    def synced(self) -> bool:
        return self.discovered.is_set() and all(i.synced.is_set() for i in self.informers.values())

    # -- the writer (leader only) ------------------------------------------------------------

    async def lead(self) -> None:
        backoff = Backoff(maximum=10.0)
        await self.discovered.wait()
        while True:
            for informer in list(self.informers.values()):  # one started late must list first
                await informer.synced.wait()
            self._changed = trio.Event()
            try:
                await self.sync_once()
                backoff.reset()
                delay = self.resync
            except (ServerUnreachable, APIError) as exc:
                self.stats.errors += 1
                delay = backoff.next()
                log.warning("traffic resources: %s; retrying in %.1fs", exc, delay)
            with trio.move_on_after(delay):
                await self._changed.wait()
                await trio.sleep(self.coalesce)

    async def sync_once(self) -> None:
        self.stats.passes += 1
        plan = self.objects.plan()
        stored, _ = await self.registry.resources()
        ours: dict[ResourceKey, dict[str, Any]] = {}
        others: dict[ResourceKey, str] = {}
        for doc in stored:
            rkey = resource_key(doc)
            owner = doc["metadata"].get("source", "")
            if owner == self.source:
                ours[rkey] = doc
            else:
                others[rkey] = f"source {owner!r}" if owner else "an operator (weft apply)"
        self._reported = set()
        for key, docs in list(plan.groups.items()):
            # Only the resources someone else holds are left out: the rest of the group's
            # resources are whole on their own (a DestinationRule's Subsets beside an
            # operator's Route for the same service).
            for d in docs:
                if (k := resource_key(d)) in others:
                    who = (d["metadata"].get("labels") or {}).get(ORIGIN_LABEL)
                    self._report(
                        who or describe_group(key),
                        f"{k[0]} {k[1]} belongs to {others[k]}; left alone (the operator wins)",
                    )
            plan.groups[key] = [d for d in docs if resource_key(d) not in others]
        self._log_outcome(plan)
        wanted = plan.resources()
        for gone in sorted(set(ours) - set(wanted)):
            await self._delete(gone)
        for key, docs in sorted(plan.groups.items()):
            current = [ours.get(resource_key(d)) for d in docs]
            if all(
                c is not None and _comparable(c) == _comparable(d)
                for c, d in zip(current, docs, strict=True)
            ):
                continue
            await self._apply(key, docs)
        # A skip not reported again this pass is over: the next one is logged anew.
        self._logged = {s: r for s, r in self._logged.items() if s in self._reported}
        self.owned = len(wanted)

    async def _delete(self, key: ResourceKey) -> None:
        try:
            await self.registry.delete_resource(*key)
        except APIError as exc:
            if exc.status not in (403, 404):  # taken over meanwhile, or already gone: fine
                raise
        self.stats.deleted += 1
        log.info("deleted %s %s: no object makes it any more", *key)

    async def _apply(self, key: GroupKey, docs: list[dict[str, Any]]) -> bool:
        if not docs:
            return False
        try:
            await self.registry.apply_resources(docs)
        except APIError as exc:
            if exc.status not in (400, 403):
                raise
            # Refused against what is stored (another Route for the service...): skip it
            # until it or the registry changes; the next pass tries again.
            reason = "; ".join(exc.problems) or str(exc)
            self._report(describe_group(key), f"refused by the registry: {reason}")
            return False
        self.stats.applied += 1
        names = ", ".join(f"{d['kind']} {d['metadata']['name']}" for d in docs)
        log.info("%s synced: %s", describe_group(key), names)
        return True

    def _log_outcome(self, plan: Plan) -> None:
        for result in plan.compiled.values():
            subject = ", ".join(
                f"{describe_group((k,))} (resourceVersion {v})" for k, v in result.signature
            )
            for warning in result.warnings:
                before = self.problems.count
                self.problems.report(subject, f"warning: {warning}")
                self.stats.warnings += self.problems.count - before
            for note in result.notes:
                self.problems.report(subject, f"note: {note}", level=logging.INFO)
        for key, reason in plan.skipped.items():
            self._report(describe_group(key), reason)

    def _report(self, subject: str, reason: str) -> None:
        """Log a skip once while it lasts (`subject` names every object it is about)."""
        self._reported.add(subject)
        if self._logged.get(subject) == reason:
            return
        self._logged[subject] = reason
        self.stats.skipped += 1
        log.warning("%s skipped: %s", subject, reason)

    def status(self) -> dict[str, Any]:
        return {
            "watched": {
                c.key: f"{c.group}/{self.served[c.key]}"
                for c in TRAFFIC_KINDS
                if c.key in self.served
            },
            "objects": len(self.objects.objects),
            "resources": self.owned,
            **vars(self.stats),
        }
