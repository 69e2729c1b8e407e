"""An etcd v3 client for trio, speaking etcd's JSON gateway through httpx.

The PyPI `etcd3` package is synchronous, unmaintained and breaks with protobuf >= 4, so Weft
talks to the `/v3/...` JSON gateway every etcd 3.4+ serves on its client URL.

Exceptions, all raised from the httpx or JSON error that caused them::

    EtcdError
    ├── EtcdUnavailable       no endpoint answered (all down, or no leader)
    ├── EtcdCompacted         a watch asked for a revision that etcd has compacted away
    ├── EtcdLeaseNotFound     the lease expired or was revoked
    ├── EtcdAuthError         etcd refused the credentials
    └── EtcdRequestError      etcd refused the request itself (carries etcd's code and message)
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import trio

from ._backoff import Backoff
from ._etcd_types import (
    _UNAUTHENTICATED,
    _UNAVAILABLE_CODES,
    Compare,
    Delete,
    EtcdAuthError,
    EtcdCompacted,
    EtcdError,
    EtcdLeaseNotFound,
    EtcdRequestError,
    EtcdTLS,
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


@dataclass
class _Auth:
    username: str
    password: str
    token: str | None = field(default=None, repr=False)


class EtcdClient:
    """A connection to an etcd cluster through any of `endpoints`, failing over between them.

    Requests that etcd may already have applied (a write whose answer was lost) are not
    retried on another member; everything that never reached a member is.
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        tls: EtcdTLS | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 5.0,
        max_connections: int = 32,
    ) -> None:
        if not endpoints:
            raise ValueError("at least one etcd endpoint is required")
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self._current = 0
        self._auth = _Auth(username, password or "") if username else None
        self._auth_lock = trio.Lock()
        self._timeout = timeout
        self._http = httpx.AsyncClient(
            verify=tls.context() if tls else True,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> EtcdClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- transport -------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        if self._auth and self._auth.token:
            return {"Authorization": self._auth.token}
        return {}

    async def _authenticate(self, endpoint: str) -> None:
        assert self._auth is not None
        resp = await self._http.post(
            endpoint + "/v3/auth/authenticate",
            content=json.dumps({"name": self._auth.username, "password": self._auth.password}),
        )
        if resp.status_code != 200:
            raise EtcdAuthError(
                f"etcd at {endpoint} refused user {self._auth.username!r}: {_error_text(resp)}"
            )
        self._auth.token = resp.json()["token"]

    async def call(
        self, path: str, body: dict[str, Any], *, idempotent: bool = True
    ) -> dict[str, Any]:
        """POST `body` to `path` on a live endpoint and return etcd's JSON answer."""
        payload = json.dumps(body, separators=(",", ":"))
        failures: list[str] = []
        reauthenticated = False
        attempts = len(self.endpoints) + 1
        while attempts > 0:
            attempts -= 1
            endpoint = self.endpoints[self._current]
            try:
                if self._auth and self._auth.token is None:
                    async with self._auth_lock:
                        if self._auth.token is None:
                            await self._authenticate(endpoint)
                resp = await self._http.post(
                    endpoint + path, content=payload, headers=self._headers()
                )
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                failures.append(f"{endpoint}: {exc or type(exc).__name__}")
                self._rotate()
                continue
            except httpx.TransportError as exc:
                if not idempotent:
                    self._rotate()
                    raise EtcdUnavailable(
                        f"etcd at {endpoint} did not answer a write "
                        f"({exc or type(exc).__name__}); it may or may not have been applied"
                    ) from exc
                failures.append(f"{endpoint}: {exc or type(exc).__name__}")
                self._rotate()
                continue
            if resp.status_code == 200:
                return json.loads(resp.content)
            code, message = _error_of(resp)
            if code == _UNAUTHENTICATED and self._auth and not reauthenticated:
                self._auth.token = None
                reauthenticated = True
                attempts += 1
                continue
            if code in _UNAVAILABLE_CODES:
                failures.append(f"{endpoint}: {message}")
                self._rotate()
                if not idempotent and code == 4:
                    raise EtcdUnavailable(f"etcd at {endpoint} timed out a write: {message}")
                continue
            raise _map_error(code, message)
        raise EtcdUnavailable("no etcd endpoint answered: " + "; ".join(failures))

    def _rotate(self) -> None:
        self._current = (self._current + 1) % len(self.endpoints)

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

    async def status(self, endpoint: str | None = None) -> dict[str, Any]:
        """etcd's maintenance status of one endpoint (default: the current one)."""
        if endpoint is None:
            return await self.call("/v3/maintenance/status", {})
        resp = await self._http.post(
            endpoint + "/v3/maintenance/status", content="{}", headers=self._headers()
        )
        if resp.status_code != 200:
            code, message = _error_of(resp)
            raise _map_error(code, message)
        return json.loads(resp.content)

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
                    self._watch_forever,
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

    async def _watch_forever(
        self,
        key: str,
        prefix: bool,
        start_revision: int,
        prev_kv: bool,
        liveness_interval: float,
        send: trio.MemorySendChannel[WatchBatch],
        status: WatchStatus | None = None,
    ) -> None:
        state = _WatchState(next_revision=start_revision, status=status)
        backoff = Backoff(initial=0.1, maximum=5.0)
        while True:
            endpoint = self.endpoints[self._current]
            try:
                await self._watch_attempt(
                    endpoint, key, prefix, prev_kv, liveness_interval, state, send
                )
            except EtcdCompacted:
                raise
            except (httpx.HTTPError, EtcdError, ValueError, KeyError, _StreamEnded) as exc:
                if state.delivered_any:
                    backoff.reset()
                log.info(
                    "etcd watch on %s broke (%s); resuming from revision %d",
                    endpoint,
                    exc or type(exc).__name__,
                    state.next_revision,
                )
            if status is not None and status.connected:
                status.connected = False
                status.down_since = trio.current_time()
            self._rotate()
            state.delivered_any = False
            await trio.sleep(backoff.next())

    async def _watch_attempt(
        self,
        endpoint: str,
        key: str,
        prefix: bool,
        prev_kv: bool,
        liveness_interval: float,
        state: _WatchState,
        send: trio.MemorySendChannel[WatchBatch],
    ) -> None:
        # A member cut off from the others keeps a watch stream open and silent; a status
        # probe on the same member is how the watcher notices and moves on.
        failure: Exception | None = None
        silent = False

        async def probe() -> None:
            nonlocal silent
            misses = 0
            while True:
                await trio.sleep(liveness_interval)
                try:
                    with trio.fail_after(liveness_interval):
                        await self.status(endpoint)
                    misses = 0
                except (trio.TooSlowError, httpx.HTTPError, EtcdError, ValueError):
                    misses += 1
                    if misses >= 2:
                        log.warning(
                            "etcd endpoint %s stopped answering; moving the watch", endpoint
                        )
                        silent = True
                        nursery.cancel_scope.cancel()
                        return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(probe)
            try:
                await self._watch_once(endpoint, key, prefix, prev_kv, state, send)
            except Exception as exc:
                failure = exc
            nursery.cancel_scope.cancel()
        if failure is not None:
            raise failure
        if silent:
            raise _StreamEnded("endpoint stopped answering status probes")

    async def _watch_once(
        self,
        endpoint: str,
        key: str,
        prefix: bool,
        prev_kv: bool,
        state: _WatchState,
        send: trio.MemorySendChannel[WatchBatch],
    ) -> None:
        create: dict[str, Any] = {
            "key": _b64(key),
            "start_revision": str(state.next_revision),
            "progress_notify": True,
            # etcd splits a huge response (one txn deleting 30,000 keys) into fragments of at
            # most --max-request-bytes; each parses in milliseconds instead of one long stall.
            "fragment": True,
        }
        if prefix:
            create["range_end"] = _b64(prefix_end(key))
        if prev_kv:
            create["prev_kv"] = True
        timeout = httpx.Timeout(self._timeout, read=None)
        async with self._http.stream(
            "POST",
            endpoint + "/v3/watch",
            content=json.dumps({"create_request": create}),
            headers=self._headers(),
            timeout=timeout,
        ) as resp:
            if resp.status_code != 200:
                await resp.aread()
                code, message = _error_of(resp)
                if code == _UNAUTHENTICATED and self._auth:
                    self._auth.token = None
                    await self._authenticate(endpoint)
                    raise _StreamEnded("re-authenticated")
                raise _map_error(code, message)
            pending: list[Event] = []
            async for line in resp.aiter_lines():
                if not line.strip():
                    continue
                message = json.loads(line)
                if "error" in message:
                    error = message["error"]
                    raise _StreamEnded(str(error.get("message", error)))
                result = message.get("result", {})
                compact = int(result.get("compact_revision", 0) or 0)
                if compact:
                    raise EtcdCompacted(state.next_revision, compact)
                revision = int(result.get("header", {}).get("revision", 0))
                if result.get("canceled"):
                    raise _StreamEnded(result.get("cancel_reason", "watch canceled by etcd"))
                raw_events = result.get("events") or []
                events: list[Event] = []
                for start in range(0, len(raw_events), _DECODE_CHUNK):
                    if start:
                        # One recursive delete can bring 30,000 events in one message: decode
                        # them in chunks so the loop keeps serving meanwhile.
                        await trio.lowlevel.checkpoint()
                    events.extend(
                        Event(
                            type="DELETE" if ev.get("type") == "DELETE" else "PUT",
                            kv=KeyValue.from_json(ev["kv"]),
                            prev_kv=KeyValue.from_json(ev["prev_kv"])
                            if ev.get("prev_kv")
                            else None,
                        )
                        for ev in raw_events[start : start + _DECODE_CHUNK]
                    )
                if result.get("created"):
                    if state.status is not None:
                        state.status.connected = True
                        state.status.down_since = 0.0
                        state.status.epoch += 1
                    continue
                if result.get("fragment"):
                    # More of this revision follows: deliver the revision whole, and never
                    # resume from its middle.
                    pending.extend(events)
                    continue
                if pending:
                    events = pending + events
                    pending = []
                if events:
                    state.next_revision = events[-1].kv.mod_revision + 1
                    state.delivered_any = True
                elif revision >= state.next_revision:
                    state.next_revision = revision + 1
                await send.send(WatchBatch(revision=revision, events=events))
            raise _StreamEnded("etcd closed the watch stream")


@dataclass
class _WatchState:
    next_revision: int
    delivered_any: bool = False
    status: WatchStatus | None = None


_DECODE_CHUNK = 1000


class _StreamEnded(Exception):
    pass


def unwrap_group(group: BaseExceptionGroup) -> BaseException:
    """The one exception inside a (nested) group of one, else the group itself.

    trio wraps everything a nursery raises; callers of this module want the error itself.
    """
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _error_of(resp: httpx.Response) -> tuple[int, str]:
    try:
        body = json.loads(resp.content)
    except ValueError:
        return (14 if resp.status_code >= 500 else 0), f"HTTP {resp.status_code}: {resp.text[:200]}"
    if "error" in body and isinstance(body["error"], dict):
        body = body["error"]
    return int(body.get("code", 0)), str(body.get("message") or body.get("error") or body)


def _error_text(resp: httpx.Response) -> str:
    return _error_of(resp)[1]


def _map_error(code: int, message: str) -> EtcdError:
    if "lease not found" in message:
        return EtcdLeaseNotFound(message)
    if code == _UNAUTHENTICATED or "authentication failed" in message:
        return EtcdAuthError(message)
    if code in _UNAVAILABLE_CODES:
        return EtcdUnavailable(message)
    return EtcdRequestError(code, message)
