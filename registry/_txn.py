"""Consul's `/v1/txn`: a list of KV, Service and Check operations run as ONE etcd transaction
(KV planning here; Service and Check planning in `_txn_catalog.py`).

Planning turns each operation into etcd guards (compares), writes and reads, against this
server's mirror; etcd then applies all of it or none of it. A guard that fails in etcd is
found again on the mirror (caught up to the revision etcd answered at), so the answer names
the operation that failed, as Consul's `Errors: [{OpIndex, What}]` does.

Limits of mapping onto one etcd transaction: each key is written at most once per
transaction, a key written earlier in the transaction cannot be checked or locked later in
it, and the whole plan must fit etcd's 128 operations per transaction. Those are refused
with a 400 naming the operation, never half-applied.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._catalog import Catalog
from ._decode import F, decode
from ._errors import InvalidInput, InvalidSession
from ._keys import Keys
from ._mirror import Mirror
from ._sessions import Sessions
from ._txn_catalog import CHECK_SHAPE, SERVICE_SHAPE, plan_check, plan_service
from ._validate import CheckRules
from .etcd import Compare, Delete, Get, KeyValue, Put

MAX_OPS = 64  # Consul's limit
ETCD_MAX_OPS = 128  # etcd's default --max-txn-ops

KV_VERBS = (
    "set",
    "cas",
    "lock",
    "unlock",
    "get",
    "get-tree",
    "check-index",
    "check-session",
    "check-not-exists",
    "delete",
    "delete-tree",
    "delete-cas",
)
KV_SHAPE: dict[str, F] = {
    "Verb": F("str"),
    "Key": F("str"),
    "Value": F("str"),
    "Flags": F("int"),
    "Index": F("int"),
    "Session": F("str"),
    "Namespace": F("any", ignored=True),
    "Partition": F("any", ignored=True),
}
OP_SHAPE: dict[str, F] = {
    "KV": F("obj", KV_SHAPE),
    "Service": F("obj", SERVICE_SHAPE),
    "Check": F("obj", CHECK_SHAPE),
    "Node": F("anymap"),
}

Results = Callable[["Outcome"], list[dict[str, Any]]]


@dataclass
class Outcome:
    """What the committed transaction returned, for building each operation's result."""

    revision: int
    reads: dict[int, list[KeyValue]]  # id() of a Get of the plan -> the keys it read


@dataclass
class Plan:
    compares: list[Compare] = field(default_factory=list)
    ops: list[Put | Delete | Get] = field(default_factory=list)
    guards: list[tuple[int, Compare, Callable[[], str]]] = field(default_factory=list)
    results: list[Results] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)  # failed while planning
    kv_writes: list[tuple[str, bool]] = field(default_factory=list)  # (key, prefix): ACLs
    instances: list[Any] = field(default_factory=list)  # (Instance) for access control
    _written: set[str] = field(default_factory=set)
    _deleted_prefixes: list[str] = field(default_factory=list)

    @property
    def read_only(self) -> bool:
        return not any(isinstance(op, Put | Delete) for op in self.ops)

    def guard(self, index: int, compare: Compare, what: Callable[[], str]) -> None:
        self.compares.append(compare)
        self.guards.append((index, compare, what))


def _b64(value: str, where: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{where}.Value: not valid base64", field=f"{where}.Value") from None


class Planner:
    def __init__(
        self,
        keys: Keys,
        mirror: Mirror,
        catalog: Catalog,
        sessions: Sessions,
        *,
        node: str,
        node_address: str,
        rules: CheckRules,
    ) -> None:
        self.keys = keys
        self.mirror = mirror
        self.catalog = catalog
        self.sessions = sessions
        self.node = node
        self.node_address = node_address
        self.rules = rules

    def plan(self, body: Any) -> Plan:
        if not isinstance(body, list):
            raise InvalidInput("body: expected a JSON list of operations", field="body")
        if len(body) > MAX_OPS:
            raise InvalidInput(
                f"body: {len(body)} operations; a transaction holds at most {MAX_OPS}",
                field="body",
            )
        plan = Plan()
        for i, raw in enumerate(body):
            where = f"[{i}]"
            op = decode(raw, OP_SHAPE, path=where, fold_case=True)
            if len(op) != 1:
                raise InvalidInput(
                    f"{where}: give exactly one of KV, Service, Node, Check", field=where
                )
            ((kind, spec),) = op.items()
            if kind == "KV":
                self._kv(plan, i, spec, f"{where}.KV")
            elif kind == "Service":
                plan_service(self, plan, i, spec, f"{where}.Service")
            elif kind == "Check":
                plan_check(self, plan, i, spec, f"{where}.Check")
            else:
                raise InvalidInput(
                    f"{where}.{kind}: {kind} operations are not supported in a transaction "
                    "here; use KV, Service and Check operations",
                    field=f"{where}.{kind}",
                )
        if len(plan.ops) > ETCD_MAX_OPS:
            raise InvalidInput(
                f"body: these operations need {len(plan.ops)} etcd operations, over etcd's "
                f"{ETCD_MAX_OPS} per transaction; split the transaction",
                field="body",
            )
        return plan

    # -- KV ------------------------------------------------------------------------------

    def claim(self, plan: Plan, key: str, where: str, *, prefix: bool = False) -> None:
        """Refuse a second write to a key (or an overlapping prefix) in one transaction."""
        clash = (
            any(k.startswith(key) for k in plan._written)
            or any(key.startswith(p) or p.startswith(key) for p in plan._deleted_prefixes)
            if prefix
            else key in plan._written or any(key.startswith(p) for p in plan._deleted_prefixes)
        )
        if clash:
            raise InvalidInput(
                f"{where}.Key: {key!r} is written twice in one transaction (Weft runs it as "
                "one etcd transaction, which writes each key once)",
                field=f"{where}.Key",
            )
        if prefix:
            plan._deleted_prefixes.append(key)
        else:
            plan._written.add(key)

    def _untouched(self, plan: Plan, key: str, where: str) -> None:
        if key in plan._written or any(key.startswith(p) for p in plan._deleted_prefixes):
            raise InvalidInput(
                f"{where}.Key: {key!r} was written earlier in this transaction; check or read "
                "it before writing it",
                field=f"{where}.Key",
            )

    def _kv(self, plan: Plan, i: int, spec: dict[str, Any], where: str) -> None:
        verb = spec.get("Verb", "")
        if verb not in KV_VERBS:
            raise InvalidInput(
                f"{where}.Verb: {verb!r} is not one of {', '.join(KV_VERBS)}", field=f"{where}.Verb"
            )
        key = spec.get("Key", "")
        if not key and verb not in ("get-tree", "delete-tree"):
            raise InvalidInput(f"{where}.Key: is required for {verb}", field=f"{where}.Key")
        value = _b64(spec["Value"], where) if spec.get("Value") else b""
        flags, index, session = spec.get("Flags", 0), spec.get("Index"), spec.get("Session", "")
        if verb in ("cas", "check-index", "delete-cas") and index is None:
            raise InvalidInput(f"{where}.Index: is required for {verb}", field=f"{where}.Index")
        if verb in ("lock", "unlock", "check-session") and not session:
            raise InvalidInput(f"{where}.Session: is required for {verb}", field=f"{where}.Session")
        full = self.keys.kv(key)
        mod_now = lambda: self._mod(full)  # noqa: E731 - read when a guard failed

        if verb in ("set", "cas", "lock", "unlock", "delete", "delete-tree", "delete-cas"):
            plan.kv_writes.append((key, verb == "delete-tree"))
        if verb in ("set", "cas"):
            self.claim(plan, key, where)
            ops, compares = self.catalog.kv_put_ops(
                key,
                value,
                flags=flags,
                cas=index if verb == "cas" else None,
                lease=self.sessions.holder_lease(key),
            )
            plan.ops.extend(ops)
            for compare in compares:
                plan.guard(i, compare, lambda: f"current modify index {mod_now()} != {index}")
            plan.results.append(self._written_entry(key, flags))
        elif verb in ("lock", "unlock"):
            self.claim(plan, key, where)
            try:
                planned = (self.sessions.lock_ops if verb == "lock" else self.sessions.unlock_ops)(
                    key, value, session, flags=flags
                )
            except InvalidSession as exc:
                plan.errors.append((i, exc.message))
                planned = None
            else:
                if planned is None:
                    plan.errors.append(
                        (
                            i,
                            f'failed to lock key "{key}", lock is already held'
                            if verb == "lock"
                            else f'failed to unlock key "{key}", lock isn\'t held, or is held '
                            "by another session",
                        )
                    )
            if planned is not None:
                ops, compares = planned
                plan.ops.extend(ops)
                for compare in compares:
                    plan.guard(i, compare, lambda: f'the lock of key "{key}" changed meanwhile')
            plan.results.append(self._written_entry(key, flags))
        elif verb in ("get", "get-tree"):
            prefix = verb == "get-tree"
            if not prefix:
                self._untouched(plan, key, where)
                plan.guard(
                    i, Compare("version", full, ">", 0), lambda: f'key "{key}" doesn\'t exist'
                )
            reads = [
                Get(name, prefix=prefix)
                for name in (
                    full,
                    self.keys.kv_flags(key),
                    self.keys.kv_lock_index(key),
                    self.keys.kv_holder(key),
                )
            ]
            plan.ops.extend(reads)
            plan.results.append(self._read_entries(reads, key))
        elif verb == "check-index":
            self._untouched(plan, key, where)
            compare = (
                Compare("version", full, "=", 0)
                if index == 0
                else Compare("mod", full, "=", int(index or 0))
            )
            plan.guard(i, compare, lambda: f"current modify index {mod_now()} != {index}")
            plan.results.append(self._current_entry(key))
        elif verb == "check-session":
            self._untouched(plan, key, where)
            holder = self.keys.kv_holder(key)
            plan.guard(
                i,
                Compare("value", holder, "=", session.encode()),
                lambda: (
                    f'failed session check for key "{key}", current session '
                    f'"{self.sessions.lock_state(key).holder}" != "{session}"'
                ),
            )
            plan.results.append(self._current_entry(key))
        elif verb == "check-not-exists":
            self._untouched(plan, key, where)
            plan.guard(i, Compare("version", full, "=", 0), lambda: f'key "{key}" exists')
            plan.results.append(lambda outcome: [])
        else:  # delete, delete-tree, delete-cas
            prefix = verb == "delete-tree"
            self.claim(plan, key, where, prefix=prefix)
            ops, compares = self.catalog.kv_delete_ops(
                key, recurse=prefix, cas=index if verb == "delete-cas" else None
            )
            plan.ops.extend(ops)
            for compare in compares:
                plan.guard(i, compare, lambda: f"current modify index {mod_now()} != {index}")
            plan.results.append(lambda outcome: [])

    def _mod(self, full: str) -> int:
        kv = self.mirror.kv.get(full[len(self.keys.kv()) :])
        return kv.mod_revision if kv else 0

    def _written_entry(self, key: str, flags: int) -> Results:
        def build(outcome: Outcome) -> list[dict[str, Any]]:
            kv = self.mirror.kv.get(key)
            lock = self.sessions.lock_state(key)
            entry: dict[str, Any] = {
                "LockIndex": lock.lock_index,
                "Key": key,
                "Flags": flags,
                "Value": None,
                "CreateIndex": kv.create_revision if kv else outcome.revision,
                "ModifyIndex": outcome.revision,
            }
            if lock.holder:
                entry["Session"] = lock.holder
            return [{"KV": entry}]

        return build

    def _current_entry(self, key: str) -> Results:
        kv, lock = self.mirror.kv.get(key), self.sessions.lock_state(key)

        def build(outcome: Outcome) -> list[dict[str, Any]]:
            entry: dict[str, Any] = {
                "LockIndex": lock.lock_index,
                "Key": key,
                "Flags": self.catalog.kv_flags(key),
                "Value": None,
                "CreateIndex": kv.create_revision if kv else 0,
                "ModifyIndex": kv.mod_revision if kv else 0,
            }
            if lock.holder:
                entry["Session"] = lock.holder
            return [{"KV": entry}]

        return build

    def _read_entries(self, reads: list[Get], key: str) -> Results:
        def build(outcome: Outcome) -> list[dict[str, Any]]:
            values, flags, locks, holders = (outcome.reads.get(id(r), []) for r in reads)
            strip = (
                len(self.keys.kv()),
                len(self.keys.kv_flags()),
                len(self.keys.kv_lock_index()),
                len(self.keys.kv_holder()),
            )
            flag_of = {kv.key[strip[1] :]: int(kv.value) for kv in flags}
            lock_of = {kv.key[strip[2] :]: int(kv.value) for kv in locks}
            holder_of = {kv.key[strip[3] :]: kv.value.decode() for kv in holders}
            out = []
            for kv in sorted(values, key=lambda kv: kv.key):
                name = kv.key[strip[0] :]
                entry: dict[str, Any] = {
                    "LockIndex": lock_of.get(name, 0),
                    "Key": name,
                    "Flags": flag_of.get(name, 0),
                    "Value": base64.b64encode(kv.value).decode() if kv.value else None,
                    "CreateIndex": kv.create_revision,
                    "ModifyIndex": kv.mod_revision,
                }
                if name in holder_of:
                    entry["Session"] = holder_of[name]
                out.append({"KV": entry})
            return out

        return build

    # -- services ------------------------------------------------------------------------


def guard_holds(mirror: Mirror, keys: Keys, compare: Compare) -> bool:
    """Whether `compare` holds on the mirror (to name the operation whose guard failed)."""
    split = keys.split(compare.key)
    current: KeyValue | None
    if split is not None and split[0] == "kv":
        current = mirror.kv.get(split[1][0])
    elif split is not None and split[0] == "health":
        service, node, iid, cid = split[1]
        check = mirror.checks_of(service, node, iid).get(cid)
        current = (
            KeyValue(compare.key, b"", check.create_index, check.modify_index, 1, check.lease)
            if check
            else None
        )
    elif split is not None and split[0] == "services":
        inst = mirror.instance(*split[1])
        current = (
            KeyValue(compare.key, b"", inst.create_index, inst.modify_index, 1, inst.lease)
            if inst
            else None
        )
    else:
        current = mirror.raw.get(compare.key)
    if current is None:
        actual: int | bytes = b"" if compare.target == "value" else 0
    elif compare.target == "version":
        actual = current.version
    elif compare.target == "mod":
        actual = current.mod_revision
    elif compare.target == "create":
        actual = current.create_revision
    elif compare.target == "lease":
        actual = current.lease
    else:
        actual = current.value
    operand = compare.operand
    if compare.op == "=":
        return actual == operand
    if compare.op == "!=":
        return actual != operand
    if compare.op == ">":
        return actual > operand  # type: ignore[operator]
    return actual < operand  # type: ignore[operator]


async def run(plan: Plan, catalog: Catalog, mirror: Mirror, keys: Keys) -> tuple[int, Any]:
    """Commit the plan in one etcd transaction: (HTTP status, Consul's answer body)."""
    if plan.errors:
        return 409, _failed(plan.errors)
    result = await catalog.transact(plan.compares, plan.ops)
    if result.succeeded:
        reads: dict[int, list[KeyValue]] = {}
        for op, response in zip(plan.ops, result.responses, strict=False):
            if isinstance(op, Get):
                found = response.get("response_range", {}).get("kvs", ())
                reads[id(op)] = [KeyValue.from_json(kv) for kv in found]
        outcome = Outcome(result.revision, reads)
        return 200, {
            "Results": [r for build in plan.results for r in build(outcome)],
            "Errors": None,
        }
    # Which guard failed: ask the mirror, caught up to the revision etcd decided at.
    await catalog.sync.caught_up(result.revision, timeout=1.0)
    errors: list[tuple[int, str]] = []
    for index, compare, what in plan.guards:
        if not guard_holds(mirror, keys, compare) and all(index != i for i, _ in errors):
            errors.append((index, what()))
    if not errors:
        first = plan.guards[0][0] if plan.guards else 0
        errors.append((first, "the data changed while the transaction ran; try again"))
    return 409, _failed(errors)


def _failed(errors: list[tuple[int, str]]) -> dict[str, Any]:
    return {"Results": None, "Errors": [{"OpIndex": i, "What": what} for i, what in errors]}
