"""Leader election among registry servers on an etcd lease, for duties only one may do.

Leadership is fenced by the lease twice over: the duty is cancelled when the lease's deadline
passes on the local clock (`_lease_fence.py`), whatever the keepalive call is doing; and the
duty's writes carry `Leadership.guard()`, a txn compare that the leader key is still held
under this lease, so a write etcd receives after the lease is gone is refused by etcd itself.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from ._lease_fence import LeaseFence
from .etcd import Compare, EtcdClient, EtcdError, EtcdLeaseNotFound, Put

log = logging.getLogger("weft.registry.leader")


@dataclass(frozen=True)
class Leadership:
    key: str
    lease: int

    def guard(self) -> list[Compare]:
        """Txn compares that hold only while this leadership does."""
        return [Compare("lease", self.key, "=", self.lease)]


async def lead(
    etcd: EtcdClient,
    key: str,
    identity: str,
    duty: Callable[[Leadership], Awaitable[None]],
    *,
    ttl: int = 10,
    clock: Callable[[], float] = trio.current_time,
) -> None:
    """Forever: become leader for `key` when it is free, run `duty` while leading."""
    while True:
        sent = clock()
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
        fence = LeaseFence(ttl, sent)
        log.info("leading %s", key, extra={"kv": {"identity": identity}})
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_hold, etcd, lease, ttl, fence, nursery.cancel_scope, clock)
                nursery.start_soon(_watchdog, fence, nursery.cancel_scope, clock)
                nursery.start_soon(duty, Leadership(key, lease))
        finally:
            log.info("no longer leading %s", key)
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                try:
                    await etcd.lease_revoke(lease)
                except EtcdError:
                    pass


async def _watchdog(fence: LeaseFence, scope: trio.CancelScope, clock: Callable[[], float]) -> None:
    """Cancel the duty the moment the lease may have ended, renewed or not."""
    while True:
        remaining = fence.remaining(clock())
        if remaining <= 0:
            break
        await trio.sleep(remaining)  # renewals move the deadline; look again when it comes
    log.warning("leader lease deadline passed without a renewal; stopping duties")
    scope.cancel()


async def _hold(
    etcd: EtcdClient,
    lease: int,
    ttl: int,
    fence: LeaseFence,
    scope: trio.CancelScope,
    clock: Callable[[], float],
) -> None:
    while True:
        await trio.sleep(ttl / 3)
        sent = clock()
        try:
            # An answer after the deadline is worthless: the watchdog has already stopped us.
            with trio.move_on_after(max(fence.remaining(sent), 0.01)):
                fence.renewed(sent, await etcd.lease_keepalive(lease))
        except EtcdLeaseNotFound:
            scope.cancel()
            return
        except EtcdError as exc:
            log.warning("leader lease keepalive failed: %s", exc)
