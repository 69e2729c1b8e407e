"""Registry -> Kubernetes (`--to-k8s`): publish selected registry services in the cluster.

While this replica leads, it holds a blocking query on the registry's service list (the
index moves on any catalog or health change), reads the instances of the configured sources,
computes the Services and EndpointSlices they call for (`_export`) and writes the difference
to the API server. What it owns in the namespace is listed again every `resync` (and after
any failed write), so an object deleted or edited by hand is put back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import trio

from registry.client import APIError, RegistryClient, ServerUnreachable
from registry.lifecycle import Backoff

from ._errors import Conflict, KubeError, KubeUnavailable, NotFound
from ._export import SERVICE_LABEL, ExportRules, KubePlan, ObjKey, desired_objects, kube_plan
from ._kube import KubeClient
from ._objects import ENDPOINT_SLICES, SERVICES, Kind
from ._problems import Problems

log = logging.getLogger("weft.k8s.to_k8s")

_KINDS: dict[str, Kind[Any]] = {"services": SERVICES, "endpointslices": ENDPOINT_SLICES}


@dataclass
class ExportStats:
    passes: int = 0
    creates: int = 0
    updates: int = 0
    deletes: int = 0
    errors: int = 0
    published_services: int = 0


class ToKubernetes:
    def __init__(
        self,
        client: RegistryClient,
        kube: KubeClient,
        rules: ExportRules,
        problems: Problems,
        *,
        resync: float = 300.0,
        min_interval: float = 0.1,
        wait: str = "5m",
    ) -> None:
        self.client = client
        self.kube = kube
        self.rules = rules
        self.problems = problems
        self.resync = resync
        self.min_interval = min_interval
        self.wait = wait
        self.stats = ExportStats()
        self.existing: dict[ObjKey, dict[str, Any]] = {}
        self._foreign: set[str] = set()  # registry services whose names others use here
        self._relist = False
        self._wake = trio.Event()

    async def _until_relist(self, scope: trio.CancelScope) -> None:
        await self._wake.wait()
        scope.cancel()

    def relist_soon(self) -> None:
        """List what we own again and republish (SIGHUP): repairs hand-made changes now."""
        self._relist = True
        self._wake.set()

    async def run(self) -> None:
        backoff = Backoff()
        next_list = 0.0
        index = 0
        while True:
            try:
                if trio.current_time() >= next_list or self._relist:
                    self._relist = False
                    self._wake = trio.Event()
                    await self._list_existing()
                    next_list = trio.current_time() + self.resync
                    index = 0
                with trio.move_on_at(next_list):
                    if index:
                        async with trio.open_nursery() as nursery:
                            # Whichever comes first: a registry change or a relist request.
                            nursery.start_soon(self._until_relist, nursery.cancel_scope)
                            _, index = await self.client.get_json(
                                "/v1/registry/services", index=index, wait=self.wait
                            )
                            nursery.cancel_scope.cancel()
                    else:
                        _, index = await self.client.get_json("/v1/registry/services")
                    if not self._relist:
                        await self.publish()
                    backoff.reset()
                    await trio.sleep(self.min_interval)
            except (APIError, ServerUnreachable, KubeUnavailable, KubeError) as exc:
                self.stats.errors += 1
                delay = backoff.next()
                log.warning(
                    "publishing to Kubernetes failed: %s; retrying in %.1fs",
                    exc,
                    delay,
                    extra={"kv": {"namespace": self.rules.namespace}},
                )
                next_list = 0.0  # writes may have been partial: list what we own again
                await trio.sleep(delay)

    async def publish(self) -> None:
        views: list[dict[str, Any]] = []
        for source in sorted(self.rules.sources):
            views.extend(await self.client.instances(source=source))
        desired = {
            key: body
            for key, body in desired_objects(views, self.rules, self.problems).items()
            if _service_of(body) not in self._foreign
        }
        self.stats.published_services = sum(1 for k in desired if k[0] == "services")
        await self._apply(kube_plan(desired, self.existing))
        self.stats.passes += 1

    async def _list_existing(self) -> None:
        existing: dict[ObjKey, dict[str, Any]] = {}
        for plural, kind in _KINDS.items():
            items, _ = await self.kube.list(
                kind, self.rules.namespace, label_selector=self.rules.selector()
            )
            for item in items:
                name = (item.get("metadata") or {}).get("name")
                if name:
                    existing[(plural, name)] = item
        self.existing = existing
        self._foreign.clear()

    async def _apply(self, todo: KubePlan) -> None:
        ns = self.rules.namespace
        for plural, body in todo.creates:
            key = (plural, body["metadata"]["name"])
            if _service_of(body) in self._foreign:
                continue  # its Service belongs to someone else: no endpoints behind their back
            try:
                self.existing[key] = await self.kube.create(_KINDS[plural], ns, body)
                self.stats.creates += 1
                log.info("published", extra={"kv": {"kind": plural, "name": f"{ns}/{key[1]}"}})
            except Conflict:
                # Not in our labelled list, yet it exists: someone else's object of that name.
                self._foreign.add(_service_of(body))
                self.problems.report(
                    f"{plural} {ns}/{key[1]}",
                    "exists and is not managed by weft-k8s-adapter; not published",
                    level=logging.ERROR,
                )
            except NotFound as exc:
                raise KubeError(
                    404, "NotFound", f"{exc.message} (create namespace {ns} for --to-k8s)"
                ) from exc
        for plural, body in todo.updates:
            key = (plural, body["metadata"]["name"])
            self.existing[key] = await self.kube.replace(_KINDS[plural], ns, body)
            self.stats.updates += 1
            log.debug("updated", extra={"kv": {"kind": plural, "name": f"{ns}/{key[1]}"}})
        for plural, name in todo.deletes:
            try:
                await self.kube.delete(_KINDS[plural], ns, name)
                self.stats.deletes += 1
                log.info("unpublished", extra={"kv": {"kind": plural, "name": f"{ns}/{name}"}})
            except NotFound:
                pass
            self.existing.pop((plural, name), None)


def _service_of(body: dict[str, Any]) -> str:
    """The registry service an object we publish belongs to."""
    return str(body["metadata"].get("labels", {}).get(SERVICE_LABEL, body["metadata"]["name"]))
