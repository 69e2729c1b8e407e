"""The adapter assembled: informers, leader election, the two sync directions, the probes.

Every replica runs the informers (so a standby is warm), checks its registry token and
serves /readyz; only the elected leader writes, to the registry and (`--to-k8s`) to the
cluster. `run()` is the daemon: it serves until SIGTERM/SIGINT, when it stops writing and
hands the Lease back within the grace period; SIGHUP re-reads the registry token file and
resyncs both sides.
"""

from __future__ import annotations

import logging
import os
import socket
from importlib import metadata
from pathlib import Path
from typing import Any

import trio

from registry.client import APIError, RegistryClient, ServerUnreachable
from registry.lifecycle import Backoff, serve_until_signalled, write_ready_file

from ._cluster import ClusterState
from ._credentials import SERVICE_ACCOUNT_DIR, load
from ._election import LeaderElector
from ._errors import ConfigError
from ._export import ExportRules
from ._informer import Informer
from ._kube import KubeClient
from ._naming import Namer
from ._objects import ENDPOINT_SLICES, PODS, SERVICES, Key, Kind
from ._problems import Problems
from ._registry_sync import RegistrySync, purge
from ._selection import Selection
from ._settings import AdapterSettings, split_host_port
from ._status_http import Samples, StatusServer
from ._to_k8s import ToKubernetes
from ._traffic_sync import TrafficSync

log = logging.getLogger("weft.k8s.adapter")


def read_token(settings: AdapterSettings) -> str | None:
    if settings.registry_token_file:
        try:
            return Path(settings.registry_token_file).read_text().strip() or None
        except OSError as exc:
            raise ConfigError("registry_token_file", f"cannot read it: {exc}") from None
    return settings.registry_token or None


def _version() -> str:
    try:
        return metadata.version("weft")
    except metadata.PackageNotFoundError:
        return "dev"


class Adapter:
    def __init__(
        self,
        settings: AdapterSettings,
        *,
        service_account_dir: Path = SERVICE_ACCOUNT_DIR,
        environ: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.creds = load(
            settings.kubeconfig,
            settings.kube_context,
            service_account_dir=service_account_dir,
            environ=environ,
        )
        self.identity = settings.identity or f"{socket.gethostname()}_{os.getpid()}"
        self.problems = Problems(logging.getLogger("weft.k8s.objects"))
        self.state = ClusterState(
            Selection.of(settings.namespaces, settings.exclude_namespaces, settings.default_sync),
            Namer(settings.name_template, settings.cluster),
            cluster=settings.cluster,
            trust_domain=settings.trust_domain,
            problems=self.problems,
        )
        self.registry = RegistryClient(
            list(settings.registry),
            token=self._read_token(),
            ca_file=settings.registry_ca_file or None,
        )
        self.kube = KubeClient(
            self.creds, user_agent=f"weft-k8s-adapter/{_version()} ({self.identity})"
        )
        self.sync = RegistrySync(
            self.registry,
            self.state,
            source=settings.source,
            batch_size=settings.batch_size,
            coalesce=settings.coalesce,
            resync=settings.resync,
        )
        self.informers = [
            Informer(
                self.kube,
                kind,
                self,
                problems=self.problems,
                watch_timeout=settings.watch_timeout,
                resync=settings.resync,
            )
            for kind in (SERVICES, ENDPOINT_SLICES, PODS)
        ]
        self.traffic = TrafficSync(
            self.kube,
            self.registry,
            source=settings.source,
            problems=self.problems,
            watch_timeout=settings.watch_timeout,
            resync=settings.resync,
            coalesce=settings.coalesce,
            naming=self.state.registry_name,
        )
        self.elector: LeaderElector | None = None
        if settings.leader_elect:
            self.elector = LeaderElector(
                self.kube,
                namespace=settings.lease_namespace or self._pod_namespace(),
                name=settings.lease,
                identity=self.identity,
                lease_duration=settings.lease_duration,
                renew_deadline=settings.renew_deadline,
                retry_period=settings.retry_period,
            )
        self.to_k8s: ToKubernetes | None = None
        if settings.to_k8s:
            rules = ExportRules(
                namespace=settings.to_k8s_namespace,
                cluster=settings.cluster,
                own_source=settings.source,
                sources=frozenset(settings.to_k8s_sources),
                tags=frozenset(settings.to_k8s_tags),
                services=frozenset(settings.to_k8s_services),
            )
            self.to_k8s = ToKubernetes(
                self.registry, self.kube, rules, self.problems, resync=settings.resync
            )
        self.token_ok = False
        self.address = ""
        self._synced: trio.Event | None = None
        self._token_checked: trio.Event | None = None
        self._campaign_scope: trio.CancelScope | None = None

    def _pod_namespace(self) -> str:
        return self.creds.namespace if self.creds.in_cluster else "weft-system"

    def _read_token(self) -> str | None:
        return read_token(self.settings)

    # -- what the informers feed (informer Sink) ---------------------------------------------

    def apply(self, kind: Kind[Any], event: str, obj: Any) -> None:
        self._renamed(kind, self.state.apply(kind, event, obj))

    def remove(self, kind: Kind[Any], key: Key) -> None:
        self._renamed(kind, self.state.remove(kind, key))

    def replace(self, kind: Kind[Any], objects: list[Any], keep: list[Key]) -> None:
        self._renamed(kind, self.state.replace(kind, objects, keep))

    def _renamed(self, kind: Kind[Any], dirty: set[str]) -> None:
        self.sync.mark(dirty)
        if kind is SERVICES and dirty and self.traffic.objects.objects:
            # A Service's registry name is what the traffic objects naming it resolve to.
            self.traffic.mark()

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(
        self, *, task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        s = self.settings
        self._synced = trio.Event()
        self._token_checked = trio.Event()
        self._campaign_scope = trio.CancelScope()
        host, port = split_host_port(s.health_listen, "health_listen")
        probes = StatusServer(ready=self.ready, status=self.status, metrics=self.metrics)
        try:
            async with trio.open_nursery() as nursery:
                bound = await nursery.start(probes.serve, host, port)
                self.address = f"{bound[0]}:{bound[1]}"
                for informer in self.informers:
                    nursery.start_soon(informer.run)
                nursery.start_soon(self.traffic.watch)
                nursery.start_soon(self._wait_synced)
                nursery.start_soon(self._check_token)
                nursery.start_soon(self._campaign)
                if s.ready_file:
                    write_ready_file(
                        s.ready_file,
                        {
                            "address": self.address,
                            "url": f"http://{self.address}",
                            "pid": os.getpid(),
                            "identity": self.identity,
                        },
                    )
                log.info(
                    "started",
                    extra={
                        "kv": {
                            "cluster": s.cluster,
                            "source": s.source,
                            "kubernetes": self.creds.description,
                            "registry": ",".join(s.registry),
                            "identity": self.identity,
                            "status_address": self.address,
                            "leader_election": s.leader_elect,
                            "to_k8s": s.to_k8s,
                        }
                    },
                )
                task_status.started(bound)
        finally:
            with trio.CancelScope(shield=True):
                await self.registry.aclose()
                await self.kube.aclose()

    async def _wait_synced(self) -> None:
        for informer in self.informers:
            await informer.synced.wait()
        assert self._synced is not None
        self._synced.set()
        log.info("informers synced", extra={"kv": dict(self.state.counts())})

    async def _check_token(self) -> None:
        assert self._token_checked is not None
        backoff = Backoff(maximum=10.0)
        s = self.settings
        while True:
            try:
                info = await self.registry.token_self()
                break
            except ServerUnreachable as exc:
                delay = backoff.next()
                log.warning("registry unreachable: %s; retrying in %.1fs", exc, delay)
                await trio.sleep(delay)
            except APIError as exc:
                if exc.status in (401, 403):
                    raise ConfigError("registry_token", f"the registry refused it: {exc}") from None
                delay = backoff.next()
                log.warning("registry error: %s; retrying in %.1fs", exc, delay)
                await trio.sleep(delay)
        if info.get("role") != "adapter" or info.get("source") != s.source:
            raise ConfigError(
                "registry_token",
                f"it is a {info.get('role')} token"
                + (f" bound to source {info.get('source')!r}" if info.get("source") else "")
                + f"; the adapter needs an adapter token bound to source {s.source!r} "
                f"(weft token create --role adapter --source {s.source})",
            )
        self.token_ok = True
        self._token_checked.set()

    async def _campaign(self) -> None:
        assert self._token_checked is not None and self._campaign_scope is not None
        with self._campaign_scope:
            await self._token_checked.wait()
            if self.elector is not None:
                await self.elector.run(self._lead)
            else:
                await self._lead()

    async def _lead(self) -> None:
        assert self._synced is not None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.sync.lead, self._synced)
            nursery.start_soon(self.traffic.lead)
            if self.to_k8s is not None:
                nursery.start_soon(self.to_k8s.run)

    async def stop(self) -> None:
        """Stop writing, then hand the Lease back (so the standby takes over at once)."""
        if self._campaign_scope is not None:
            self._campaign_scope.cancel()
        if self.elector is not None:
            await self.elector.release()

    def reload(self) -> None:
        """SIGHUP: re-read the registry token file and resync both sides."""
        try:
            self.registry.token = self._read_token()
        except ConfigError as exc:
            log.error("kept the old registry token: %s", exc)
        for informer in self.informers:
            informer.relist_soon()
        self.sync.mark_all(reload=True)
        self.traffic.relist_soon()
        if self.to_k8s is not None:
            self.to_k8s.relist_soon()
        log.info("reloaded: resyncing", extra={"kv": {"identity": self.identity}})

    # -- probes ------------------------------------------------------------------------------

    def ready(self) -> bool:
        return bool(self._synced is not None and self._synced.is_set() and self.token_ok)

    def leader(self) -> bool:
        return self.elector.leading if self.elector is not None else self.token_ok

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "cluster": self.settings.cluster,
            "source": self.settings.source,
            "identity": self.identity,
            "ready": self.ready(),
            "leader": self.leader(),
            "holder": self.elector.holder if self.elector is not None else self.identity,
            "kubernetes": self.creds.description,
            "cluster_state": dict(self.state.counts()),
            "informers": {
                i.kind.name: {
                    "synced": i.synced.is_set(),
                    "resource_version": i.resource_version,
                    **vars(i.stats),
                }
                for i in self.informers
            },
            "registry_sync": self.sync.status(),
            "traffic": self.traffic.status(),
            "problems": self.problems.count,
        }
        if self.to_k8s is not None:
            out["to_k8s"] = vars(self.to_k8s.stats)
        return out

    def metrics(self) -> Samples:
        sync = self.sync.stats
        traffic = self.traffic.stats
        return {
            "weft_k8s_leader": ("gauge", "1 if this replica writes", float(self.leader())),
            "weft_k8s_ready": (
                "gauge",
                "1 once informers synced and the token checked",
                float(self.ready()),
            ),
            "weft_k8s_registry_batches_total": ("counter", "batch requests sent", sync.batches),
            "weft_k8s_registry_transactions_total": (
                "counter",
                "etcd transactions the batches took",
                sync.transactions,
            ),
            "weft_k8s_registry_upserts_total": ("counter", "instances written", sync.upserts),
            "weft_k8s_registry_deletes_total": ("counter", "instances removed", sync.deletes),
            "weft_k8s_registry_errors_total": ("counter", "failed sync passes", sync.errors),
            "weft_k8s_registered_instances": (
                "gauge",
                "instances of this cluster in the registry",
                len(self.sync.current),
            ),
            "weft_k8s_bad_objects_total": (
                "counter",
                "objects from the API server skipped as malformed",
                sum(i.stats.bad_objects for i in self.informers),
            ),
            "weft_k8s_traffic_objects_applied_total": (
                "counter",
                "traffic CRD objects written to the registry",
                traffic.applied,
            ),
            "weft_k8s_traffic_objects_skipped_total": (
                "counter",
                "traffic CRD objects skipped (invalid, or a resource that is not the adapter's)",
                traffic.skipped,
            ),
            "weft_k8s_traffic_import_warnings_total": (
                "counter",
                "importer warnings about traffic CRD objects (fields not honoured)",
                traffic.warnings,
            ),
            "weft_k8s_traffic_resources": (
                "gauge",
                "Weft traffic resources this adapter's objects make",
                float(self.traffic.owned),
            ),
            "weft_k8s_relists_total": (
                "counter",
                "lists (initial, 410 Gone, resync)",
                sum(i.stats.lists for i in self.informers),
            ),
        }


async def serve(adapter: Adapter) -> None:
    """Run until SIGTERM/SIGINT (hand over within the grace period); SIGHUP reloads."""
    await serve_until_signalled(
        lambda nursery: nursery.start(adapter.run),
        drain=adapter.stop,
        reload=adapter.reload,
        grace=adapter.settings.grace,
    )


def run(settings: AdapterSettings) -> int:
    """The `weft k8s-adapter` daemon; raises ConfigError for bad configuration."""
    adapter = Adapter(settings)
    try:
        trio.run(serve, adapter)
    except BaseExceptionGroup as group:
        config_errors, _ = group.split(ConfigError)
        if config_errors is not None:
            raise _first(config_errors) from None
        raise
    return 0


def purge_cluster(settings: AdapterSettings) -> tuple[int, int]:
    """Remove every registry entry and traffic resource of this cluster's source; returns
    how many (instances, resources) went."""

    async def main() -> tuple[int, int]:
        token = read_token(settings)
        async with RegistryClient(
            list(settings.registry), token=token, ca_file=settings.registry_ca_file or None
        ) as client:
            return await purge(client, settings.source, settings.batch_size)

    return trio.run(main)


def _first(group: BaseExceptionGroup) -> BaseException:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc
