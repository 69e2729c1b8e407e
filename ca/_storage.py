"""Where the CA state lives: a small compare-and-swap store, implemented by the caller.

The registry implements `CAStore` on etcd (one key under the `ca/` prefix, the version being the
key's mod_revision, `save` a transaction comparing it); tests use `MemoryCAStore`. The CA never
writes without naming the version it read, so N servers sharing one store cannot lose each
other's changes: the loser of a race gets StateConflict, reloads and decides again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ._errors import StateConflict


@dataclass(frozen=True, slots=True)
class Stored:
    """The stored bytes and the version they were read at (etcd: the key's mod_revision)."""

    data: bytes
    version: int


@runtime_checkable
class CAStore(Protocol):
    async def load(self) -> Stored | None:
        """The current state document and its version, or None if there is none yet."""
        ...

    async def save(self, data: bytes, expected_version: int | None) -> int:
        """Store `data` if the stored version is still `expected_version` (None: nothing is
        stored yet) and return the new version; otherwise raise StateConflict and store nothing.
        Versions only grow."""
        ...


class MemoryCAStore:
    """A CAStore in a Python object, for tests and tools. Counts saves, so tests can see writes."""

    def __init__(self) -> None:
        self._stored: Stored | None = None
        self._revision = 0
        self.saves = 0

    async def load(self) -> Stored | None:
        return self._stored

    async def save(self, data: bytes, expected_version: int | None) -> int:
        current = None if self._stored is None else self._stored.version
        if current != expected_version:
            raise StateConflict(
                f"the CA state is at version {current}, not {expected_version}: "
                "it changed since it was read; reload and retry"
            )
        self._revision += 1
        self._stored = Stored(bytes(data), self._revision)
        self.saves += 1
        return self._revision

    @property
    def raw(self) -> bytes | None:
        """The bytes as stored (what a test inspects to see nothing secret is in the clear)."""
        return None if self._stored is None else self._stored.data
