"""Consul sessions on etcd leases, and KV locks (`?acquire=` / `?release=`) held by them.

The records and rules are in `_session_model.py`; this is the part that talks to etcd. Every
lock operation is one etcd transaction guarded on what it read (the session still exists, the
holder and the LockIndex are unchanged), so two servers never hand one lock to two sessions.

Lock-delay, as in Consul, is kept by each server in memory: when a server sees a lock
released because its session was invalidated (not by an explicit release), it refuses to
hand that key to anyone for the session's lock delay.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

import trio

from ._catalog import Catalog
from ._errors import InvalidInput, InvalidSession, NotFound, RegistryError, Unavailable
from ._fanout import Hub
from ._keys import Keys
from ._mirror import CATALOG, HEALTH, LEASES, SESSIONS, Changes, Mirror
from ._model import Status
from ._session_model import (
    SERF_HEALTH,
    LockState,
    Session,
    acquire_outcome,
    release_outcome,
)
from .etcd import Compare, Delete, EtcdClient, EtcdError, EtcdLeaseNotFound, Put

log = logging.getLogger("weft.registry.sessions")

_RECHECK_ON = {HEALTH, SESSIONS, CATALOG, LEASES}


class Sessions:
    def __init__(
        self,
        etcd: EtcdClient,
        keys: Keys,
        mirror: Mirror,
        catalog: Catalog,
        hub: Hub,
        *,
        clock: Callable[[], float] = time.monotonic,
        min_ttl: float = 10.0,
        server_node: str = "weft",
    ) -> None:
        self.etcd = etcd
        self.server_node = server_node
        self.keys = keys
        self.mirror = mirror
        self.catalog = catalog
        self.hub = hub
        self.clock = clock
        self.min_ttl = min_ttl
        self._delay_until: dict[str, float] = {}
        self._recheck = trio.Event()

    # -- reading -----------------------------------------------------------------------------

    def get(self, session_id: str) -> Session | None:
        kv = self.mirror.raw.get(self.keys.session(session_id))
        if kv is None:
            return None
        return Session.decode(
            kv.value, lease=kv.lease, create=kv.create_revision, modify=kv.mod_revision
        )

    def all(self) -> list[Session]:
        out = []
        for kv in self.mirror.raw_prefix(self.keys.session()):
            try:
                out.append(
                    Session.decode(
                        kv.value, lease=kv.lease, create=kv.create_revision, modify=kv.mod_revision
                    )
                )
            except (ValueError, KeyError, TypeError):
                log.warning("unreadable session record %s", kv.key)
        return sorted(out, key=lambda s: s.create_index)

    def index(self) -> int:
        return self.mirror.index(SESSIONS)

    def lock_state(self, key: str) -> LockState:
        held = self.mirror.raw.get(self.keys.kv_holder(key))
        count = self.mirror.raw.get(self.keys.kv_lock_index(key))
        return LockState(
            holder=held.value.decode() if held else "",
            lock_index=int(count.value) if count else 0,
        )

    def holder_lease(self, key: str) -> int:
        """The lease a plain write to `key` must keep: a lock held by a `delete` session has
        the entry on its lease, and a write that dropped it would outlive the session."""
        holder = self.lock_state(key).holder
        session = self.get(holder) if holder else None
        return session.lease if session is not None and session.behavior == "delete" else 0

    # -- lifecycle ---------------------------------------------------------------------------

    def on_changes(self, changes: Changes) -> None:
        """Fed every batch the mirror applied: start lock-delays of invalidated locks, and
        have sessions checked again when checks or sessions changed."""
        if changes.topics & _RECHECK_ON:
            self._recheck.set()
        if not changes.invalidated:
            return
        now = self.clock()
        if len(self._delay_until) > 10_000:
            self._delay_until = {k: t for k, t in self._delay_until.items() if t > now}
        for key, delay in changes.invalidated.items():
            if delay > 0:
                self._delay_until[key] = now + delay

    def live_nodes(self) -> set[str]:
        """The nodes whose `serfHealth` passes. Weft has no gossip: a node is alive while
        something keeps it in the catalog. The server's own node always; a node declared by
        `/v1/catalog/register`; a node with instances; a node whose agent holds a lease (an
        agent that stops renewing loses it, which fails the check as a dead Consul agent
        fails serfHealth)."""
        alive = {self.server_node, *self.mirror.nodes, *self.mirror.by_node}
        for kv in self.mirror.raw_prefix(self.keys.prefix + "leases/"):
            try:
                alive.add(str(json.loads(kv.value).get("node") or ""))
            except (ValueError, AttributeError):
                continue
        return alive

    def _check_health(self, session: Session, live_nodes: set[str] | None = None) -> str | None:
        """Why the session cannot live with its checks as they are now, or None."""
        alive = self.live_nodes() if live_nodes is None else live_nodes
        if SERF_HEALTH in session.node_checks and session.node not in alive:
            return f"check 'serfHealth' on node {session.node!r} is critical (node not alive)"
        for check_id in session.checks:
            check = self.mirror.find_check(session.node, check_id)
            if check is None:
                return f"check {check_id!r} is not registered on node {session.node!r}"
            if check.status is Status.CRITICAL:
                return f"check {check_id!r} on node {session.node!r} is critical"
        return None

    async def create(self, session: Session) -> Session:
        problem = self._check_health(session)
        if problem is not None:
            raise InvalidInput(f"Checks: cannot create the session: {problem}", field="Checks")
        try:
            lease = await self.etcd.lease_grant(session.lease_ttl)
        except EtcdError as exc:
            raise Unavailable(f"etcd could not grant the session's lease: {exc}") from exc
        try:
            await self.catalog.commit([Put(self.keys.session(session.id), session.encode(), lease)])
        except BaseException:
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                try:
                    await self.etcd.lease_revoke(lease)
                except EtcdError:
                    pass
            raise
        created = self.get(session.id)
        if created is None:
            raise Unavailable("the session was written but this server has not seen it yet")
        return created

    async def destroy(self, session_id: str) -> None:
        """End a session now: its locks are released (or their keys deleted) at once."""
        session = self.get(session_id)
        if session is None:
            return  # Consul answers true for a session that is already gone
        await self._revoke(session)

    async def _revoke(self, session: Session) -> None:
        try:
            revision = await self.etcd.lease_revoke(session.lease)
        except EtcdLeaseNotFound:
            revision = 0  # expired meanwhile: etcd removes its keys itself
        except EtcdError as exc:
            raise Unavailable(f"etcd could not end session {session.id}: {exc}") from exc
        if revision:
            await self.catalog.sync.caught_up(revision)

    async def renew(self, session_id: str) -> Session:
        session = self.get(session_id)
        if session is None:
            raise NotFound(f"Session id '{session_id}' not found", field="session")
        try:
            await self.etcd.lease_keepalive(session.lease)
        except EtcdLeaseNotFound as exc:
            raise NotFound(f"Session id '{session_id}' not found", field="session") from exc
        except EtcdError as exc:
            raise Unavailable(f"etcd could not renew session {session_id}: {exc}") from exc
        return session

    async def run(self) -> None:
        """Invalidate sessions whose checks went critical or away (every server does it; a
        revoke of a lease already gone is harmless)."""
        while True:
            self._recheck = trio.Event()  # set by a change from here on: scan again
            live_nodes = self.live_nodes()
            for session in self.all():
                problem = self._check_health(session, live_nodes)
                if problem is not None:
                    log.info(
                        "invalidating session: %s",
                        problem,
                        extra={"kv": {"session": session.id, "node": session.node}},
                    )
                    try:
                        await self._revoke(session)
                    except RegistryError as exc:
                        log.warning("could not invalidate session %s: %s", session.id, exc)
            with trio.move_on_after(30):
                await self._recheck.wait()

    # -- locks -------------------------------------------------------------------------------

    def _live_session(self, session_id: str) -> Session:
        session = self.get(session_id)
        if session is None:
            raise InvalidSession(f'invalid session "{session_id}"', field="session")
        return session

    def lock_ops(
        self, key: str, value: bytes, session_id: str, *, flags: int = 0, cas: int | None = None
    ) -> tuple[list[Put | Delete], list[Compare]] | None:
        """The guarded writes of an acquire, or None when the lock is not to be had."""
        session = self._live_session(session_id)
        if self._delay_until.get(key, 0) > self.clock():
            return None
        state = self.lock_state(key)
        ok, lock_index = acquire_outcome(state, session.id)
        if not ok:
            return None
        lease = session.lease if session.behavior == "delete" else 0
        ops, compares = self.catalog.kv_put_ops(key, value, flags=flags, cas=cas, lease=lease)
        holder_key, index_key = self.keys.kv_holder(key), self.keys.kv_lock_index(key)
        ops.append(Put(index_key, str(lock_index).encode(), lease))
        ops.append(Put(holder_key, session.id.encode(), session.lease))
        compares.append(Compare("version", self.keys.session(session.id), ">", 0))
        compares.append(_unchanged(self.mirror, holder_key))
        compares.append(_unchanged(self.mirror, index_key))
        return ops, compares

    def unlock_ops(
        self, key: str, value: bytes, session_id: str, *, flags: int = 0, cas: int | None = None
    ) -> tuple[list[Put | Delete], list[Compare]] | None:
        # As Consul's unlock: no live-session check, a session that is gone holds nothing,
        # so its release is just `false` (its locks went with it).
        if not release_outcome(self.lock_state(key), session_id):
            return None
        session = self.get(session_id)
        ops, compares = self.catalog.kv_put_ops(key, value, flags=flags, cas=cas)
        holder_key = self.keys.kv_holder(key)
        ops.append(Delete(holder_key))
        compares.append(Compare("value", holder_key, "=", session_id.encode()))
        if session is not None and session.behavior == "delete":  # the entry outlives it now
            index_key = self.keys.kv_lock_index(key)
            ops.append(Put(index_key, str(self.lock_state(key).lock_index).encode()))
        return ops, compares

    async def acquire(
        self, key: str, value: bytes, session_id: str, *, flags: int = 0, cas: int | None = None
    ) -> bool:
        return await self._guarded(
            lambda: self.lock_ops(key, value, session_id, flags=flags, cas=cas)
        )

    async def release(
        self, key: str, value: bytes, session_id: str, *, flags: int = 0, cas: int | None = None
    ) -> bool:
        return await self._guarded(
            lambda: self.unlock_ops(key, value, session_id, flags=flags, cas=cas)
        )

    async def _guarded(
        self, plan: Callable[[], tuple[list[Put | Delete], list[Compare]] | None]
    ) -> bool:
        # A guard can fail because this server's mirror was a moment behind etcd; catch up
        # to the revision etcd answered at and decide again (a few times at most).
        for _ in range(3):
            planned = plan()
            if planned is None:
                return False
            ops, compares = planned
            try:
                result = await self.catalog.commit(ops, compares)
            except NotFound as exc:  # the session's lease ended under the write
                raise InvalidSession("invalid session: it ended meanwhile") from exc
            if result.succeeded:
                return True
            await self.catalog.sync.caught_up(result.revision, timeout=1.0)
        return False


def _unchanged(mirror: Mirror, key: str) -> Compare:
    kv = mirror.raw.get(key)
    if kv is None:
        return Compare("version", key, "=", 0)
    return Compare("mod", key, "=", kv.mod_revision)
