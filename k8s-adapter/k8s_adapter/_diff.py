"""What to write: the difference between wanted and registered entries, in batches (pure).

An entry that is wanted and registered unchanged costs nothing; a changed or new one is an
upsert, a registered one no longer wanted is a delete. Upserts go first, so during a rollout
the new pods are in the registry before the old ones leave it.

The registry moves an instance ID that is registered again under another service on the same
node (IDs are unique per node); a delete of the old key in the same plan would then name a
key the move already removed, so such deletes are dropped.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from ._entry import Entry, EntryKey


@dataclass
class Plan:
    upserts: list[Entry] = field(default_factory=list)
    deletes: list[EntryKey] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.upserts or self.deletes)

    def __len__(self) -> int:
        return len(self.upserts) + len(self.deletes)

    def batches(self, size: int) -> Iterator[Plan]:
        """The plan cut into batches of at most `size` entries, upserts first."""
        pending = [(True, e) for e in self.upserts] + [(False, k) for k in self.deletes]
        for start in range(0, len(pending), size):
            batch = Plan()
            for is_upsert, item in pending[start : start + size]:
                if is_upsert:
                    batch.upserts.append(item)  # type: ignore[arg-type]
                else:
                    batch.deletes.append(item)  # type: ignore[arg-type]
            yield batch


def plan(wanted: Mapping[EntryKey, Entry], current: Mapping[EntryKey, Entry]) -> Plan:
    result = Plan()
    for key in sorted(wanted):
        entry = wanted[key]
        if current.get(key) != entry:
            result.upserts.append(entry)
    moved = {(e.node, e.id) for e in result.upserts}
    for key in sorted(current):
        if key not in wanted and (key[1], key[2]) not in moved:
            result.deletes.append(key)
    return result
