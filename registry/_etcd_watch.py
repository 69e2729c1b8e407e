"""The etcd client's watch: one stream of changes that survives broken streams and members.

`registry.etcd.EtcdClient.watch` runs `watch_forever` for its caller. Each attempt streams
`/v3/watch` from one member (through the client's own connection pool, endpoint rotation and
credentials) while a probe asks the same member for its status, because a member cut off from
the others keeps its stream open and silent. When an attempt ends for any reason but
compaction, the watch moves to the next member, with backoff, and resumes from the revision
after the last one delivered, so no revision is missed or delivered twice.

Large changes never hold the trio loop: etcd is asked for fragmented responses, which are
reassembled so a revision is delivered whole, and events are decoded 1,000 at a time.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import httpx
import trio

from ._backoff import Backoff
from ._etcd_transport import EtcdTransport, _error_of, _map_error
from ._etcd_types import (
    _UNAUTHENTICATED,
    EtcdCompacted,
    EtcdError,
    Event,
    KeyValue,
    WatchBatch,
    WatchStatus,
    _b64,
    prefix_end,
)

log = logging.getLogger("weft.etcd")


async def watch_forever(
    etcd: EtcdTransport,
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
        endpoint = etcd.endpoints[etcd._current]
        try:
            await _watch_attempt(
                etcd, endpoint, key, prefix, prev_kv, liveness_interval, state, send
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
        etcd._rotate()
        state.delivered_any = False
        await trio.sleep(backoff.next())


async def _watch_attempt(
    etcd: EtcdTransport,
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
                    await etcd.status(endpoint)
                misses = 0
            except (trio.TooSlowError, httpx.HTTPError, EtcdError, ValueError):
                misses += 1
                if misses >= 2:
                    log.warning("etcd endpoint %s stopped answering; moving the watch", endpoint)
                    silent = True
                    nursery.cancel_scope.cancel()
                    return

    async with trio.open_nursery() as nursery:
        nursery.start_soon(probe)
        try:
            await _watch_once(etcd, endpoint, key, prefix, prev_kv, state, send)
        except Exception as exc:
            failure = exc
        nursery.cancel_scope.cancel()
    if failure is not None:
        raise failure
    if silent:
        raise _StreamEnded("endpoint stopped answering status probes")


async def _watch_once(
    etcd: EtcdTransport,
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
    timeout = httpx.Timeout(etcd._timeout, read=None)
    async with etcd._http.stream(
        "POST",
        endpoint + "/v3/watch",
        content=json.dumps({"create_request": create}),
        headers=etcd._headers(),
        timeout=timeout,
    ) as resp:
        if resp.status_code != 200:
            await resp.aread()
            code, message = _error_of(resp)
            if code == _UNAUTHENTICATED and etcd._auth:
                etcd._auth.token = None
                await etcd._authenticate(endpoint)
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
                        prev_kv=KeyValue.from_json(ev["prev_kv"]) if ev.get("prev_kv") else None,
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
