"""The traffic resources (`GET /v1/resources`), kept fresh by one blocking query.

A change wakes the agent at once, so a `weft apply` reaches the sidecars within the time
of one blocking-query answer and one snapshot delivery (well under 2 s). When the registry
is away the last answer stays ("fail static").
"""

from __future__ import annotations

import logging

import trio

from registry.client import APIError, RegistryClient, ServerUnreachable

from ._traffic import Resources

log = logging.getLogger("weft.agent.resources")


class ResourceWatcher:
    def __init__(self, client: RegistryClient, *, wait: str = "5m") -> None:
        self.client = client
        self.wait = wait
        self.resources = Resources(())
        self.known = False  # one answer received
        self.changed = trio.Event()
        self._docs: list[dict[str, object]] | None = None

    async def run(self) -> None:
        index: int | None = None
        backoff = 0.5
        while True:
            try:
                docs, new_index = await self.client.resources(
                    index=index, wait=self.wait if index else None
                )
            except APIError as exc:
                if exc.status == 404 and not self.known:
                    # A server from before traffic resources (a rolling upgrade): publish
                    # without routes rather than not at all, and ask again later.
                    log.info("the server has no /v1/resources yet; routing without resources")
                    self.known = True
                    self.changed.set()
                    self.changed = trio.Event()
                    await trio.sleep(30)
                    continue
                log.debug("traffic resources not refreshed (%s); keeping the last view", exc)
                index = None
                await trio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            except ServerUnreachable as exc:
                log.debug("traffic resources not refreshed (%s); keeping the last view", exc)
                index = None
                await trio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.5
            index = None if new_index < (index or 0) else new_index
            if docs != self._docs or not self.known:
                self._docs = docs
                self.resources = Resources(docs)
                self.known = True
                self.changed.set()
                self.changed = trio.Event()
