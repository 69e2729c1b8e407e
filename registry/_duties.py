"""What the leading registry server does for services registered straight through the API:
expire TTL checks, run their HTTP/TCP checks, and remove instances critical for longer than
their DeregisterCriticalServiceAfter. Agent-run checks are the agent's business.

Nothing about one check may stop the duties for all the others (the leader would crash, the
next server would take over, read the same check and crash too): each check is handled
inside its own guard, and a check that cannot be handled is marked critical with the reason.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import httpx
import trio

from . import checks as probes
from ._catalog import Catalog
from ._check_reach import CheckReach, pick
from ._errors import RegistryError
from ._health import Streak, critical_too_long, next_status, ttl_expired
from ._mirror import Mirror
from ._model import Check, Status
from .etcd import Compare

log = logging.getLogger("weft.registry.health")

CheckKey = tuple[str, str, str, str]  # service, node, instance, check id


def _key(check: Check) -> CheckKey:
    return (check.service, check.node, check.instance, check.id)


def _interval(check: Check) -> float:
    # Registration refuses a non-finite interval; a record that has one anyway is probed at
    # the slowest sane pace rather than on every sweep (NaN) or never (inf).
    value = check.interval
    return value if math.isfinite(value) and value > 0 else 60.0


class HealthDuties:
    def __init__(
        self,
        catalog: Catalog,
        mirror: Mirror,
        *,
        clock: Callable[[], float],
        interval: float = 1.0,
        max_probes: int = 64,
        guard: Sequence[Compare] = (),
        reach: CheckReach | None = None,
    ) -> None:
        self.reach = reach or CheckReach()
        self.guard = list(guard)  # the leadership's lease: etcd refuses writes once it is gone
        self.catalog = catalog
        self.mirror = mirror
        self.clock = clock
        self.interval = interval
        self._due: dict[CheckKey, float] = {}
        self._running: set[CheckKey] = set()
        self._streaks: dict[CheckKey, Streak] = {}
        self._probes = trio.CapacityLimiter(max_probes)

    async def run(self) -> None:
        async with (
            httpx.AsyncClient(follow_redirects=False) as http,
            trio.open_nursery() as nursery,
        ):
            while True:
                try:
                    await self.sweep(nursery, http)
                except Exception:  # logged and retried: the duties outlive any one sweep
                    log.exception("health sweep failed")
                await trio.sleep(self.interval)

    async def sweep(self, nursery: trio.Nursery, http: httpx.AsyncClient) -> None:
        now = self.clock()
        deregister: dict[tuple[str, str, str], Check] = {}
        live: set[CheckKey] = set()
        for check in list(self.mirror.all_checks()):
            if check.runner != "server":
                continue
            key = _key(check)
            live.add(key)
            try:
                if ttl_expired(check, now):
                    await self._set(check, Status.CRITICAL, "TTL expired")
                elif critical_too_long(check, now):
                    deregister[(check.service, check.node, check.instance)] = check
                elif check.type in ("http", "tcp") and key not in self._running:
                    due = self._due.setdefault(key, now)
                    if now >= due:
                        self._due[key] = now + _interval(check)
                        self._running.add(key)
                        nursery.start_soon(self._probe, check, http)
            except Exception as exc:
                await self._broken(check, exc)
        for (service, node, iid), check in deregister.items():
            inst = self.mirror.instance(service, node, iid)
            if inst is None:
                continue
            log.info(
                "deregistering %s: check %s critical for over %gs",
                iid,
                check.id,
                check.deregister_critical_after,
                extra={"kv": {"service": service, "node": node}},
            )
            try:
                await self.catalog.deregister(inst, guard=self.guard)
            except RegistryError as exc:
                log.warning("could not deregister %s: %s", iid, exc)
        for key in list(self._due):
            if key not in live:
                del self._due[key]
                self._streaks.pop(key, None)

    async def _probe(self, check: Check, http: httpx.AsyncClient) -> None:
        key = _key(check)
        try:
            async with self._probes:
                inst = self.mirror.instance(check.service, check.node, check.instance)
                if inst is None:
                    return
                # Checked on every probe, on what the name resolves to now (DNS rebinding).
                address, refused = await pick(self.reach, check, inst)
                if address is None:
                    current = self.mirror.find_check(check.node, check.id) or check
                    if current.status is not Status.CRITICAL or current.output != refused:
                        log.warning("check %s not run: %s", check.id, refused)
                        await self._set(current, Status.CRITICAL, refused)
                    return
                result, output = await probes.probe(check, http, connect_to=address)
            current = self.mirror.find_check(check.node, check.id) or check
            status, self._streaks[key] = next_status(
                current, result, self._streaks.get(key, Streak())
            )
            if status is not current.status:
                await self._set(current, status, output)
        except Exception as exc:
            await self._broken(check, exc)
        finally:
            self._running.discard(key)

    async def _broken(self, check: Check, exc: Exception) -> None:
        log.warning(
            "check %s could not be handled: %s: %s",
            check.id,
            type(exc).__name__,
            exc,
            extra={"kv": {"service": check.service, "node": check.node}},
        )
        try:
            if check.status is not Status.CRITICAL:
                await self._set(
                    check, Status.CRITICAL, f"check could not run: {type(exc).__name__}: {exc}"
                )
        except Exception as again:  # etcd away, or the record itself is unusable
            log.warning("could not mark check %s critical: %s", check.id, again)

    async def _set(self, check: Check, status: Status, output: str) -> None:
        try:
            await self.catalog.update_check(
                check.node, check.id, status, output, expected=check, guard=self.guard
            )
        except RegistryError as exc:
            # Conflict: someone updated it meanwhile (a TTL pass); the next sweep re-decides.
            log.debug("check %s not updated: %s", check.id, exc)
