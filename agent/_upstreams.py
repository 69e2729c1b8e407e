"""The registry's view of the services the host's sidecars call, kept fresh by blocking queries.

One long-poll per upstream service. When the registry is away the last answer stays: the
data plane keeps sending to the endpoints it knew ("fail static").
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import trio

from registry.client import APIError, RegistryClient, ServerUnreachable
from registry.lifecycle import Backoff

log = logging.getLogger("weft.agent.upstreams")


class UpstreamWatcher:
    def __init__(
        self,
        client: RegistryClient,
        *,
        wait: str = "5m",
        screen: Callable[[str, list[dict[str, Any]]], list[dict[str, Any]]] | None = None,
    ) -> None:
        self.client = client
        # What may go into a snapshot: bad records are dropped here, once per answer.
        self.screen = screen or (lambda name, instances: instances)
        self.wait = wait
        self.instances: dict[str, list[dict[str, Any]]] = {}
        self.known: set[str] = set()  # services with at least one answer
        self.changed = trio.Event()
        self._scopes: dict[str, trio.CancelScope] = {}
        self._nursery: trio.Nursery | None = None
        self._wanted: set[str] = set()

    def want(self, services: set[str]) -> None:
        self._wanted = set(services)
        for name in list(self._scopes):
            if name not in services:
                self._scopes.pop(name).cancel()
                self.instances.pop(name, None)
                self.known.discard(name)
        if self._nursery is not None:
            for name in services - set(self._scopes):
                self._start(name)

    def _start(self, name: str) -> None:
        assert self._nursery is not None
        scope = trio.CancelScope()
        self._scopes[name] = scope
        self._nursery.start_soon(self._watch, name, scope)

    def _signal(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for name in self._wanted - set(self._scopes):
                self._start(name)
            await trio.sleep_forever()

    async def _watch(self, name: str, scope: trio.CancelScope) -> None:
        with scope:
            index: int | None = None
            backoff = Backoff(initial=0.5, maximum=5.0)
            while True:
                try:
                    instances, new_index = await self.client.service(
                        name, index=index, wait=self.wait if index else None
                    )
                except (APIError, ServerUnreachable) as exc:
                    log.debug("upstream %s not refreshed (%s); keeping the last view", name, exc)
                    index = None
                    await trio.sleep(backoff.next())
                    continue
                backoff.reset()
                instances = self.screen(name, instances)
                # An index that went backwards (another server answered): start over.
                index = None if new_index < (index or 0) else new_index
                if self.instances.get(name) != instances or name not in self.known:
                    self.instances[name] = instances
                    self.known.add(name)
                    self._signal()
