"""What the leading registry server does for services registered straight through the API:
expire TTL checks, run their HTTP/TCP checks, and remove instances critical for longer than
their DeregisterCriticalServiceAfter. Agent-run checks are the agent's business.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import httpx
import trio

from . import checks as probes
from ._catalog import Catalog
from ._errors import RegistryError
from ._health import Streak, critical_too_long, next_status, ttl_expired
from ._mirror import Mirror
from ._model import Check, Status
from .etcd import Compare

log = logging.getLogger("weft.registry.health")

CheckKey = tuple[str, str, str, str]  # service, node, instance, check id


def _key(check: Check) -> CheckKey:
    return (check.service, check.node, check.instance, check.id)


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
    ) -> None:
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
                await self.sweep(nursery, http)
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
            if ttl_expired(check, now):
                await self._set(check, Status.CRITICAL, "TTL expired")
            elif critical_too_long(check, now):
                deregister[(check.service, check.node, check.instance)] = check
            elif check.type in ("http", "tcp") and key not in self._running:
                due = self._due.setdefault(key, now)
                if now >= due:
                    self._due[key] = now + check.interval
                    self._running.add(key)
                    nursery.start_soon(self._probe, check, http)
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
                if check.type == "http":
                    result, output = await probes.probe_http(
                        http,
                        check.http,
                        method=check.method,
                        headers=check.header,
                        timeout=check.timeout,
                        tls_skip_verify=check.tls_skip_verify,
                    )
                else:
                    result, output = await probes.probe_tcp(check.tcp, timeout=check.timeout)
            current = self.mirror.find_check(check.node, check.id) or check
            status, self._streaks[key] = next_status(
                current, result, self._streaks.get(key, Streak())
            )
            if status is not current.status:
                await self._set(current, status, output)
        finally:
            self._running.discard(key)

    async def _set(self, check: Check, status: Status, output: str) -> None:
        try:
            await self.catalog.update_check(
                check.node, check.id, status, output, expected=check, guard=self.guard
            )
        except RegistryError as exc:
            # Conflict: someone updated it meanwhile (a TTL pass); the next sweep re-decides.
            log.debug("check %s not updated: %s", check.id, exc)
