"""An in-memory copy of everything under the registry's etcd prefix, indexed for reads.

Each server keeps one, fed by one etcd watch (see `_sync.py`). Pure: etcd events in, the set
of changed *topics* out; no I/O and no clock. A topic is a unit of data a blocking query can
wait on ("the instances and checks of service web", "the service list", "KV key a/b"), and each
topic's index is the etcd revision of the last change to it, which is what `X-Consul-Index`
reports.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from ._keys import Keys
from ._model import Check, Instance, decode_check, decode_instance
from .etcd import Event, KeyValue

log = logging.getLogger("weft.registry.mirror")

Topic = tuple[str, ...]
CATALOG: Topic = ("catalog",)  # the set of services, instances and nodes
HEALTH: Topic = ("health",)  # any check state
TOKENS: Topic = ("tokens",)
MAINT: Topic = ("maint",)
CONFIG: Topic = ("config",)
CA: Topic = ("ca",)
LEADER: Topic = ("leader",)
SESSIONS: Topic = ("sessions",)
LEASES: Topic = ("leases",)  # an agent's or adapter's lease granted or gone


def service_topic(name: str) -> Topic:
    return ("svc", name)


def kv_topic(key: str) -> Topic:
    return ("kv", key)


def config_topic(kind: str) -> Topic:
    return ("config", kind)


_TOMBSTONES_KEPT = 10_000


@dataclass
class Changes:
    topics: set[Topic] = field(default_factory=set)
    kv_keys: set[str] = field(default_factory=set)
    # KV key -> lock-delay seconds, for locks released because their session was invalidated
    # (destroyed, expired, or a check failed) rather than by an explicit release.
    invalidated: dict[str, float] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.topics or self.kv_keys)

    def merge(self, other: Changes) -> None:
        self.topics |= other.topics
        self.kv_keys |= other.kv_keys
        self.invalidated.update(other.invalidated)


InstanceKey = tuple[str, str]  # (node, instance id)


class Mirror:
    def __init__(self, keys: Keys) -> None:
        self.keys = keys
        self.revision = 0
        self.start_revision = 0
        self.instances: dict[str, dict[InstanceKey, Instance]] = {}
        self.checks: dict[str, dict[InstanceKey, dict[str, Check]]] = {}
        self.by_node: dict[str, dict[str, str]] = {}  # node -> {instance id: service}
        self.node_addresses: dict[str, str] = {}  # node -> the address its instances gave
        self.check_owner: dict[tuple[str, str], tuple[str, str]] = {}  # (node, check) -> (svc, id)
        self.kv: dict[str, KeyValue] = {}
        self.raw: dict[str, KeyValue] = {}  # tokens, leases, maint, config, ca, leader
        self.maint: dict[str, dict[str, str]] = {}
        self.nodes: dict[str, dict[str, object]] = {}  # node -> declared address, meta
        # node -> {slot: sample}: metrics samples (raw bytes, decoded only when asked for)
        self.metric_samples: dict[str, dict[str, KeyValue]] = {}
        self._index: dict[Topic, int] = {}
        self._kv_tombstones: dict[str, int] = {}
        self._tombstone_floor = 0
        self.kv_lock_changed: dict[str, int] = {}  # key -> revision its holder last changed
        # Lock releases and session ends of the batch being applied, paired by (session,
        # revision) once the batch is whole: see `_pair_invalidations`.
        self._released: dict[tuple[str, int], list[str]] = {}  # (session, rev) -> keys
        self._ended: dict[tuple[str, int], float] = {}  # (session, rev) -> lock delay

    # -- feeding -----------------------------------------------------------------------------

    def load(self, kvs: Iterable[KeyValue], revision: int) -> None:
        """Start over from a full read of the prefix at `revision`."""
        self.__init__(self.keys)  # type: ignore[misc]
        self.start_revision = revision
        for kv in kvs:
            self._apply_one(Event("PUT", kv), Changes())
        self.revision = revision

    def apply(self, events: Iterable[Event], revision: int, *, advance: bool = True) -> Changes:
        """Apply watch events; `advance=False` applies part of a batch without moving the
        mirror's revision (the sync applies big batches in chunks, see `_sync.py`)."""
        changes = Changes()
        for event in events:
            self._apply_one(event, changes)
            if advance and event.kv.mod_revision > self.revision:
                self.revision = event.kv.mod_revision
        self._pair_invalidations(changes)
        if advance:
            self.revision = max(self.revision, revision)
            self._released.clear()
            self._ended.clear()
        return changes

    def advance(self, events: Iterable[Event], revision: int) -> None:
        """Move the revision past `events` (applied with advance=False) and `revision`; the
        batch is whole, so releases and session ends still unpaired stay explicit releases."""
        top = max((event.kv.mod_revision for event in events), default=0)
        self.revision = max(self.revision, top, revision)
        self._released.clear()
        self._ended.clear()

    def _pair_invalidations(self, changes: Changes) -> None:
        """etcd removes a session and the locks on its lease in one revision: a lock whose
        session ended in the same revision was invalidated, not released (a release and a
        later destroy, even in one watch response, are two revisions). A chunked batch may
        put the two halves in different chunks, so the unpaired ones wait for the batch's
        end (`advance`). A resync's synthesized deletes all carry the read's revision: what
        vanished while the watch was away cannot be told apart, and counts as invalidated,
        the side that keeps the lock-delay's protection."""
        for pair in [p for p in self._released if p in self._ended]:
            for key in self._released.pop(pair):
                changes.invalidated[key] = self._ended[pair]

    def resync_events(self, kvs: Iterable[KeyValue], revision: int) -> list[Event]:
        """The events that turn the contents into a fresh read (after compaction): O(n)."""
        known = self._mod_revisions()
        events: list[Event] = []
        for kv in kvs:
            if known.pop(kv.key, None) != kv.mod_revision:
                events.append(Event("PUT", kv))
        # Whatever the fresh read no longer has was deleted while the watch was away.
        for key in known:
            events.append(Event("DELETE", KeyValue(key, b"", 0, revision, 0, 0)))
        return events

    def resync(self, kvs: Iterable[KeyValue], revision: int) -> Changes:
        """Replace the contents with a fresh read (after compaction), as a set of changes."""
        return self.apply(self.resync_events(kvs, revision), revision)

    def _mod_revisions(self) -> dict[str, int]:
        """Every key the mirror holds, with the revision it was last written at."""
        out = {key: kv.mod_revision for key, kv in self.raw.items()}
        kv_key = self.keys.kv
        for key, kv in self.kv.items():
            out[kv_key(key)] = kv.mod_revision
        instance_key, check_key = self.keys.instance, self.keys.check
        for service, insts in self.instances.items():
            for (node, iid), inst in insts.items():
                out[instance_key(service, node, iid)] = inst.modify_index
        for service, per_inst in self.checks.items():
            for (node, iid), checks in per_inst.items():
                for cid, check in checks.items():
                    out[check_key(service, node, iid, cid)] = check.modify_index
        return out

    def _bump(self, changes: Changes, revision: int, *topics: Topic) -> None:
        for topic in topics:
            changes.topics.add(topic)
            if revision > self._index.get(topic, 0):
                self._index[topic] = revision

    def _apply_one(self, event: Event, changes: Changes) -> None:
        kv = event.kv
        split = self.keys.split(kv.key)
        if split is None:
            return
        kind, parts = split
        rev = kv.mod_revision
        deleted = event.type == "DELETE"
        try:
            if kind == "services":
                self._apply_instance(parts, kv, deleted)
                self._bump(changes, rev, service_topic(parts[0]), CATALOG)
            elif kind == "health":
                self._apply_check(parts, kv, deleted)
                self._bump(changes, rev, service_topic(parts[0]), HEALTH)
            elif kind == "kv":
                self._apply_kv(parts[0], kv, deleted)
                changes.kv_keys.add(parts[0])
                self._bump(changes, rev, kv_topic(parts[0]))
            else:
                old = self.raw.pop(kv.key, None) if deleted else self.raw.get(kv.key)
                if not deleted:
                    self.raw[kv.key] = kv
                if kind == "kvheld":
                    # A lock taken or released changes the key's Session: its readers wake.
                    if parts[0] in self.kv:
                        self.kv_lock_changed[parts[0]] = rev
                    changes.kv_keys.add(parts[0])
                    self._bump(changes, rev, kv_topic(parts[0]))
                    if deleted and old is not None:
                        pair = (old.value.decode(), rev)
                        self._released.setdefault(pair, []).append(parts[0])
                elif kind == "nodes":
                    node = parts[0]
                    if deleted:
                        self.nodes.pop(node, None)
                    else:
                        self.nodes[node] = json.loads(kv.value)
                    services = set(self.by_node.get(node, {}).values())
                    self._bump(changes, rev, CATALOG, *(service_topic(s) for s in services))
                elif kind == "sessions":
                    self._bump(changes, rev, SESSIONS)
                    if deleted and old is not None:
                        delay = float(json.loads(old.value).get("lock_delay", 0))
                        self._ended[(parts[0], rev)] = delay
                elif kind == "leases":
                    self._bump(changes, rev, LEASES)
                if kind == "maint":
                    self._apply_maint(parts[0], kv, deleted, changes)
                elif kind == "tokens":
                    self._bump(changes, rev, TOKENS)
                elif kind == "config":
                    self._bump(changes, rev, CONFIG, config_topic(parts[0]))
                elif kind == "metrics":
                    self._apply_metrics(parts, kv, deleted)
                elif kind == "ca":
                    self._bump(changes, rev, CA)
                elif kind == "leader":
                    self._bump(changes, rev, LEADER)
        except (ValueError, TypeError, KeyError) as exc:
            # A record this version cannot read (written by hand, or by a newer Weft) is
            # skipped rather than taking the whole server down.
            log.warning("skipping unreadable record %s: %s", kv.key, exc)

    def _apply_instance(self, parts: list[str], kv: KeyValue, deleted: bool) -> None:
        service, node, iid = parts
        if deleted:
            insts = self.instances.get(service, {})
            insts.pop((node, iid), None)
            if not insts:
                self.instances.pop(service, None)
            owned = self.by_node.get(node)
            if owned is not None and owned.get(iid) == service:
                del owned[iid]
                if not owned:
                    del self.by_node[node]
                    self.node_addresses.pop(node, None)
            return
        inst = decode_instance(
            kv.value, lease=kv.lease, create=kv.create_revision, modify=kv.mod_revision
        )
        self.instances.setdefault(service, {})[(node, iid)] = inst
        self.by_node.setdefault(node, {})[iid] = service
        if inst.node_address:
            self.node_addresses[node] = inst.node_address

    def _apply_check(self, parts: list[str], kv: KeyValue, deleted: bool) -> None:
        service, node, iid, cid = parts
        if deleted:
            per_inst = self.checks.get(service, {})
            checks = per_inst.get((node, iid))
            if checks is not None:
                checks.pop(cid, None)
                if not checks:
                    del per_inst[(node, iid)]
            if not per_inst:
                self.checks.pop(service, None)
            if self.check_owner.get((node, cid)) == (service, iid):
                del self.check_owner[(node, cid)]
            return
        check = decode_check(
            kv.value, lease=kv.lease, create=kv.create_revision, modify=kv.mod_revision
        )
        self.checks.setdefault(service, {}).setdefault((node, iid), {})[cid] = check
        self.check_owner[(node, cid)] = (service, iid)

    def _apply_kv(self, key: str, kv: KeyValue, deleted: bool) -> None:
        if deleted:
            self.kv.pop(key, None)
            # Re-inserted at the end, so the dict stays in revision order and the oldest
            # tombstone is always the first: evicting one is O(1), not a scan of 10,000.
            self._kv_tombstones.pop(key, None)
            self._kv_tombstones[key] = kv.mod_revision
            if len(self._kv_tombstones) > _TOMBSTONES_KEPT:
                oldest = next(iter(self._kv_tombstones))
                self._tombstone_floor = max(self._tombstone_floor, self._kv_tombstones.pop(oldest))
        else:
            self.kv[key] = kv
            self._kv_tombstones.pop(key, None)
        if deleted and key not in self.kv:
            self.kv_lock_changed.pop(key, None)

    def _apply_metrics(self, parts: list[str], kv: KeyValue, deleted: bool) -> None:
        # No topic: nothing blocks on metrics, and a push every few seconds per node must
        # not wake anyone.
        node, slot = parts
        if deleted:
            slots = self.metric_samples.get(node, {})
            slots.pop(slot, None)
            if not slots:
                self.metric_samples.pop(node, None)
        else:
            self.metric_samples.setdefault(node, {})[slot] = kv

    def _apply_maint(self, node: str, kv: KeyValue, deleted: bool, changes: Changes) -> None:
        if deleted:
            self.maint.pop(node, None)
        else:
            self.maint[node] = json.loads(kv.value)
        services = set(self.by_node.get(node, {}).values())
        self._bump(changes, kv.mod_revision, MAINT, HEALTH, *(service_topic(s) for s in services))

    # -- reading -----------------------------------------------------------------------------

    def index(self, *topics: Topic) -> int:
        """The X-Consul-Index of a view covering `topics` (always >= 1)."""
        best = 0
        for topic in topics:
            best = max(best, self._index.get(topic, self.start_revision))
        return max(best, 1)

    def kv_prefix_index(self, prefix: str) -> int:
        best = self._tombstone_floor
        for key, kv in self.kv.items():
            if key.startswith(prefix) and kv.mod_revision > best:
                best = kv.mod_revision
        for key, rev in self._kv_tombstones.items():
            if key.startswith(prefix) and rev > best:
                best = rev
        for key, rev in self.kv_lock_changed.items():
            if key.startswith(prefix) and rev > best:
                best = rev
        return max(best or self.start_revision, 1)

    def node_address(self, node: str) -> str:
        """A node's address, the same in every view: what a registration of the node itself
        declared (`/v1/catalog/register`), else what its instances' registrations said (the
        agent's `node_address`, or the address the registration came from)."""
        record = self.nodes.get(node)
        if record is not None and record.get("address"):
            return str(record["address"])
        return self.node_addresses.get(node, "")

    def node_meta(self, node: str) -> dict[str, str]:
        record = self.nodes.get(node)
        return dict(record.get("meta", {})) if record else {}  # type: ignore[call-overload]

    def node_names(self) -> list[str]:
        return sorted(set(self.by_node) | set(self.nodes))

    def instance(self, service: str, node: str, iid: str) -> Instance | None:
        return self.instances.get(service, {}).get((node, iid))

    def checks_of(self, service: str, node: str, iid: str) -> dict[str, Check]:
        return self.checks.get(service, {}).get((node, iid), {})

    def instances_on(self, node: str) -> list[Instance]:
        out = []
        for iid, service in self.by_node.get(node, {}).items():
            inst = self.instance(service, node, iid)
            if inst is not None:
                out.append(inst)
        return out

    def find_instance(self, node: str, iid: str) -> Instance | None:
        service = self.by_node.get(node, {}).get(iid)
        return None if service is None else self.instance(service, node, iid)

    def find_check(self, node: str, check_id: str) -> Check | None:
        owner = self.check_owner.get((node, check_id))
        if owner is None:
            return None
        return self.checks_of(owner[0], node, owner[1]).get(check_id)

    def all_checks(self) -> Iterable[Check]:
        for per_inst in self.checks.values():
            for checks in per_inst.values():
                yield from checks.values()

    def raw_prefix(self, prefix: str) -> list[KeyValue]:
        return [kv for key, kv in self.raw.items() if key.startswith(prefix)]
