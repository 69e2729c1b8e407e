"""`serve`: one proxy process from start to drained exit.

Order of things: settings are valid (the CLI checked them); the runtime starts; the snapshot
source delivers its first document, which must apply (else `StartupError`, exit 64 from the
CLI); the admin listener binds; the ready file is written; `task_status.started(info)`. Then
the proxy serves until `Control.stop()` (SIGTERM/SIGINT): it stops accepting, `/ready` turns
503, in-flight exchanges finish within the drain grace period, and it returns. `Control.reload()`
(SIGHUP) asks the source to deliver again.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from ._admin import AdminServer
from ._errors import ListenerError, StartupError
from ._h1 import Limits
from ._http_forward import HttpOptions
from ._metrics import Metrics, render
from ._options import ServeSettings
from ._runtime import Runtime, RuntimeOptions
from ._source import FileSource, SnapshotSource
from ._span_export import SpanExporter, Tracer
from ._tap import Tap

log = logging.getLogger("weft.proxy")


class Control:
    """How signals, a parent process or a test steer a running proxy."""

    def __init__(self) -> None:
        self.stop_requested = trio.Event()
        self.reload_requested = trio.Event()
        self.force = trio.Event()
        self.source: SnapshotSource | None = None

    def reload(self) -> None:
        self.reload_requested.set()
        if self.source is not None:
            self.source.reload()

    def stop(self) -> None:
        """First call: drain. A second call: stop now."""
        if self.stop_requested.is_set():
            self.force.set()
        self.stop_requested.set()


class LocalAdmin:
    """Admin answers straight from this process's runtime."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def ready(self) -> tuple[bool, str]:
        return self.runtime.ready()

    async def metrics(self) -> bytes:
        return render(self.runtime.metrics.dump)

    async def config(self) -> dict[str, Any]:
        view = self.runtime.view()
        view["pid"] = os.getpid()
        return view

    @asynccontextmanager
    async def tap(self) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        with self.runtime.tap.subscribe() as channel:
            yield channel


def _tracer(settings: ServeSettings) -> Tracer | None:
    """A tracer when a collector is configured; None costs the request path nothing."""
    collector = getattr(settings, "trace_collector", "")
    if not collector:
        return None
    exporter = SpanExporter(collector, lambda: "weft-proxy")
    return Tracer(exporter, getattr(settings, "trace_sampling", 0.01))


def runtime_options(settings: ServeSettings, **extra: Any) -> RuntimeOptions:
    return RuntimeOptions(
        http=HttpOptions(
            tracer=_tracer(settings),
            limits=Limits(settings.max_header_bytes, settings.max_headers),
            header_timeout=settings.header_timeout,
            idle_timeout=settings.idle_timeout,
            body_timeout=settings.body_timeout,
            tunnel_idle_timeout=settings.tunnel_idle_timeout,
        ),
        detect_timeout=settings.detect_timeout,
        reactor=getattr(settings, "io_waits", "trio") == "reactor",
        **extra,
    )


def write_ready_file(path: Path, info: dict[str, Any]) -> None:
    """Atomically, so a reader never sees half a document."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(info, indent=2, sort_keys=True))
    tmp.replace(path)


async def serve(
    settings: ServeSettings,
    *,
    control: Control | None = None,
    source: SnapshotSource | None = None,
    options: RuntimeOptions | None = None,
    admin: bool = True,
    write_ready: bool = True,
    runtime: Runtime | None = None,
    task_status: trio.TaskStatus[dict[str, Any]] = trio.TASK_STATUS_IGNORED,
) -> Runtime:
    control = control or Control()
    if source is None and getattr(settings, "snapshot_url", None):
        from ._agent_source import AgentSource

        source = AgentSource(settings.snapshot_url)  # type: ignore[attr-defined]
    if source is None:
        assert settings.snapshot is not None
        source = FileSource(settings.snapshot, interval=settings.watch_interval)
    control.source = source
    if runtime is None:
        runtime = Runtime(
            options or runtime_options(settings),
            Metrics(),
            Tap(sys.stdout if settings.access_log else None),
        )
    failure: StartupError | None = None
    runtime_done = trio.Event()

    async def run_runtime(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await runtime.run(task_status=task_status)
        finally:
            runtime_done.set()

    async with trio.open_nursery() as nursery:
        await nursery.start(run_runtime)
        info: dict[str, Any] = {
            "pid": os.getpid(),
            "io_waits": getattr(settings, "io_waits", "trio"),
        }
        result = await nursery.start(source.run, runtime.apply)
        if not result.accepted:
            status = 69 if "cannot listen" in result.reason else 64
            failure = StartupError(f"snapshot from {source.name} refused: {result.reason}", status)
        elif admin:
            server = AdminServer(LocalAdmin(runtime), settings.admin)
            try:
                info["address"] = info["admin"] = await nursery.start(server.serve)
            except ListenerError as exc:
                failure = StartupError(str(exc), 69)
        if failure is None:
            info["listeners"] = runtime.addresses()
            info["version"] = runtime.config.snapshot.version if runtime.config else None
            nursery.start_soon(runtime.maintain, settings.watch_interval)
            nursery.start_soon(runtime.sweep)
            tracer = runtime.options.http.tracer
            if tracer is not None:
                tracer.exporter.service = lambda: _service_name(runtime)
                tracer.exporter.counts = runtime.metrics.spans
                nursery.start_soon(tracer.exporter.run)
            if settings.ready_file is not None and write_ready:
                write_ready_file(settings.ready_file, info)
            # What exists now lives as long as the process: keep the cyclic collector from
            # walking it again and again (a full pass over it is a latency spike).
            gc.freeze()
            log.info(
                "proxy serving",
                extra={
                    "kv": {
                        "admin": info.get("admin"),
                        "pid": info["pid"],
                        "io_waits": info["io_waits"],
                    }
                },
            )
            task_status.started(info)

            await control.stop_requested.wait()
            runtime.drain(settings.drain_grace)
            with trio.move_on_after(settings.drain_grace + 1):
                async with trio.open_nursery() as waiter:
                    waiter.start_soon(_cancel_on, control.force, waiter.cancel_scope)
                    await runtime_done.wait()
                    waiter.cancel_scope.cancel()
        nursery.cancel_scope.cancel()
    tracer = runtime.options.http.tracer
    if tracer is not None and failure is None:
        await tracer.exporter.flush()  # what the drained exchanges made (bounded by its timeout)
    if failure is not None:
        raise failure
    log.info("proxy stopped")
    return runtime


def _service_name(runtime: Runtime) -> str:
    config = runtime.config
    return config.snapshot.identity.service if config is not None else "weft-proxy"


async def _cancel_on(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


async def watch_signals(
    control: Control, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """SIGTERM/SIGINT drain (twice: stop now); SIGHUP reloads the snapshot."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        task_status.started()
        async for signum in signals:
            if signum == signal.SIGHUP:
                log.info("SIGHUP: reloading the snapshot")
                control.reload()
            else:
                log.info("stopping", extra={"kv": {"signal": signal.Signals(signum).name}})
                control.stop()


async def main(settings: ServeSettings, **kwargs: Any) -> None:
    """The process: signals wired to `serve`."""
    control = Control()
    failure: StartupError | None = None
    async with trio.open_nursery() as nursery:
        await nursery.start(watch_signals, control)
        try:
            await serve(settings, control=control, **kwargs)
        except StartupError as exc:
            failure = exc
        finally:
            nursery.cancel_scope.cancel()
    if failure is not None:
        raise failure
