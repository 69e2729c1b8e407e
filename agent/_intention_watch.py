"""The mesh's intentions (`GET /v1/intentions`), kept fresh by one blocking query.

A change wakes the agent at once, so a new or deleted intention reaches the sidecars within
one blocking-query answer and one snapshot delivery (tested under 2 s). While the registry is
away the last answer stays ("fail static"); a server from before intentions (404) means the
sidecars get no intentions section and their own authorization alone decides.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from registry.client import APIError, RegistryClient, ServerUnreachable

from ._intentions import IntentionView

log = logging.getLogger("weft.agent.intentions")


class IntentionWatcher:
    def __init__(self, client: RegistryClient, *, wait: str = "5m") -> None:
        self.client = client
        self.wait = wait
        self.view: IntentionView | None = None  # None: the server has no intentions API
        self.known = False  # one answer (or a definite 404) received
        self.changed = trio.Event()
        self._body: dict[str, Any] | None = None

    def _publish(self) -> None:
        self.known = True
        self.changed.set()
        self.changed = trio.Event()

    async def run(self) -> None:
        index: int | None = None
        backoff = 0.5
        while True:
            try:
                body, new_index = await self.client.intentions(
                    index=index, wait=self.wait if index else None
                )
            except APIError as exc:
                if exc.status == 404 and not self.known:
                    log.info("the server has no /v1/intentions yet; sidecars get none")
                    self._publish()
                    await trio.sleep(30)
                    continue
                log.debug("intentions not refreshed (%s); keeping the last view", exc)
            except ServerUnreachable as exc:
                log.debug("intentions not refreshed (%s); keeping the last view", exc)
            else:
                backoff = 0.5
                index = None if new_index < (index or 0) else new_index
                if body != self._body or not self.known:
                    try:
                        view = IntentionView(body)
                    except (KeyError, TypeError, ValueError) as exc:
                        log.warning("intentions answer refused (%s); keeping the last view", exc)
                    else:
                        self._body, self.view = body, view
                        self._publish()
                continue
            index = None
            await trio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
