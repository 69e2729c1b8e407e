"""Every write to the catalog: one etcd transaction each, never half-applied.

Reads come from the Mirror; writes go through the WriteBatcher (group commit) and return
once this server's Mirror includes them, so a client reads its own writes on the same server.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ._acl import Role, Token, hash_secret, new_token
from ._batcher import WriteBatcher
from ._errors import (
    Conflict,
    InvalidInput,
    InvalidSession,
    NotFound,
    RegistryError,
    Unavailable,
)
from ._keys import Keys
from ._mirror import Mirror
from ._model import Check, Instance, Status, encode_check, encode_instance, replace
from ._sync import MirrorSync
from .etcd import (
    Compare,
    Delete,
    EtcdClient,
    EtcdError,
    EtcdLeaseNotFound,
    EtcdUnavailable,
    Get,
    Put,
    TxnResult,
)

log = logging.getLogger("weft.registry.catalog")

MAX_KV_VALUE = 512 * 1024


@dataclass(frozen=True, slots=True)
class Registration:
    """An instance with its checks, as one unit of a register or batch call."""

    instance: Instance
    checks: tuple[Check, ...] = ()
    lease: int = 0


class Catalog:
    def __init__(
        self,
        etcd: EtcdClient,
        keys: Keys,
        mirror: Mirror,
        sync: MirrorSync,
        batcher: WriteBatcher,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.etcd = etcd
        self.keys = keys
        self.mirror = mirror
        self.sync = sync
        self.batcher = batcher
        self.clock = clock
        self._tokens: dict[str, tuple[int, Token]] = {}

    # -- plumbing ----------------------------------------------------------------------------

    async def _commit(
        self, ops: list[Put | Delete], compares: list[Compare] | None = None
    ) -> TxnResult:
        try:
            result = await self.batcher.submit(ops, compares)
        except EtcdLeaseNotFound as exc:
            raise NotFound(
                "the lease does not exist (it expired or was revoked); grant a new lease and "
                "register again",
                field="lease",
            ) from exc
        except EtcdUnavailable as exc:
            raise Unavailable(f"etcd is unavailable: {exc}") from exc
        except EtcdError as exc:
            raise RegistryError(f"etcd refused the write: {exc}") from exc
        if result.succeeded and not await self.sync.caught_up(result.revision):
            log.warning("write at revision %d not seen by the watch within 5s", result.revision)
        return result

    async def commit(
        self, ops: list[Put | Delete], compares: list[Compare] | None = None
    ) -> TxnResult:
        """One atomic write (for the session, lock and transaction endpoints)."""
        return await self._commit(ops, compares)

    async def transact(
        self, compares: list[Compare], ops: Sequence[Put | Delete | Get]
    ) -> TxnResult:
        """One etcd transaction that may read as well as write (Consul's /v1/txn), sent as
        it is rather than group-committed; returns once this server's mirror includes it."""
        try:
            result = await self.etcd.txn(compares, ops)
        except EtcdLeaseNotFound as exc:
            raise InvalidSession("invalid session: its lease ended meanwhile") from exc
        except EtcdUnavailable as exc:
            raise Unavailable(f"etcd is unavailable: {exc}") from exc
        except EtcdError as exc:
            raise RegistryError(f"etcd refused the transaction: {exc}") from exc
        if result.succeeded and not await self.sync.caught_up(result.revision):
            log.warning("txn at revision %d not seen by the watch within 5s", result.revision)
        return result

    def registration_ops(self, reg: Registration) -> list[Put | Delete]:
        return self._registration_ops(reg, replace_checks=False)

    def deregistration_ops(self, inst: Instance) -> list[Put | Delete]:
        return self._deregistration_ops(inst)

    # -- instances ---------------------------------------------------------------------------

    def _registration_ops(self, reg: Registration, *, replace_checks: bool) -> list[Put | Delete]:
        inst = reg.instance
        now = self.clock()
        ops: list[Put | Delete] = []
        # An instance ID is unique per node: re-registering it under another service moves it.
        moved = self.mirror.find_instance(inst.node, inst.id)
        if moved is not None and moved.service != inst.service:
            ops.append(Delete(self.keys.instance(moved.service, moved.node, moved.id)))
            ops.append(
                Delete(self.keys.instance_checks(moved.service, moved.node, moved.id), prefix=True)
            )
        ops.append(
            Put(
                self.keys.instance(inst.service, inst.node, inst.id),
                encode_instance(inst),
                reg.lease,
            )
        )
        existing = self.mirror.checks_of(inst.service, inst.node, inst.id)
        for check in reg.checks:
            old = existing.get(check.id)
            # An adapter's check status is what its source says now, so it replaces the old one.
            adapter_changed = (
                check.runner == "adapter" and old is not None and old.status is not check.status
            )
            if old is not None and old.type == check.type and not adapter_changed:
                # Re-registration (anti-entropy, restarts) keeps the state a check earned.
                check = replace(
                    check,
                    status=old.status,
                    output=old.output,
                    status_since=old.status_since,
                    expires_at=old.expires_at,
                )
            else:
                expires = (
                    now + check.ttl if check.ttl and check.status is not Status.CRITICAL else 0
                )
                check = replace(check, status_since=now, expires_at=expires)
            ops.append(
                Put(
                    self.keys.check(inst.service, inst.node, inst.id, check.id),
                    encode_check(check),
                    reg.lease,
                )
            )
        if replace_checks:
            wanted = {c.id for c in reg.checks}
            for check_id in existing:
                if check_id not in wanted:
                    ops.append(Delete(self.keys.check(inst.service, inst.node, inst.id, check_id)))
        return ops

    async def register(self, reg: Registration, *, replace_checks: bool = True) -> None:
        await self._commit(self._registration_ops(reg, replace_checks=replace_checks))

    def _deregistration_ops(self, inst: Instance) -> list[Put | Delete]:
        return [
            Delete(self.keys.instance(inst.service, inst.node, inst.id)),
            Delete(self.keys.instance_checks(inst.service, inst.node, inst.id), prefix=True),
        ]

    async def deregister(self, inst: Instance, *, guard: Sequence[Compare] = ()) -> None:
        """Remove an instance and its checks; `guard` compares must hold (or nothing changes)."""
        await self._commit(self._deregistration_ops(inst), list(guard))

    async def apply_batch(
        self, upserts: Sequence[Registration], deletes: Sequence[Instance]
    ) -> int:
        """Register and deregister many instances in as few transactions as etcd allows.

        Returns the number of etcd transactions this batch used (what the adapter's diffing
        saves): its own commits, whatever other requests were committing meanwhile.
        """
        groups: list[list[Put | Delete]] = []
        for reg in upserts:
            groups.append(self._registration_ops(reg, replace_checks=True))
        for inst in deletes:
            groups.append(self._deregistration_ops(inst))
        commits = 0
        chunk: list[Put | Delete] = []
        for ops in groups:
            if len(chunk) + len(ops) > 120:
                await self._commit(chunk)
                commits += 1
                chunk = []
            chunk.extend(ops)
        if chunk:
            await self._commit(chunk)
            commits += 1
        return commits

    # -- checks ------------------------------------------------------------------------------

    async def update_check(
        self,
        node: str,
        check_id: str,
        status: Status,
        output: str | None = None,
        *,
        expected: Check | None = None,
        guard: Sequence[Compare] = (),
    ) -> Check:
        """Set a check's status (and refresh its TTL), compare-and-swap against concurrent
        updates; `expected` makes it fail with Conflict if someone changed it first."""
        for _ in range(5):
            check = expected or self.mirror.find_check(node, check_id)
            if check is None:
                raise NotFound(f"no check {check_id!r} on node {node!r}", field="check_id")
            now = self.clock()
            updated = replace(
                check,
                status=status,
                output=check.output if output is None else output,
                status_since=check.status_since if check.status is status else now,
                expires_at=now + check.ttl if check.ttl else 0.0,
            )
            key = self.keys.check(check.service, check.node, check.instance, check.id)
            result = await self._commit(
                [Put(key, encode_check(updated), check.lease)],
                [Compare("mod", key, "=", check.modify_index), *guard],
            )
            if result.succeeded:
                return updated
            if expected is not None:
                raise Conflict(f"check {check_id!r} changed meanwhile")
            await self.sync.caught_up(self.mirror.revision + 1, timeout=0.5)
        raise Conflict(f"check {check_id!r} kept changing; try again")

    # -- maintenance -------------------------------------------------------------------------

    async def set_maintenance(self, node: str, enable: bool, reason: str) -> None:
        key = self.keys.maint(node)
        if enable:
            record = {"reason": reason, "since": self.clock()}
            await self._commit([Put(key, json.dumps(record).encode())])
        else:
            await self._commit([Delete(key)])

    # -- KV ----------------------------------------------------------------------------------

    def kv_put_ops(
        self, key: str, value: bytes, *, flags: int = 0, cas: int | None = None, lease: int = 0
    ) -> tuple[list[Put | Delete], list[Compare]]:
        """The writes and guards of one KV put (shared by PUT /v1/kv, locks and /v1/txn)."""
        if len(value) > MAX_KV_VALUE:
            raise InvalidInput(
                f"value of {len(value)} bytes is over the KV limit of {MAX_KV_VALUE} bytes",
                field="value",
            )
        full = self.keys.kv(key)
        flags_key = self.keys.kv_flags(key)
        ops: list[Put | Delete] = [
            Put(full, value, lease),
            Put(flags_key, str(flags).encode(), lease) if flags else Delete(flags_key),
        ]
        compares = []
        if cas is not None:
            compares.append(
                Compare("version", full, "=", 0) if cas == 0 else Compare("mod", full, "=", cas)
            )
        return ops, compares

    async def kv_put(
        self, key: str, value: bytes, *, flags: int = 0, cas: int | None = None, lease: int = 0
    ) -> bool:
        ops, compares = self.kv_put_ops(key, value, flags=flags, cas=cas, lease=lease)
        return (await self._commit(ops, compares)).succeeded

    def kv_delete_ops(
        self, key: str, *, recurse: bool = False, cas: int | None = None
    ) -> tuple[list[Put | Delete], list[Compare]]:
        # A deleted key takes its flags, its lock and its LockIndex along (as in Consul).
        ops: list[Put | Delete] = [
            Delete(name, prefix=recurse)
            for name in (
                self.keys.kv(key),
                self.keys.kv_flags(key),
                self.keys.kv_lock_index(key),
                self.keys.kv_holder(key),
            )
        ]
        compares = (
            [Compare("mod", self.keys.kv(key), "=", cas)] if cas is not None and not recurse else []
        )
        return ops, compares

    async def kv_delete(self, key: str, *, recurse: bool = False, cas: int | None = None) -> bool:
        ops, compares = self.kv_delete_ops(key, recurse=recurse, cas=cas)
        return (await self._commit(ops, compares)).succeeded

    def kv_flags(self, key: str) -> int:
        kv = self.mirror.raw.get(self.keys.kv_flags(key))
        return int(kv.value) if kv else 0

    # -- traffic resources (config/<kind>/<name>) --------------------------------------------

    async def put_config(self, items: Sequence[tuple[str, str, bytes]], *, seen: int) -> int:
        """Store resources in one transaction (all or none); the revision they got.

        `seen` is the revision the batch was validated against: if any resource changed
        after it (a concurrent apply), nothing is written and Conflict says so, because the
        rules across resources (one Route per service) were checked against a stale view.
        """
        ops: list[Put | Delete] = [Put(self.keys.config(k, n), value) for k, n, value in items]
        guard = [Compare("mod", self.keys.config(), "<", seen + 1, prefix=True)]
        result = await self._commit(ops, guard)
        if not result.succeeded:
            raise Conflict("traffic resources changed while this apply was checked; apply again")
        return result.revision

    async def delete_config(self, kind: str, name: str, *, mod: int | None = None) -> int:
        """Delete one resource; NotFound if it is not stored. The revision of the delete.

        `mod`: the revision its owner was checked at; if it was rewritten since (an operator
        took it over), nothing is deleted and Conflict says so.
        """
        key = self.keys.config(kind, name)
        if key not in self.mirror.raw:
            raise NotFound(f"no {kind} named {name!r}")
        guard = [] if mod is None else [Compare("mod", key, "=", mod)]
        result = await self._commit([Delete(key)], guard)
        if not result.succeeded:
            raise Conflict(f"{kind} {name} changed while its deletion was checked; try again")
        return result.revision

    # -- leases ------------------------------------------------------------------------------

    async def grant_lease(self, ttl: int, owner: Token | None) -> int:
        if not 5 <= ttl <= 3600:
            raise InvalidInput(f"lease ttl must be 5-3600 seconds, got {ttl}", field="ttl")
        try:
            lease = await self.etcd.lease_grant(ttl)
        except EtcdError as exc:
            raise Unavailable(f"etcd could not grant a lease: {exc}") from exc
        record = {
            "ttl": ttl,
            "owner": owner.accessor if owner else "",
            "node": owner.node if owner else "",
        }
        await self._commit([Put(self.keys.lease(lease), json.dumps(record).encode(), lease)])
        return lease

    def lease_owner(self, lease: int) -> dict[str, object] | None:
        kv = self.mirror.raw.get(self.keys.lease(lease))
        return json.loads(kv.value) if kv else None

    async def keepalive(self, lease: int) -> int:
        try:
            return await self.etcd.lease_keepalive(lease)
        except EtcdLeaseNotFound as exc:
            raise NotFound(f"lease {lease:x} has expired or was revoked", field="lease") from exc
        except EtcdError as exc:
            raise Unavailable(f"etcd could not refresh lease {lease:x}: {exc}") from exc

    async def revoke(self, lease: int) -> None:
        try:
            await self.etcd.lease_revoke(lease)
        except EtcdLeaseNotFound as exc:
            raise NotFound(f"lease {lease:x} does not exist", field="lease") from exc
        except EtcdError as exc:
            raise Unavailable(f"etcd could not revoke lease {lease:x}: {exc}") from exc

    # -- tokens ------------------------------------------------------------------------------

    async def create_token(
        self,
        role: str,
        *,
        node: str = "",
        source: str = "",
        description: str = "",
        key_prefix: dict[str, str] | None = None,
        key: dict[str, str] | None = None,
        services: object = None,
        service_prefix: object = None,
    ) -> tuple[str, Token]:
        secret, token = new_token(
            role,
            node=node,
            source=source,
            description=description,
            now=self.clock(),
            key_prefix=key_prefix,
            key=key,
            services=services,
            service_prefix=service_prefix,
        )
        await self._commit([Put(self.keys.token(token.secret_hash), token.to_json())])
        return secret, token

    async def create_bootstrap_token(self) -> tuple[str, Token] | None:
        """The first operator token, only if no operator token exists (atomic across servers)."""
        secret, token = new_token("operator", description="bootstrap", now=self.clock())
        marker = self.keys.prefix + "bootstrapped"
        result = await self._commit(
            [
                Put(self.keys.token(token.secret_hash), token.to_json()),
                Put(marker, token.accessor.encode()),
            ],
            [Compare("version", marker, "=", 0)],
        )
        return (secret, token) if result.succeeded else None

    def tokens(self) -> list[Token]:
        out = []
        for kv in self.mirror.raw_prefix(self.keys.token()):
            try:
                out.append(Token.from_json(kv.value))
            except (ValueError, TypeError, KeyError):
                log.warning("unreadable token record %s", kv.key)
        return sorted(out, key=lambda t: t.created_at)

    def lookup_token(self, secret: str) -> Token | None:
        """The token record for a secret; parsed once per stored version (every request
        carries a token, so this is on the hot path of 1,000 woken watchers)."""
        kv = self.mirror.raw.get(self.keys.token(hash_secret(secret)))
        if kv is None:
            return None
        cached = self._tokens.get(kv.key)
        if cached is not None and cached[0] == kv.mod_revision:
            return cached[1]
        token = Token.from_json(kv.value)
        if len(self._tokens) > 10_000:
            self._tokens.clear()
        self._tokens[kv.key] = (kv.mod_revision, token)
        return token

    async def update_token(self, accessor: str, change: Callable[[Token], Token]) -> Token:
        """Replace a token's record with `change(record)`, compare-and-swap on its version."""
        for _ in range(5):
            kv = next(
                (
                    kv
                    for kv in self.mirror.raw_prefix(self.keys.token())
                    if Token.from_json(kv.value).accessor == accessor
                ),
                None,
            )
            if kv is None:
                raise NotFound(f"no token with accessor {accessor!r}", field="accessor")
            updated = change(Token.from_json(kv.value))
            result = await self._commit(
                [Put(kv.key, updated.to_json())], [Compare("mod", kv.key, "=", kv.mod_revision)]
            )
            if result.succeeded:
                return updated
            await self.sync.caught_up(result.revision)
        raise Unavailable("the token kept changing while updating it; try again")

    async def revoke_token(self, accessor: str) -> Token:
        """Delete a token; the last operator token is kept (409), since without one nobody
        could create tokens again except by `weft server --recover-operator`."""
        for _ in range(5):
            token = next((t for t in self.tokens() if t.accessor == accessor), None)
            if token is None:
                raise NotFound(f"no token with accessor {accessor!r}", field="accessor")
            compares = []
            if token.role is Role.OPERATOR:
                others = [
                    t for t in self.tokens() if t.role is Role.OPERATOR and t.accessor != accessor
                ]
                if not others:
                    raise Conflict(
                        f"token {accessor} is the last operator token; revoking it would lock "
                        "everyone out of the cluster. Create another operator token first "
                        "(`weft token create --role operator`), then revoke this one. If every "
                        "operator secret is lost, run `weft server --recover-operator` on a "
                        "server host.",
                        field="accessor",
                    )
                # Two revokes racing (on two servers) must not both pass: each deletes only
                # while another operator token still exists.
                compares.append(Compare("version", self.keys.token(others[0].secret_hash), ">", 0))
            result = await self._commit([Delete(self.keys.token(token.secret_hash))], compares)
            if result.succeeded:
                return token
            await self.sync.caught_up(result.revision)
        raise Unavailable("the token list kept changing while revoking; try again")
