"""`weft agent`: what makes a host part of the mesh.

Wiring only; each job lives in its own module:

    _definitions  services.d/*.toml          _registration  lease + anti-entropy
    _checks       host-side health checks     _certs         keys, CSRs, renewals, bundle
    _upstreams    registry view of upstreams  _publisher     versioned snapshots + acks
    _intention_watch, _intentions   the mesh's intentions, compiled per sidecar
    _supervisor   one proxy per sidecar       _api           the local HTTP API
    _notify       systemd READY / WATCHDOG / STATUS
    _join         token, node address, the CA to trust (file or fingerprint), trust domain
    _status       the local API's status document and the STATUS= line
    _report       what `weft check` learns about this host, sent to the servers

Start: load and check everything (bad config exits 64), trust the CA (bundle or fingerprint),
register, get certificates, start proxies, and tell systemd READY=1 once every service is
registered and every proxy has applied its first snapshot. SIGHUP re-reads services.d (a bad
file is refused and the old set kept); SIGTERM deregisters, then drains the proxies.
"""

from __future__ import annotations

import logging
import os
import random
import time
from pathlib import Path
from typing import Any

import trio

from ca import SpiffeId
from registry.checks import Status
from registry.client import RegistryClient
from registry.dns import DNSRelay
from registry.lifecycle import serve_until_signalled, write_ready_file
from registry.web import HTTPServer, Limits

from . import _exposure, _gateway, _snapshots
from ._api import LocalAPI
from ._certs import CertManager
from ._checks import CheckRunner
from ._config import AgentConfig
from ._definitions import (
    DefinitionError,
    ServiceDef,
    load_directory,
    port_is_free,
    ports_in_use,
)
from ._intention_watch import IntentionWatcher
from ._join import bundle_file, discover_node_address, learn_trust_domain
from ._metrics_push import MetricsPusher, Target
from ._notify import Notifier
from ._publisher import Publisher
from ._registration import Registrar
from ._report import Reporter, build_report
from ._resource_watch import ResourceWatcher
from ._screen import Screen
from ._status import status_document, status_line
from ._supervisor import ProxySpec, ProxySupervisor
from ._upstreams import UpstreamWatcher

log = logging.getLogger("weft.agent")


class Agent:
    def __init__(self, config: AgentConfig, defs: list[ServiceDef], token: str) -> None:
        self.config = config
        self.defs = defs
        self.token = token
        self.node = config.node
        self.node_address = config.node_address or discover_node_address(config.servers[0])
        self.data = Path(config.data_dir)
        self.data.mkdir(parents=True, exist_ok=True)
        self.notifier = Notifier()
        self.publisher = Publisher()
        self.trust_domain: str | None = config.trust_domain or None
        self.ready = False
        self.dns_address = ""  # host:port of the DNS relay, when dns_listen is set
        self.client: RegistryClient | None = None
        self.screen = Screen()
        self.exposed: dict[str, list[str]] = {}  # service id -> non-loopback app addresses

    # -- identity ------------------------------------------------------------------------------

    def identity(self, d: ServiceDef) -> str:
        return SpiffeId(self.trust_domain, d.namespace, d.name).uri if self.trust_domain else ""

    # -- definitions -------------------------------------------------------------------------

    def _apply(self, defs: list[ServiceDef]) -> None:
        self.defs = defs
        self.registrar.set_definitions(defs)
        self.checks.set_checks([c for d in defs for c in d.checks])
        self._apply_sidecars()

    def _apply_sidecars(self) -> None:
        """Certificates and proxies for the sidecars the registry accepted (a service the
        token may not register gets neither: its CSR would be refused too)."""
        accepted = [d for d in self.defs if d.id not in self.registrar.refused]
        sidecars = [d for d in accepted if d.sidecar_port]
        proxied = [d for d in accepted if d.proxied]  # sidecars and ingress gateways
        if self.trust_domain:
            self.certs.set_identities(
                {d.id: SpiffeId(self.trust_domain, d.namespace, d.name) for d in proxied}
            )
        self._want_upstreams()
        for proxy_id in list(self.publisher.proxies):
            if proxy_id not in {d.id for d in proxied}:
                self.publisher.remove(proxy_id)
        self.supervisor.set_proxies([ProxySpec(d.id, d.admin_port) for d in sidecars])
        self._republish()

    def reload(self) -> None:
        self.notifier.reloading()
        try:
            defs = load_directory(self.config.services_dir)
            ours = {p for d in self.defs for _, p in d.bound_ports()}
            ports_in_use([d for d in defs if d not in self.defs], port_is_free, ours)
        except DefinitionError as exc:
            log.error(
                "reload refused: %s; keeping the %d services defined before", exc, len(self.defs)
            )
            self.notifier.send("READY=1", f"STATUS=reload refused: {exc}")
            return
        log.info("reloaded service definitions", extra={"kv": {"services": len(defs)}})
        self._apply(defs)
        self.notifier.send("READY=1", f"STATUS={status_line(self)}")

    # -- snapshots -----------------------------------------------------------------------------

    def _want_upstreams(self) -> None:
        resources = self.traffic.resources
        self.upstreams.want({s for d in self.defs if d.proxied for s in self._wanted(d, resources)})

    @staticmethod
    def _wanted(d: ServiceDef, resources: Any) -> set[str]:
        if d.gateway:
            return _gateway.services(d, resources)
        return _snapshots.wanted_services(d, resources)

    def _republish(self) -> None:
        if not self.trust_domain:
            return
        if not self.traffic.known or not self.intentions.known:
            # wait for the traffic resources and intentions, rather than publish without them
            return
        view = self.intentions.view
        resources = self.traffic.resources
        self._want_upstreams()
        for d in self.defs:
            if not d.proxied or not self.certs.ready(d.id):
                continue
            if any(s not in self.upstreams.known for s in self._wanted(d, resources)):
                continue  # wait for a first answer, rather than publish empty upstreams
            identity = SpiffeId(self.trust_domain, d.namespace, d.name)
            if d.gateway:
                doc = _gateway.build(
                    d,
                    identity,
                    self.certs.files(d.id),
                    self.upstreams.instances,
                    version=0,
                    resources=resources,
                )
            else:
                doc = self._sidecar_doc(d, identity, resources, view)
            if self.publisher.publish(d.id, doc):
                log.info(
                    "published snapshot",
                    extra={"kv": {"proxy": d.id, "version": self.publisher.proxies[d.id].version}},
                )

    def _sidecar_doc(
        self, d: ServiceDef, identity: SpiffeId, resources: Any, view: Any
    ) -> dict[str, Any]:
        return _snapshots.build(
            d,
            identity,
            self.certs.files(d.id),
            self.upstreams.instances,
            version=0,
            resources=resources,
            intentions=view.compile(d.namespace, d.name) if view is not None else None,
        )

    async def _republish_loop(self) -> None:
        while True:
            async with trio.open_nursery() as nursery:

                async def wake(event: trio.Event) -> None:
                    await event.wait()
                    nursery.cancel_scope.cancel()

                nursery.start_soon(wake, self.upstreams.changed)
                nursery.start_soon(wake, self.certs.changed)
                nursery.start_soon(wake, self.traffic.changed)
                nursery.start_soon(wake, self.intentions.changed)
            self._republish()

    # -- metrics -------------------------------------------------------------------------------

    def _metrics_targets(self) -> list[Target]:
        return [
            Target(d.name, d.id, self.identity(d), self._advertised_admin(d.id))
            for d in self.defs
            if d.sidecar_port
        ]

    def _advertised_admin(self, proxy_id: str) -> str | None:
        admin = self.supervisor.admin_address(proxy_id)
        if admin and admin.startswith(("0.0.0.0:", "[::]:")):
            # Bound to every interface: others reach it at the node's address.
            host = f"[{self.node_address}]" if ":" in self.node_address else self.node_address
            admin = f"{host}:{admin.rpartition(':')[2]}"
        return admin

    def _metrics_meta(self, d: ServiceDef) -> dict[str, str]:
        admin = self.metrics.admins.get(d.id) if d.sidecar_port else None
        if not admin or (len(d.meta) >= 64 and "weft_metrics" not in d.meta):
            return {}  # the registry takes 64 meta pairs; the user's own come first
        return {"weft_metrics": admin}

    # -- status and reports --------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return status_document(self)

    def _report(self, now: float) -> dict[str, Any]:
        return build_report(
            registrar=self.registrar,
            publisher=self.publisher,
            certs=self.certs,
            running=self.supervisor.describe(),
            services={d.id: d.name for d in self.defs},
            sync_interval=self.config.sync_interval,
            report_interval=self.config.report_interval,
            now=now,
            monotonic=time.monotonic(),
            since_sync=trio.current_time() - self.registrar.last_sync,
        )

    async def _report_loop(self) -> None:
        assert self.client is not None
        reporter = Reporter(
            self.client,
            node=self.node,
            interval=self.config.report_interval,
            build=self._report,
            publisher=self.publisher,
        )
        await reporter.run(self.registrar.synced)

    # -- running ------------------------------------------------------------------------------

    async def _push_check(self, check_id: str, status: Status, output: str) -> None:
        assert self.client is not None
        await self.client.update_check(self.node, check_id, str(status), output)

    def _on_registered(self, view: dict[str, Any]) -> None:
        for check in view.get("checks", []):
            self.checks.server_view(check["id"], Status(check["status"]), check["output"])

    async def _certs_after_sync(self) -> None:
        # The CA signs only for services registered on this node: register first.
        await self.registrar.synced.wait()
        await self.certs.run()

    def check_exposure(self) -> None:
        """Warn (once per change) about sidecar apps reachable around their sidecar."""
        sockets = _exposure.host_listening()
        for d in self.defs:
            if not d.sidecar_port:
                continue
            found = _exposure.exposed(sockets, d.port)
            if found and found != self.exposed.get(d.id):
                log.warning(
                    "%s's application listens on %s port %d, so it can be called without its "
                    "sidecar (no mTLS, no authorization); bind it to 127.0.0.1 "
                    "(docs/operations.md, 'Only through the sidecar')",
                    d.name,
                    ", ".join(found),
                    d.port,
                    extra={"kv": {"service": d.name, "addresses": found, "port": d.port}},
                )
            self.exposed[d.id] = found

    async def _watch_exposure(self) -> None:
        while True:
            self.check_exposure()
            await trio.sleep(30)

    async def _watchdog(self) -> None:
        interval = self.notifier.watchdog_interval
        if not interval or not self.config.watchdog:
            return
        while True:
            self.notifier.watchdog()
            await trio.sleep(interval)

    async def _become_ready(self) -> None:
        await self.registrar.synced.wait()
        while not (
            # A gateway is not the agent's child: it may start after the agent is ready (its
            # unit orders itself after the agent's), so readiness waits for sidecars only - and
            # not for a service the registry refused (it gets no certificate, so no proxy).
            self.publisher.all_configured(
                {d.id for d in self.defs if d.sidecar_port and d.id not in self.registrar.refused}
            )
        ):
            await self.publisher.acked.wait()
        self.ready = True
        line = status_line(self)
        self.notifier.ready(line)
        log.info("ready", extra={"kv": {"status": line}})
        if self.config.ready_file:
            write_ready_file(
                self.config.ready_file,
                {
                    "address": self.api_address,
                    "pid": os.getpid(),
                    "node": self.node,
                    "dns": self.dns_address,
                },
            )
        while True:  # keep STATUS= current for `systemctl status`
            await trio.sleep(5)
            self.notifier.status(status_line(self))

    async def run(self) -> None:
        bundle = await bundle_file(self.config, self.data, self.notifier)
        # A hung server must cost one keepalive, not the lease: each request gets a third of
        # the TTL, so the agent fails over to the next server with time to spare.
        client = RegistryClient(
            list(self.config.servers),
            token=self.token,
            ca_file=bundle,
            timeout=min(10.0, self.config.lease_ttl / 3),
        )
        self.client = client
        host, _, port = self.config.api_listen.rpartition(":")
        self.checks = CheckRunner(self._push_check)
        fraction = self.config.cert_renew_fraction
        rng = (lambda: (fraction - 0.6) / 0.3) if fraction else random.random
        self.certs = CertManager(
            client, self.data / "certs", lifetime=self.config.cert_lifetime, rng=rng
        )
        self.upstreams = UpstreamWatcher(
            client, screen=lambda name, insts: self.screen.admit(name, insts, self.trust_domain)
        )
        self.traffic = ResourceWatcher(client)
        self.intentions = IntentionWatcher(client)
        self.registrar = Registrar(
            client,
            node=self.node,
            node_address=self.node_address,
            lease_ttl=int(self.config.lease_ttl),
            sync_interval=self.config.sync_interval,
            identity_of=self.identity,
        )
        self.registrar.on_registered = self._on_registered
        self.registrar.on_refusals = self._apply_sidecars
        self.registrar.meta_of = self._metrics_meta
        self.metrics = MetricsPusher(
            client,
            interval=self.config.metrics_interval,
            targets=self._metrics_targets,
            lease=lambda: self.registrar.lease,
            # A proxy's admin address appeared or moved: re-register to carry it.
            on_admin_change=lambda: self.registrar.set_definitions(self.defs),
        )
        self.registrar.on_lease_lost = self.checks.forget_reports
        self.registrar.on_reconnected = self.certs.retry_now
        api = LocalAPI(
            token=self.token,
            publisher=self.publisher,
            status=self.status,
            ttl_update=lambda cid, st, out: self.checks.ttl_update(cid, st, out),
            set_maintenance=lambda enable, reason: client.maintenance(self.node, enable, reason),
            metrics=self.screen.metrics,
        )
        config = self.config
        http = HTTPServer(
            api,
            limits=Limits(
                head_timeout=config.api_head_timeout,
                body_timeout=config.api_body_timeout,
                idle_timeout=config.api_idle_timeout,
                send_timeout=config.api_send_timeout,
                read_ahead=config.api_read_ahead_bytes,
                max_connections=config.api_max_connections,
                max_connections_per_ip=config.api_max_connections_per_ip,
            ),
            long_request=lambda r: "index" in r.query,
        )

        async def start(nursery: trio.Nursery) -> None:
            bound = await nursery.start(http.serve, host or "127.0.0.1", int(port))
            self.api_address = f"{bound[0]}:{bound[1]}"
            if config.dns_listen:
                relay = DNSRelay(config.dns_upstreams())
                dns_host, _, dns_port = config.dns_listen.rpartition(":")
                dns_bound = await nursery.start(relay.serve, dns_host.strip("[]"), int(dns_port))
                self.dns_address = f"{dns_bound[0]}:{dns_bound[1]}"
            self.supervisor = ProxySupervisor(
                command=self.config.proxy_command,
                api_url=f"http://{self.api_address}",
                run_dir=self.data / "proxies",
                workers=self.config.proxy_workers,
                grace=self.config.grace,
                admin_host=self.config.proxy_admin_host,
            )
            nursery.start_soon(self._watchdog)
            if any(d.proxied for d in self.defs) and not self.trust_domain:
                self.trust_domain = await learn_trust_domain(client, self.notifier)
            self._apply(self.defs)
            for task in (
                self.registrar.run,
                self.checks.run,
                self._certs_after_sync,
                self.upstreams.run,
                self.traffic.run,
                self.intentions.run,
                self.supervisor.run,
                self._republish_loop,
                self._become_ready,
                self._watch_exposure,
                self.metrics.run,
                self._report_loop,
            ):
                nursery.start_soon(task)

        try:
            # The stop itself is bounded (deregistration 5 s, a settling second); the proxies
            # then drain within `grace` while the nursery is cancelled.
            await serve_until_signalled(
                start, drain=lambda: self._stop(http), reload=self.reload, grace=7.0
            )
        finally:
            with trio.CancelScope(shield=True):
                await client.aclose()

    async def _stop(self, http: HTTPServer) -> None:
        self.notifier.stopping()
        log.info("stopping: deregistering, then draining proxies")
        with trio.move_on_after(5):
            await self.registrar.deregister_all()
        # Give peers a moment to drop this host from their snapshots before the proxies close.
        await trio.sleep(min(1.0, self.config.grace))
        # Cancelling the supervisor SIGTERMs each proxy; the nursery then waits (shielded)
        # while they drain within the grace period.
        self.supervisor.set_proxies([])
        http.shutdown()
