"""Campaign for the Lease and run the leader's work only while holding it.

The decisions are `_lease_state.Election`'s; this loop reads and writes the Lease every
`retry_period`, starts `lead()` when this replica becomes leader and cancels it the moment
it is not (a renewal failing for `renew_deadline`, or another holder), so a replica that
lost the Lease stops writing before anyone else can have taken it. On shutdown the Lease is
released, so the other replica takes over at its next try instead of after the duration.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from ._errors import BadObject, Conflict, KubeError, KubeUnavailable, NotFound
from ._kube import KubeClient
from ._lease_state import Action, Election, LeaseRecord
from ._objects import LEASES, decode

log = logging.getLogger("weft.k8s.election")


class LeaderElector:
    def __init__(
        self,
        kube: KubeClient,
        *,
        namespace: str,
        name: str,
        identity: str,
        lease_duration: float,
        renew_deadline: float,
        retry_period: float,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.retry_period = retry_period
        self.renew_deadline = renew_deadline
        self.wall = wall
        self.election = Election(
            identity, lease_duration=lease_duration, renew_deadline=renew_deadline
        )
        self.leading = False
        self.transitions = 0
        self._scope: trio.CancelScope | None = None

    @property
    def holder(self) -> str:
        observed = self.election.observed
        return observed.holder if observed is not None else ""

    async def run(self, lead: Callable[[], Awaitable[None]]) -> None:
        """Campaign until cancelled, running `lead()` while this replica holds the Lease."""
        try:
            async with trio.open_nursery() as nursery:
                while True:
                    await self._attempt()
                    now = trio.current_time()
                    leading = self.election.leading(now)
                    if leading:
                        if self._scope is None:
                            self._scope = trio.CancelScope()
                            nursery.start_soon(self._lead, self._scope, lead)
                        # The leader's work ends by itself at the renew deadline unless a
                        # renewal moves it: no write can happen after that, even if this
                        # loop is stuck waiting on the API server.
                        self._scope.deadline = self.election.renew_by()
                    elif self._scope is not None:
                        self._scope.cancel()
                        self._scope = None
                    self.leading = leading
                    # Candidates jitter their tries (client-go: x1.2), a leader renews on time.
                    jitter = 1.0 if leading else 1.0 + 0.2 * random.random()
                    await trio.sleep(self.retry_period * jitter)
        finally:
            self.leading = False

    async def _lead(self, scope: trio.CancelScope, lead: Callable[[], Awaitable[None]]) -> None:
        self.transitions += 1
        log.info(
            "became the leader: writing",
            extra={"kv": {"identity": self.identity, "lease": f"{self.namespace}/{self.name}"}},
        )
        try:
            with scope:
                await lead()
        finally:
            if self._scope is scope:
                self._scope = None
            log.info("stopped leading: not writing", extra={"kv": {"identity": self.identity}})

    async def _attempt(self) -> None:
        # One read and at most one write, bounded so a hung API server cannot keep a leader
        # that can no longer renew in charge past its renew deadline.
        with trio.move_on_after(max(self.retry_period, self.renew_deadline / 2)):
            try:
                record = await self._read()
                now = trio.current_time()
                self.election.observe(record, now)
                action = self.election.plan(now, self.wall())
                if action.verb != "wait":
                    await self._write(action)
            except Conflict:
                log.debug("lost a Lease race", extra={"kv": {"identity": self.identity}})
            except (KubeUnavailable, KubeError, BadObject) as exc:
                log.warning(
                    "Lease %s/%s: %s",
                    self.namespace,
                    self.name,
                    exc,
                    extra={"kv": {"identity": self.identity}},
                )

    async def _read(self) -> LeaseRecord | None:
        try:
            raw = await self.kube.get(LEASES, self.namespace, self.name)
        except NotFound:
            return None
        return LeaseRecord.from_lease(decode(LEASES, raw))

    def _body(self, action: Action) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if action.resource_version:
            metadata["resourceVersion"] = action.resource_version
        return {
            "apiVersion": LEASES.api_version,
            "kind": LEASES.name,
            "metadata": metadata,
            "spec": action.spec,
        }

    async def _write(self, action: Action) -> None:
        body = self._body(action)
        # Leadership counts from before the request: the server applied it no earlier.
        sent = trio.current_time()
        if action.verb == "create":
            raw = await self.kube.create(LEASES, self.namespace, body)
        else:
            raw = await self.kube.replace(LEASES, self.namespace, body)
        self.election.written(LeaseRecord.from_lease(decode(LEASES, raw)), sent)

    async def release(self) -> None:
        """Hand the Lease back (shutdown); quietly does nothing if it is not ours."""
        with trio.move_on_after(2.0):
            for _ in range(3):
                action = self.election.release(self.wall())
                if action.verb == "wait":
                    return
                try:
                    await self.kube.replace(LEASES, self.namespace, self._body(action))
                    log.info("released the Lease", extra={"kv": {"identity": self.identity}})
                    return
                except Conflict:
                    # A renewal cancelled in flight still landed: read the version it made.
                    try:
                        self.election.observe(await self._read(), trio.current_time())
                    except (KubeUnavailable, KubeError, BadObject) as exc:
                        log.warning("could not release the Lease: %s", exc)
                        return
                except (KubeUnavailable, KubeError) as exc:
                    log.warning("could not release the Lease: %s", exc)
                    return
