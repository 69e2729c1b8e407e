"""Request summaries for whoever is watching: the admin `/tap` stream and the access log.

Publishing costs one attribute check per request while nobody watches. Subscribers get a
bounded channel; a slow reader loses summaries (counted) rather than slowing traffic.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

import trio

from ._http_plan import Observer


class Tap(Observer):
    def __init__(self, access_log: TextIO | None = None) -> None:
        self._subscribers: set[trio.MemorySendChannel[dict[str, Any]]] = set()
        self._access_log = access_log
        self.dropped = 0
        self.active = access_log is not None

    def _update(self) -> None:
        self.active = bool(self._subscribers) or self._access_log is not None

    @contextmanager
    def subscribe(
        self, capacity: int = 1024
    ) -> Iterator[trio.MemoryReceiveChannel[dict[str, Any]]]:
        send, receive = trio.open_memory_channel[dict[str, Any]](capacity)
        self._subscribers.add(send)
        self._update()
        try:
            yield receive
        finally:
            self._subscribers.discard(send)
            self._update()
            send.close()

    def publish(self, summary: dict[str, Any]) -> None:
        if self._access_log is not None:
            self._access_log.write(json.dumps(summary, separators=(",", ":")) + "\n")
        for channel in self._subscribers:
            try:
                channel.send_nowait(summary)
            except trio.WouldBlock:
                self.dropped += 1
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

    def flush(self) -> None:
        if self._access_log is not None:
            self._access_log.flush()
