"""The running proxy: the snapshot in use, its listeners, clusters and connections.

`apply` is the one way configuration changes. It validates the document, loads its TLS
files and binds any new listener before it changes anything, so a document is applied whole
or refused whole (the proxy keeps serving on what it had); then it swaps the `Config` that
every connection reads per request, reconfigures clusters in place (endpoints that stay keep
their latency estimates, failure state and pooled connections) and closes listeners that are
gone. `drain` stops accepting and lets connections finish within a grace period.
"""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import trio

from . import _report as report
from ._accrual import AccrualPolicy
from ._authz import Authorizer
from ._cluster import Cluster, EndpointAddress
from ._egress import Egress
from ._errors import ListenerError, SnapshotError, TlsSetupError
from ._external import origination
from ._http_forward import HttpConnection
from ._inbound import serve_inbound
from ._listener_host import Config as Config
from ._listener_host import RuntimeOptions as RuntimeOptions
from ._metrics import Metrics
from ._outbound import serve_forward_proxy, serve_upstream
from ._retry_budget import RetryBudget
from ._snapshot import H2_PROTOCOLS, Snapshot, decode_document, parse_snapshot
from ._source import ApplyResult
from ._stream import accept, bind_listener, run_reactor, use_trio_waits
from ._tap import Tap
from ._tls import Signature, TlsMaterial, files_signature, load_tls

if TYPE_CHECKING:
    from ._h2_forward import H2Connection  # h2 loads with the first HTTP/2 connection

log = logging.getLogger("weft.proxy")

ListenerKey = tuple[str, str]  # (role, upstream name or "")
_NEVER_EJECT = AccrualPolicy(max_failures=2**62)


@dataclass(eq=False)
class ListenerHandle:
    role: str
    name: str
    address: str
    requested_port: int
    sock: socket.socket
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)

    @property
    def port(self) -> int:
        port: int = self.sock.getsockname()[1]
        return port

    @property
    def label(self) -> str:
        return f"{self.role}/{self.name}" if self.name else self.role


def _key_label(key: ListenerKey) -> str:
    return f"{key[0]}/{key[1]}" if key[1] else key[0]


def _wanted(snapshot: Snapshot) -> dict[ListenerKey, tuple[str, int]]:
    out: dict[ListenerKey, tuple[str, int]] = {}
    if snapshot.inbound is not None:
        out[("inbound", "")] = (snapshot.inbound.address, snapshot.inbound.port)
    for upstream in snapshot.upstreams:
        if upstream.port is not None:
            out[("upstream", upstream.name)] = (upstream.address, upstream.port)
    if snapshot.forward_proxy is not None:
        out[("forward", "")] = (snapshot.forward_proxy.address, snapshot.forward_proxy.port)
    return out


class Runtime:
    def __init__(self, options: RuntimeOptions, metrics: Metrics, tap: Tap) -> None:
        self.options = options
        self.metrics = metrics
        self.tap = tap
        self.config: Config | None = None
        self.clusters: dict[str, Cluster] = {}
        self.budgets: dict[str, RetryBudget] = {}  # per upstream; kept across snapshots
        self.egress = Egress(metrics)
        self.mirrors_in_flight = 0
        self.app: Cluster | None = None
        self.listeners: dict[ListenerKey, ListenerHandle] = {}
        self.connections: set[HttpConnection | H2Connection] = set()
        self.applied: ApplyResult | None = None
        self.last_result: ApplyResult | None = None
        self.draining = False
        self._lock = trio.Lock()
        self._listener_nursery: trio.Nursery | None = None
        self._conn_nursery: trio.Nursery | None = None
        self._listen_scope = trio.CancelScope()
        self._drain_deadline = float("inf")
        self._tls_problem: Signature | None = None
        metrics.gauges = lambda: report.gauges(self)

    # -- lifecycle ------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Host listeners and connections until `drain` has finished."""
        async with trio.open_nursery() as io:
            if self.options.reactor:
                await io.start(run_reactor)
            else:
                use_trio_waits()
            async with trio.open_nursery() as conns:
                self._conn_nursery = conns
                with self._listen_scope:
                    async with trio.open_nursery() as listeners:
                        self._listener_nursery = listeners
                        task_status.started()
                        await trio.sleep_forever()
                conns.cancel_scope.deadline = self._drain_deadline
            io.cancel_scope.cancel()  # the reactor outlives every connection, and no more
        for cluster in self.clusters.values():
            cluster.close()
        self.egress.close()
        if self.app is not None:
            self.app.close()

    def drain(self, grace: float) -> None:
        """Stop accepting; idle connections close now, busy ones after their exchange."""
        if self.draining:
            return
        self.draining = True
        self._drain_deadline = trio.current_time() + grace
        for handle in self.listeners.values():
            _close_listener(handle)
        for connection in list(self.connections):
            connection.drain()
        self._listen_scope.cancel()
        log.info("draining", extra={"kv": {"connections": len(self.connections), "grace_s": grace}})

    # -- applying snapshots ---------------------------------------------------------------

    def _tls_material(self) -> TlsMaterial | None:
        return self.config.tls if self.config else None

    async def apply(self, raw: bytes, source: str) -> ApplyResult:
        async with self._lock:
            result = self._apply(raw, source)
        self.last_result = result
        if result.accepted:
            if result.reason != "unchanged":
                self.applied = result
                self.metrics.snapshots["applied"] += 1
                log.info(
                    "snapshot applied",
                    extra={"kv": {"version": result.version, "source": source}},
                )
        else:
            self.metrics.snapshots["rejected"] += 1
            log.warning(
                "snapshot refused; keeping the last good one",
                extra={
                    "kv": {
                        "version": result.version,
                        "kept": self.applied.version if self.applied else None,
                        "reason": result.reason,
                        "source": source,
                    }
                },
            )
        return result

    def _apply(self, raw: bytes, source: str) -> ApplyResult:
        now = time.time()
        version = None
        try:
            doc = decode_document(raw)
            if isinstance(doc.get("version"), int):
                version = doc["version"]
            snapshot = parse_snapshot(doc)
        except SnapshotError as exc:
            return ApplyResult(False, version, "; ".join(exc.problems), None, source, now)
        current = self.config
        if current is not None and current.snapshot.digest == snapshot.digest:
            return ApplyResult(True, snapshot.version, "unchanged", snapshot.digest, source, now)
        if self.draining:
            return ApplyResult(
                False, snapshot.version, "the proxy is shutting down", snapshot.digest, source, now
            )

        # 1. Everything that can fail, before anything changes.
        try:
            if (
                current is not None
                and current.tls.files == snapshot.tls
                and current.tls.signature == files_signature(snapshot.tls)
                and current.snapshot.identity == snapshot.identity
            ):
                material = current.tls
            else:
                material = load_tls(snapshot.tls, snapshot.identity)
        except TlsSetupError as exc:
            return ApplyResult(False, snapshot.version, str(exc), snapshot.digest, source, now)
        try:
            handles, fresh = self._bind(snapshot)
        except ListenerError as exc:
            return ApplyResult(False, snapshot.version, str(exc), snapshot.digest, source, now)

        # 2. Commit.
        clusters: dict[str, Cluster] = {}
        referenced = {
            (ref.upstream, ref.subset)
            for upstream in snapshot.upstreams
            for ref in upstream.table.backends()
            if ref.subset
        }
        for upstream in snapshot.upstreams:
            # One cluster for the upstream, and one per subset (its endpoints that carry the
            # subset's name): a route's backend may be either.
            subsets = upstream.subsets() | {s for u, s in referenced if u == upstream.name}
            for subset in ["", *sorted(subsets)]:
                cluster_key = f"{upstream.name}/{subset}" if subset else upstream.name
                cluster = self.clusters.get(cluster_key) or Cluster(
                    cluster_key, metrics=self.metrics, tls=self._tls_material
                )
                cluster.configure(
                    [
                        (EndpointAddress(e.address, e.port, e.identity), e.weight)
                        for e in upstream.endpoints
                        if not subset or subset in e.subsets
                    ],
                    strategy=upstream.balancer,
                    timeouts=upstream.timeouts,
                    pool=upstream.pool,
                    accrual=upstream.accrual,
                    opaque=upstream.protocol == "tcp",
                )
                cluster.h2_upstream = upstream.protocol in H2_PROTOCOLS
                cluster.spawn = self.spawn
                cluster.origination = origination(upstream.external)
                clusters[cluster_key] = cluster
            old_budget = self.budgets.get(upstream.name)
            if old_budget is None or old_budget.policy != upstream.table.budget:
                self.budgets[upstream.name] = RetryBudget(
                    upstream.table.budget, trio.current_time()
                )
        for name in list(self.budgets):
            if snapshot.upstream(name) is None:
                del self.budgets[name]
        for name, cluster in self.clusters.items():
            if name not in clusters:
                cluster.close()
        self.clusters = clusters
        inbound = snapshot.inbound
        if inbound is not None:
            if self.app is None:
                self.app = Cluster("app", metrics=self.metrics, tls=None)
            self.app.configure(
                [(EndpointAddress(inbound.app_address, inbound.app_port, None), 1)],
                strategy="round_robin",
                timeouts=inbound.timeouts,
                pool=inbound.pool,
                # The local application is the only endpoint: ejecting it for its own 5xx
                # answers would turn all of its traffic into the proxy's 503s. Failure accrual
                # belongs to the callers' side, where there are other endpoints to go to.
                accrual=_NEVER_EJECT,
            )
            self.app.h2_upstream = inbound.protocol in H2_PROTOCOLS
            self.app.spawn = self.spawn
        elif self.app is not None:
            self.app.close()
            self.app = None
        authorizer = Authorizer(
            snapshot.identity,
            list(snapshot.authorization.rules),
            snapshot.authorization.default_allow,
        )
        self.config = Config(snapshot, material, authorizer, clusters, self.app)
        kept = set(map(id, handles.values()))
        for handle in self.listeners.values():
            if id(handle) not in kept:
                _close_listener(handle)
        for key, handle in handles.items():
            handle.role, handle.name = key
        self.listeners = handles
        for handle in fresh:
            self._start_listener(handle)
        return ApplyResult(True, snapshot.version, "", snapshot.digest, source, now)

    def _bind(
        self, snapshot: Snapshot
    ) -> tuple[dict[ListenerKey, ListenerHandle], list[ListenerHandle]]:
        handles: dict[ListenerKey, ListenerHandle] = {}
        fresh: list[ListenerHandle] = []
        claimed: set[int] = set()
        try:
            for key, (address, port) in _wanted(snapshot).items():
                if port == 0:
                    port = self.options.port_overrides.get(_key_label(key), 0)
                    if port == 0 and self.options.reuse_port:
                        raise ListenerError(
                            f"{_key_label(key)}: port 0 cannot be shared by --workers processes "
                            "once they run (only the ports of the first snapshot are reserved); "
                            "give it a fixed port"
                        )
                old = self.listeners.get(key)
                if (
                    old is not None
                    and old.address == address
                    and old.requested_port == port
                    and id(old) not in claimed
                ):
                    handles[key] = old
                    claimed.add(id(old))
                    continue
                holder = None
                if port:
                    holder = next(
                        (
                            h
                            for h in self.listeners.values()
                            if h.address == address and h.port == port and id(h) not in claimed
                        ),
                        None,
                    )
                if holder is not None:
                    handles[key] = holder
                    claimed.add(id(holder))
                    continue
                try:
                    sock = bind_listener(address, port, reuse_port=self.options.reuse_port)
                except ListenerError as exc:
                    raise ListenerError(f"{_key_label(key)}: {exc}") from exc
                handle = ListenerHandle(key[0], key[1], address, port, sock)
                handles[key] = handle
                fresh.append(handle)
        except ListenerError:
            for handle in fresh:
                handle.sock.close()
            raise
        return handles, fresh

    def spawn(self, task: Any, *args: Any) -> None:
        """Start a task that lives as long as the connections do (an HTTP/2 connection's
        reader, shared by the requests multiplexed on it)."""
        if self._conn_nursery is not None:
            self._conn_nursery.start_soon(task, *args)

    def background(self, task: Any, *args: Any) -> None:
        """Start a task that outlives the request that asked for it (a mirrored copy)."""
        if self._conn_nursery is not None and not self.draining:
            self._conn_nursery.start_soon(task, *args)

    def _start_listener(self, handle: ListenerHandle) -> None:
        assert self._listener_nursery is not None
        self._listener_nursery.start_soon(self._accept_loop, handle)
        log.info(
            "listening",
            extra={"kv": {"listener": handle.label, "address": f"{handle.address}:{handle.port}"}},
        )

    async def _accept_loop(self, handle: ListenerHandle) -> None:
        assert self._conn_nursery is not None
        with handle.scope:
            while True:
                try:
                    sock = await accept(handle.sock)
                except (trio.ClosedResourceError, OSError):
                    return
                self._conn_nursery.start_soon(
                    self._serve_connection, handle.role, handle.name, sock
                )

    async def _serve_connection(self, role: str, name: str, sock: socket.socket) -> None:
        try:
            if role == "inbound":
                await serve_inbound(self, sock)
            elif role == "upstream":
                await serve_upstream(self, sock, name)
            else:
                await serve_forward_proxy(self, sock)
        except Exception:
            log.exception(
                "connection handler failed", extra={"kv": {"listener": role, "name": name}}
            )
        finally:
            if sock.fileno() >= 0:
                sock.close()

    # -- certificates ---------------------------------------------------------------------

    def check_certificates(self) -> bool:
        """Reload the TLS files if they changed on disk; True if new ones are in use."""
        config = self.config
        if config is None:
            return False
        signature = files_signature(config.tls.files)
        if signature == config.tls.signature or signature == self._tls_problem:
            return False
        try:
            material = load_tls(config.tls.files, config.snapshot.identity)
        except TlsSetupError as exc:
            self._tls_problem = signature
            log.warning(
                "new certificate files refused; keeping the loaded ones",
                extra={"kv": {"error": str(exc)}},
            )
            return False
        self._tls_problem = None
        self.config = replace(config, tls=material)
        log.info(
            "certificates reloaded",
            extra={
                "kv": {
                    "not_after": time.strftime(
                        "%Y-%m-%dT%H:%M:%SZ", time.gmtime(material.leaf.not_after)
                    )
                }
            },
        )
        return True

    async def sweep(self, interval: float = 0.1) -> None:
        """Expire HTTP connections whose phase deadline passed (see `HttpConnection.expire`)."""
        while True:
            await trio.sleep(interval)
            now = trio.current_time()
            for connection in list(self.connections):
                connection.expire(now)

    async def maintain(self, interval: float) -> None:
        """Periodic chores: certificate files, idle pooled connections, the access log."""
        while True:
            await trio.sleep(interval)
            self.check_certificates()
            now = trio.current_time()
            for cluster in self.clusters.values():
                cluster.reap(now)
            self.egress.reap(now)
            if self.app is not None:
                self.app.reap(now)
            self.tap.flush()

    # -- views (what /ready, /config and /metrics show; see _report) -------------------------

    def ready(self) -> tuple[bool, str]:
        if self.draining:
            return False, "draining"
        if self.config is None:
            return False, "no snapshot applied yet"
        return True, f"snapshot version {self.config.snapshot.version}"

    def addresses(self) -> dict[str, str]:
        return {h.label: f"{h.address}:{h.port}" for h in self.listeners.values()}

    def view(self) -> dict[str, Any]:
        return report.view(self)


def _close_listener(handle: ListenerHandle) -> None:
    handle.scope.cancel()
    try:
        trio.lowlevel.notify_closing(handle.sock)
    except (ValueError, OSError):
        pass
    handle.sock.close()
