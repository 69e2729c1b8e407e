"""Rendered views, one per (view, variant) at its latest index, within a byte budget. No I/O.

Why a cache: 1,000 blocking queries woken by one change all want the same JSON; it is
rendered once. Why it is bounded the way it is: the key is chosen by the handler from the
view and the normalised query parameters that change the rendering (`?tag=` sorted, flags
as booleans), never from the raw query string, so `?x=1`, `?x=2`, ... cannot fill it; and
keys and bodies together stay under `max_bytes`, least recently used out first.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

MAX_ENTRIES = 4096


class ViewCache:
    def __init__(self, max_bytes: int, max_entries: int = MAX_ENTRIES) -> None:
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.size = 0
        self._entries: OrderedDict[Hashable, tuple[int, bytes, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable, index: int) -> bytes | None:
        """The body rendered for `key` at `index`, if it is still held."""
        entry = self._entries.get(key)
        if entry is None or entry[0] != index:
            return None
        self._entries.move_to_end(key)
        return entry[1]

    def put(self, key: Hashable, index: int, body: bytes, key_size: int) -> None:
        """Hold `body` for `key` at `index` (replacing an older index); `key_size` is what the
        key costs in bytes (its strings), counted against the budget with the body."""
        cost = key_size + len(body)
        old = self._entries.pop(key, None)
        if old is not None:
            self.size -= old[2]
        if cost > self.max_bytes:
            return
        self._entries[key] = (index, body, cost)
        self.size += cost
        while self.size > self.max_bytes or len(self._entries) > self.max_entries:
            _, (_, _, evicted) = self._entries.popitem(last=False)
            self.size -= evicted
