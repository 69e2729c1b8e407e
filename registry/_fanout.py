"""Wakes blocking queries when a topic they wait on changes: one etcd watch, many waiters.

Waiters park on trio Events keyed by topic; a change sets and forgets every Event of its
topics, so each change costs O(waiters of the changed topics), not O(all waiters).
"""

from __future__ import annotations

import trio

from ._mirror import Changes, Topic


class Hub:
    def __init__(self) -> None:
        self._by_topic: dict[Topic, set[trio.Event]] = {}
        self._by_kv_prefix: dict[str, set[trio.Event]] = {}
        self._revision_waiters: list[tuple[int, trio.Event]] = []

    @property
    def waiting(self) -> int:
        return sum(len(v) for v in self._by_topic.values()) + sum(
            len(v) for v in self._by_kv_prefix.values()
        )

    def notify(self, changes: Changes) -> None:
        for topic in changes.topics:
            for event in self._by_topic.pop(topic, ()):
                event.set()
        if changes.kv_keys and self._by_kv_prefix:
            for prefix in list(self._by_kv_prefix):
                if any(key.startswith(prefix) for key in changes.kv_keys):
                    for event in self._by_kv_prefix.pop(prefix):
                        event.set()

    def notify_revision(self, revision: int) -> None:
        if not self._revision_waiters:
            return
        still = []
        for wanted, event in self._revision_waiters:
            if wanted <= revision:
                event.set()
            else:
                still.append((wanted, event))
        self._revision_waiters = still

    async def wait_for_revision(self, revision: int, current: int, timeout: float) -> bool:
        """Wait until the mirror has applied `revision`; False on timeout."""
        if current >= revision:
            return True
        event = trio.Event()
        self._revision_waiters.append((revision, event))
        with trio.move_on_after(timeout):
            await event.wait()
            return True
        return False

    async def wait(
        self, topics: tuple[Topic, ...], *, kv_prefix: str | None = None, deadline: float
    ) -> bool:
        """Park until one of `topics` (or a KV key under `kv_prefix`) changes, or `deadline`.

        Returns True if woken by a change.
        """
        event = trio.Event()
        for topic in topics:
            self._by_topic.setdefault(topic, set()).add(event)
        if kv_prefix is not None:
            self._by_kv_prefix.setdefault(kv_prefix, set()).add(event)
        try:
            with trio.move_on_at(deadline):
                await event.wait()
                return True
            return False
        finally:
            if not event.is_set():
                for topic in topics:
                    waiters = self._by_topic.get(topic)
                    if waiters is not None:
                        waiters.discard(event)
                        if not waiters:
                            del self._by_topic[topic]
                if kv_prefix is not None:
                    waiters = self._by_kv_prefix.get(kv_prefix)
                    if waiters is not None:
                        waiters.discard(event)
                        if not waiters:
                            del self._by_kv_prefix[kv_prefix]
