"""List-then-watch of one kind, kept up for as long as the adapter runs.

    list (pages)           replace the kind's whole state; remember its resourceVersion
    watch from it          apply each event; a BOOKMARK only moves the version forward
    stream ends            (server timeout, cut connection, broken line) watch again from the
                           last version seen, after a jittered backoff if it failed
    410 Gone               the version was compacted away: list again
    every `resync`         list again anyway, to repair anything a watch could have missed

An object that cannot be decoded is logged and skipped: it never deletes what the adapter
already knew under its name (a relist keeps the last good version of an unreadable object).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from ._backoff import Backoff
from ._errors import BadObject, Gone, KubeError, KubeUnavailable
from ._kube import KubeClient
from ._objects import Key, Kind, decode, raw_key, raw_resource_version
from ._problems import Problems

log = logging.getLogger("weft.k8s.informer")

EVENT_TYPES = ("ADDED", "MODIFIED", "DELETED")


class Sink(Protocol):
    def apply(self, kind: Kind[Any], event: str, obj: Any) -> None: ...
    def remove(self, kind: Kind[Any], key: Key) -> None: ...
    def replace(self, kind: Kind[Any], objects: list[Any], keep: list[Key]) -> None: ...


@dataclass
class InformerStats:
    lists: int = 0
    watches: int = 0
    events: int = 0
    bookmarks: int = 0
    gone: int = 0
    stream_errors: int = 0
    bad_objects: int = 0


class Informer:
    def __init__(
        self,
        kube: KubeClient,
        kind: Kind[Any],
        sink: Sink,
        *,
        problems: Problems,
        watch_timeout: float = 300.0,
        resync: float = 300.0,
        page: int = 500,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.kube = kube
        self.kind = kind
        self.sink = sink
        self.problems = problems
        self.watch_timeout = watch_timeout
        self.resync = resync
        self.page = page
        self.rand = rand
        self.synced = trio.Event()
        self.resource_version = ""
        self.stats = InformerStats()
        self._relist_now = False
        self._watch_scope: trio.CancelScope | None = None

    def relist_soon(self) -> None:
        """List again now (SIGHUP): the running watch is ended to make room for it."""
        self._relist_now = True
        if self._watch_scope is not None:
            self._watch_scope.cancel()

    async def run(self) -> None:
        backoff = Backoff(rand=self.rand)
        version = ""
        next_relist = 0.0
        while True:
            try:
                if not version or self._relist_now or trio.current_time() >= next_relist:
                    self._relist_now = False
                    version = await self._relist()
                    # Spread the replicas' and kinds' relists so they do not come together.
                    next_relist = trio.current_time() + self.resync * (0.9 + 0.2 * self.rand())
                    backoff.reset()
                timeout = self.watch_timeout * (0.9 + 0.2 * self.rand())
                # The server ends the stream at `timeout`; this bounds a silent dead connection.
                deadline = min(next_relist, trio.current_time() + timeout + 30)
                with trio.move_on_at(deadline) as self._watch_scope:
                    version = await self._watch(version, int(timeout), backoff)
                self._watch_scope = None
                # Cut short (resync due, SIGHUP, a silent connection): resume from what we saw.
                version = self.resource_version or version
            except Gone as exc:
                self.stats.gone += 1
                log.info(
                    "%s watch: %s; listing again",
                    self.kind.name,
                    exc.message or exc,
                    extra={"kv": {"kind": self.kind.name, "resource_version": version}},
                )
                if not version:  # the list itself was Gone (an expired continue token)
                    await trio.sleep(backoff.next())
                version = ""
            except (KubeUnavailable, KubeError) as exc:
                self.stats.stream_errors += 1
                delay = backoff.next()
                log.warning(
                    "%s: %s; retrying in %.1fs",
                    self.kind.name,
                    exc,
                    delay,
                    extra={"kv": {"kind": self.kind.name, "resource_version": version}},
                )
                await trio.sleep(delay)

    async def _relist(self) -> str:
        raw_items, version = await self.kube.list(self.kind, page=self.page)
        self.stats.lists += 1
        objects: list[Any] = []
        keep: list[Key] = []
        for raw in raw_items:
            try:
                objects.append(decode(self.kind, raw))
            except BadObject as exc:
                self._bad(exc)
                key = raw_key(raw)
                if key is not None:
                    keep.append(key)
        self.sink.replace(self.kind, objects, keep)
        self.resource_version = version
        if not self.synced.is_set():
            log.info(
                "%s: listed",
                self.kind.name,
                extra={
                    "kv": {
                        "kind": self.kind.name,
                        "count": len(objects),
                        "resource_version": version,
                    }
                },
            )
        self.synced.set()
        return version

    async def _watch(self, version: str, timeout: int, backoff: Backoff) -> str:
        self.stats.watches += 1
        stream = self.kube.watch(self.kind, version, timeout_seconds=timeout)
        async with aclosing(stream) as events:  # type: ignore[type-var]
            async for type_, raw in events:
                backoff.reset()
                if type_ == "BOOKMARK":
                    self.stats.bookmarks += 1
                    version = raw_resource_version(raw) or version
                    self.resource_version = version
                    continue
                if type_ not in EVENT_TYPES:
                    self.stats.bad_objects += 1
                    self.problems.report(
                        f"skipped a {self.kind.name} watch event", f"unknown type {type_!r}"
                    )
                    continue
                self.stats.events += 1
                version = raw_resource_version(raw) or version
                self.resource_version = version
                try:
                    obj = decode(self.kind, raw)
                except BadObject as exc:
                    self._bad(exc)
                    key = raw_key(raw)
                    if type_ == "DELETED" and key is not None and _kind_matches(self.kind, raw):
                        self.sink.remove(self.kind, key)  # gone is gone, however it looked
                    continue
                self._apply(type_, obj)
        return version

    def _apply(self, type_: str, obj: Any) -> None:
        try:
            self.sink.apply(self.kind, type_, obj)
        except Exception:
            # Decoded but still unusable in a way nobody foresaw: skip it, keep watching.
            self.stats.bad_objects += 1
            log.exception("%s %s could not be applied; skipped", self.kind.name, obj.metadata.name)

    def _bad(self, exc: BadObject) -> None:
        self.stats.bad_objects += 1
        self.problems.report("skipped a malformed object from the API server", str(exc))


def _kind_matches(kind: Kind[Any], raw: Any) -> bool:
    return isinstance(raw, dict) and raw.get("kind") in (None, kind.name)
