"""`weft gateway`: the proxy runtime with virtual hosts, and the process around it.

A gateway is a proxy whose snapshot has no inbound listener: its upstreams are the mesh
services it calls (as the ingress-gateway service's identity, with certificates the agent
keeps, as for any sidecar), and its `gateway` section holds the virtual hosts
(`_gateway_hosts`). `GatewayRuntime.apply` checks that section first, then hands the rest to
the sidecar's `Runtime.apply`; the document is applied whole or refused whole, and a refusal
keeps the last good one serving, as in a sidecar.

`serve_gateway` runs it: the operator certificates are loaded and the public port is bound
before anything else (a bad pair or a taken port stops the start with the reason), then the
snapshot source, the admin listener, the public accept loop and the certificate watcher.
SIGHUP re-reads the certificate files (and asks the source again); SIGTERM drains.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, Protocol

import trio

from ._errors import ListenerError, SnapshotError, StartupError, TlsSetupError
from ._gateway_certs import CertPair, CertStore
from ._gateway_hosts import HostTable, build_hosts
from ._gateway_listener import DIRECTION, Admission, serve_public
from ._metrics import Metrics
from ._options import ServeSettings, parse_address
from ._retry_budget import RetryBudget
from ._runtime import Runtime
from ._server import Control, runtime_options, serve, watch_signals, write_ready_file
from ._snapshot import decode_document
from ._source import ApplyResult, FileSource, SnapshotSource
from ._stream import accept, bind_listener
from ._tap import Tap

log = logging.getLogger("weft.gateway")


class GatewaySettings(ServeSettings, Protocol):
    @property
    def snapshot_url(self) -> str: ...

    @property
    def listen(self) -> str: ...

    @property
    def certificates(self) -> Sequence[str]: ...

    @property
    def default_certificate(self) -> str: ...

    @property
    def max_connections(self) -> int: ...

    @property
    def max_connections_per_client(self) -> int: ...


class GatewayRuntime(Runtime):
    """A `Runtime` that also holds the virtual hosts of its snapshot's `gateway` section."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hosts = HostTable(())
        self.host_budgets: dict[str, RetryBudget] = {}
        self.certs: CertStore | None = None
        self.admission: Admission | None = None
        self.public = ""

    async def apply(self, raw: bytes, source: str) -> ApplyResult:
        try:
            doc = decode_document(raw)
        except SnapshotError:
            return await super().apply(raw, source)  # refused there, with the reason
        section = doc.pop("gateway", None)
        problems: list[str] = []
        if section is None:
            problems.append(
                "gateway: is required (a gateway snapshot has virtual hosts; is this a "
                "sidecar's snapshot?)"
            )
            hosts = HostTable(())
        else:
            upstreams = {
                str(u.get("name")): str(u.get("protocol"))
                for u in doc.get("upstreams", [])
                if isinstance(u, dict)
            }
            hosts = build_hosts(section, upstreams, problems)
        if "inbound" in doc:
            problems.append("inbound: a gateway serves no inbound listener")
        if problems:
            version = doc.get("version") if isinstance(doc.get("version"), int) else None
            result = ApplyResult(False, version, "; ".join(problems), None, source, time.time())
            self.last_result = result
            self.metrics.snapshots["rejected"] += 1
            log.warning(
                "snapshot refused; keeping the last good one",
                extra={"kv": {"version": version, "reason": result.reason, "source": source}},
            )
            return result
        result = await super().apply(json.dumps(doc).encode(), source)
        if result.accepted:
            budgets: dict[str, RetryBudget] = {}
            for vhost in hosts.vhosts:
                old = self.host_budgets.get(vhost.name)
                keep = old is not None and old.policy == vhost.table.budget
                budgets[vhost.name] = (
                    old if keep and old else RetryBudget(vhost.table.budget, trio.current_time())
                )
            self.host_budgets = budgets
            self.hosts = hosts
        return result

    def view(self) -> dict[str, Any]:
        view = super().view()
        view["gateway"] = {
            "public": self.public,
            "open_connections": self.admission.open if self.admission else 0,
            "virtual_hosts": [
                {"name": v.name, "hosts": list(v.hosts), "routes": [r.name for r in v.table.rules]}
                for v in self.hosts.vhosts
            ],
            "certificates": self.certs.describe() if self.certs else [],
            "certificate_reloads": self.certs.reloads if self.certs else 0,
            "certificates_refused": self.certs.refused if self.certs else 0,
        }
        return view


def parse_pair(text: str) -> CertPair:
    """'cert.pem:key.pem' to a pair (ValueError naming the form otherwise)."""
    cert, sep, key = text.partition(":")
    if not sep or not cert or not key:
        raise ValueError(
            f"{text!r} is not CERT:KEY (example: /etc/weft/gw/shop.pem:/etc/weft/gw/shop.key)"
        )
    return CertPair(cert, key)


def load_certificates(settings: GatewaySettings) -> CertStore:
    pairs = [parse_pair(text) for text in settings.certificates]
    default = 0
    if settings.default_certificate:
        matches = [i for i, p in enumerate(pairs) if p.cert == settings.default_certificate]
        if not matches:
            raise StartupError(
                f"default_certificate: {settings.default_certificate} is not the certificate "
                "of any pair in certificates",
                64,
            )
        default = matches[0]
    try:
        return CertStore(pairs, default)
    except TlsSetupError as exc:
        raise StartupError(f"certificates: {exc}", 64) from exc


class _ReloadingSource:
    """The snapshot source, with SIGHUP also re-reading the public certificates."""

    def __init__(self, inner: SnapshotSource, wake: trio.Event) -> None:
        self.inner, self.wake, self.name = inner, wake, inner.name

    async def run(self, apply: Any, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        await self.inner.run(apply, task_status=task_status)

    def reload(self) -> None:
        self.inner.reload()
        self.wake.set()


async def serve_gateway(
    settings: GatewaySettings,
    *,
    control: Control | None = None,
    task_status: trio.TaskStatus[dict[str, Any]] = trio.TASK_STATUS_IGNORED,
) -> None:
    control = control or Control()
    certs = load_certificates(settings)
    host, port = parse_address(settings.listen)
    try:
        listener = bind_listener(host, port)
    except ListenerError as exc:
        raise StartupError(f"listen: {exc}", 69) from exc
    runtime = GatewayRuntime(
        runtime_options(settings), Metrics(), Tap(sys.stdout if settings.access_log else None)
    )
    runtime.certs = certs
    runtime.public = f"{host}:{listener.getsockname()[1]}"
    admission = runtime.admission = Admission(
        settings.max_connections, settings.max_connections_per_client
    )
    wake = trio.Event()
    inner: SnapshotSource
    if settings.snapshot_url:
        from ._agent_source import AgentSource

        inner = AgentSource(settings.snapshot_url)
    else:
        assert settings.snapshot is not None
        inner = FileSource(settings.snapshot, interval=settings.watch_interval)
    source = _ReloadingSource(inner, wake)

    async def accept_loop() -> None:
        metrics = runtime.metrics
        while True:
            try:
                sock = await accept(listener)
            except (trio.ClosedResourceError, OSError):
                return
            try:
                client = sock.getpeername()[0]
            except OSError:
                sock.close()
                continue
            if runtime.draining or not admission.admit(client):
                metrics.add(metrics.refused, (DIRECTION, "connection_limit"))
                sock.close()
                continue
            # In the runtime's connection nursery, so SIGTERM's drain covers it.
            runtime.background(serve_public, runtime, certs, admission, sock, client)

    async def watch_certificates() -> None:
        nonlocal wake
        while True:
            with trio.move_on_after(settings.watch_interval):
                await wake.wait()
            if wake.is_set():
                wake = source.wake = trio.Event()
            certs.reload()

    proxy_done = trio.Event()

    async def run_proxy(task_status: trio.TaskStatus[dict[str, Any]]) -> None:
        try:
            await serve(
                settings,
                control=control,
                source=source,
                runtime=runtime,
                write_ready=False,
                task_status=task_status,
            )
        finally:
            proxy_done.set()

    async def stop_accepting() -> None:
        await control.stop_requested.wait()
        try:
            trio.lowlevel.notify_closing(listener)
        except (ValueError, OSError):
            pass
        listener.close()

    try:
        async with trio.open_nursery() as nursery:
            info = await nursery.start(run_proxy)
            nursery.start_soon(accept_loop)
            nursery.start_soon(watch_certificates)
            nursery.start_soon(stop_accepting)
            info["public"] = runtime.public
            if settings.ready_file is not None:
                write_ready_file(settings.ready_file, info)
            log.info(
                "gateway serving", extra={"kv": {"public": runtime.public, "pid": os.getpid()}}
            )
            task_status.started(info)
            # `serve` returns once SIGTERM's drain is over (our connections are in
            # runtime.connections, so they drain with the rest).
            await proxy_done.wait()
            nursery.cancel_scope.cancel()
    finally:
        listener.close()


async def main(settings: GatewaySettings) -> None:
    """The process: signals wired to `serve_gateway`."""
    control = Control()
    failure: StartupError | None = None
    async with trio.open_nursery() as nursery:
        await nursery.start(watch_signals, control)
        try:
            await serve_gateway(settings, control=control)
        except StartupError as exc:
            failure = exc
        finally:
            nursery.cancel_scope.cancel()
    if failure is not None:
        raise failure
