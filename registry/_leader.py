"""Leader election among registry servers on an etcd lease, for duties only one may do."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

from .etcd import Compare, EtcdClient, EtcdError, EtcdLeaseNotFound, Put

log = logging.getLogger("weft.registry.leader")


async def lead(
    etcd: EtcdClient,
    key: str,
    identity: str,
    duty: Callable[[], Awaitable[None]],
    *,
    ttl: int = 10,
) -> None:
    """Forever: become leader for `key` when it is free, run `duty` while leading.

    Leadership ends (and `duty` is cancelled) when the lease cannot be refreshed for a TTL,
    so two servers never run the duty for longer than one TTL at once.
    """
    while True:
        try:
            lease = await etcd.lease_grant(ttl)
            won = await etcd.txn(
                [Compare("create", key, "=", 0)], [Put(key, identity.encode(), lease)]
            )
        except EtcdError as exc:
            log.warning("leader election for %s failed: %s", key, exc)
            await trio.sleep(ttl / 3)
            continue
        if not won.succeeded:
            try:
                await etcd.lease_revoke(lease)
            except EtcdError:
                pass
            await trio.sleep(min(ttl / 3, 2.0))
            continue
        log.info("leading %s", key, extra={"kv": {"identity": identity}})
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_hold, etcd, lease, ttl, nursery.cancel_scope)
                nursery.start_soon(duty)
        finally:
            log.info("no longer leading %s", key)
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                try:
                    await etcd.lease_revoke(lease)
                except EtcdError:
                    pass


async def _hold(etcd: EtcdClient, lease: int, ttl: int, scope: trio.CancelScope) -> None:
    last_ok = trio.current_time()
    while True:
        await trio.sleep(ttl / 3)
        try:
            await etcd.lease_keepalive(lease)
            last_ok = trio.current_time()
        except EtcdLeaseNotFound:
            scope.cancel()
            return
        except EtcdError as exc:
            log.warning("leader lease keepalive failed: %s", exc)
            if trio.current_time() - last_ok > ttl:
                scope.cancel()
                return
