"""An etcd v3 client for trio, speaking etcd's JSON gateway through httpx.

The PyPI `etcd3` package is synchronous, unmaintained and breaks with protobuf >= 4, so Weft
talks to the `/v3/...` JSON gateway every etcd 3.4+ serves on its client URL.

This module is the client's public face: `EtcdClient` (keys, transactions, compaction,
leases, watches) and every value and error it takes or raises. Behind it, in private modules:

    _etcd_types.py       the values (KeyValue, Put, Compare, ...) and the errors
    _etcd_transport.py   one request to whichever member answers: endpoints, credentials,
                         fail-over, which failures are retried, etcd's error answers mapped
    _etcd_watch.py       the watch that survives broken streams and members

Exceptions, all raised from the httpx or JSON error that caused them::

    EtcdError
    ├── EtcdUnavailable       no endpoint answered (all down, or no leader)
    ├── EtcdCompacted         a watch asked for a revision that etcd has compacted away
    ├── EtcdLeaseNotFound     the lease expired or was revoked
    ├── EtcdAuthError         etcd refused the credentials
    └── EtcdRequestError      etcd refused the request itself (carries etcd's code and message)
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import trio

from ._etcd_transport import EtcdTransport
from ._etcd_types import (
    Compare,
    Delete,
    EtcdAuthError,
    EtcdCompacted,
    EtcdError,
    EtcdLeaseNotFound,
    EtcdRequestError,
    EtcdUnavailable,
    Event,
    Get,
    KeyValue,
    Put,
    RangeResult,
    TxnResult,
    WatchBatch,
    WatchStatus,
    _b64,
    prefix_end,
)
from ._etcd_types import EtcdTLS as EtcdTLS
from ._etcd_watch import watch_forever

log = logging.getLogger("weft.etcd")

__all__ = [
    "Compare",
    "Delete",
    "EtcdAuthError",
    "EtcdClient",
    "EtcdCompacted",
    "EtcdError",
    "EtcdLeaseNotFound",
    "EtcdRequestError",
    "EtcdUnavailable",
    "Event",
    "Get",
    "KeyValue",
    "Put",
    "RangeResult",
    "TxnResult",
    "WatchBatch",
    "WatchStatus",
    "prefix_end",
]


class EtcdClient(EtcdTransport):
    """A connection to an etcd cluster through any of `endpoints`, failing over between them.

    Requests that etcd may already have applied (a write whose answer was lost) are not
    retried on another member; everything that never reached a member is. The connection
    itself (`call`, `status`, `aclose`) is `EtcdTransport`'s; this class adds etcd's
    key/value, transaction, lease and watch calls.
    """

    async def __aenter__(self) -> EtcdClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- key/value -------------------------------------------------------------------------

    async def get(self, key: str) -> KeyValue | None:
        result = await self.range(key)
        return result.kvs[0] if result.kvs else None

    async def range(
        self,
        key: str,
        *,
        prefix: bool = False,
        revision: int = 0,
        limit: int = 0,
        keys_only: bool = False,
        count_only: bool = False,
    ) -> RangeResult:
        body: dict[str, Any] = {"key": _b64(key)}
        if prefix:
            body["range_end"] = _b64(prefix_end(key))
        if revision:
            body["revision"] = str(revision)
        if limit:
            body["limit"] = str(limit)
        if keys_only:
            body["keys_only"] = True
        if count_only:
            body["count_only"] = True
        answer = await self.call("/v3/kv/range", body)
        return RangeResult(
            kvs=[KeyValue.from_json(kv) for kv in answer.get("kvs", ())],
            revision=int(answer["header"]["revision"]),
            count=int(answer.get("count", 0)),
            more=bool(answer.get("more", False)),
        )

    async def range_all(self, key: str, *, page: int = 5000) -> RangeResult:
        """Every key under the prefix `key`, read page by page at one consistent revision."""
        first = await self.range(key, prefix=True, limit=page)
        kvs = list(first.kvs)
        revision, more = first.revision, first.more
        while more:
            start = kvs[-1].key + "\0"
            body = {
                "key": _b64(start),
                "range_end": _b64(prefix_end(key)),
                "revision": str(revision),
                "limit": str(page),
            }
            answer = await self.call("/v3/kv/range", body)
            batch = [KeyValue.from_json(kv) for kv in answer.get("kvs", ())]
            kvs.extend(batch)
            more = bool(answer.get("more", False)) and bool(batch)
        return RangeResult(kvs=kvs, revision=revision, count=len(kvs), more=False)

    async def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        body = Put(key, value, lease).to_json()["request_put"]
        answer = await self.call("/v3/kv/put", body, idempotent=True)
        return int(answer["header"]["revision"])

    async def delete(self, key: str, *, prefix: bool = False) -> tuple[int, int]:
        """Delete a key (or a prefix); returns (number deleted, revision)."""
        body = Delete(key, prefix).to_json()["request_delete_range"]
        answer = await self.call("/v3/kv/deleterange", body)
        return int(answer.get("deleted", 0)), int(answer["header"]["revision"])

    async def txn(
        self,
        compare: Sequence[Compare] = (),
        success: Sequence[Put | Delete | Get] = (),
        failure: Sequence[Put | Delete | Get] = (),
    ) -> TxnResult:
        body: dict[str, Any] = {
            "compare": [c.to_json() for c in compare],
            "success": [op.to_json() for op in success],
            "failure": [op.to_json() for op in failure],
        }
        answer = await self.call("/v3/kv/txn", body, idempotent=False)
        return TxnResult(
            succeeded=bool(answer.get("succeeded", False)),
            revision=int(answer["header"]["revision"]),
            responses=list(answer.get("responses", ())),
        )

    async def compact(self, revision: int) -> None:
        """Drop the history before `revision` (already compacted past it: nothing to do)."""
        try:
            await self.call("/v3/kv/compaction", {"revision": str(revision)})
        except EtcdRequestError as exc:
            if "required revision has been compacted" not in exc.message:
                raise

    # -- leases ----------------------------------------------------------------------------

    async def lease_grant(self, ttl: int) -> int:
        answer = await self.call("/v3/lease/grant", {"TTL": str(ttl)}, idempotent=False)
        if answer.get("error"):
            raise EtcdRequestError(0, str(answer["error"]))
        return int(answer["ID"])

    async def lease_keepalive(self, lease_id: int) -> int:
        """Refresh a lease once; returns its new TTL or raises EtcdLeaseNotFound."""
        answer = await self.call("/v3/lease/keepalive", {"ID": str(lease_id)})
        result = answer.get("result", answer)
        ttl = int(result.get("TTL", 0))
        if ttl <= 0:
            raise EtcdLeaseNotFound(f"etcd lease {lease_id:x} has expired or was revoked")
        return ttl

    async def lease_time_to_live(self, lease_id: int) -> int:
        """Seconds the lease has left, or raises EtcdLeaseNotFound."""
        answer = await self.call("/v3/lease/timetolive", {"ID": str(lease_id)})
        ttl = int(answer.get("TTL", -1))
        if ttl < 0:
            raise EtcdLeaseNotFound(f"etcd lease {lease_id:x} has expired or was revoked")
        return ttl

    async def lease_revoke(self, lease_id: int) -> int:
        """Revoke a lease (its keys go with it); returns the revision after."""
        try:
            answer = await self.call("/v3/lease/revoke", {"ID": str(lease_id)})
            return int(answer.get("header", {}).get("revision", 0))
        except EtcdRequestError as exc:
            if "lease not found" in exc.message:
                raise EtcdLeaseNotFound(f"etcd lease {lease_id:x} does not exist") from exc
            raise

    @asynccontextmanager
    async def lease(self, ttl: int) -> AsyncIterator[int]:
        """A lease kept alive (every ttl/3 s) while the block runs, revoked after it."""
        lease_id = await self.lease_grant(ttl)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._keep_alive, lease_id, ttl)
            try:
                yield lease_id
            finally:
                nursery.cancel_scope.cancel()
                with trio.move_on_after(2) as scope:
                    scope.shield = True
                    try:
                        await self.lease_revoke(lease_id)
                    except EtcdError:
                        pass

    async def _keep_alive(self, lease_id: int, ttl: int) -> None:
        while True:
            await trio.sleep(max(ttl / 3, 0.5))
            try:
                await self.lease_keepalive(lease_id)
            except EtcdUnavailable as exc:
                log.warning("lease %x keepalive failed, retrying: %s", lease_id, exc)

    # -- watch -----------------------------------------------------------------------------

    @asynccontextmanager
    async def watch(
        self,
        key: str,
        *,
        prefix: bool = True,
        start_revision: int,
        prev_kv: bool = False,
        liveness_interval: float = 5.0,
        status: WatchStatus | None = None,
    ) -> AsyncIterator[trio.MemoryReceiveChannel[WatchBatch]]:
        """Stream changes to `key` (or its prefix) from `start_revision` on.

        Survives broken streams and failed members: it reconnects (to the next endpoint) and
        resumes from the revision after the last one delivered. If that revision has been
        compacted away, the `async with` block raises EtcdCompacted.
        """
        send, receive = trio.open_memory_channel[WatchBatch](1024)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    watch_forever,
                    self,
                    key,
                    prefix,
                    start_revision,
                    prev_kv,
                    liveness_interval,
                    send,
                    status,
                )
                try:
                    yield receive
                finally:
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            raise unwrap_group(group) from None


def unwrap_group(group: BaseExceptionGroup) -> BaseException:
    """The one exception inside a (nested) group of one, else the group itself.

    trio wraps everything a nursery raises; callers of this module want the error itself.
    """
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc
