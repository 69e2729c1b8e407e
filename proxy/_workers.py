"""`--workers N`: N proxy processes sharing the listeners with SO_REUSEPORT.

The parent checks the snapshot, reserves a port for every listener the snapshot binds to port
0 (a bound, non-listening SO_REUSEPORT socket, held for its lifetime), and starts N workers:
`weft proxy ... --worker-of <parent pid>` with the reserved ports in `WEFT_PROXY_WORKER_PORTS`
and one end of a socketpair in `WEFT_PROXY_CONTROL_FD`. Every worker binds the same ports with
SO_REUSEPORT, so the kernel spreads connections across them, and reads the snapshot file
itself. The parent runs the admin listener: `/metrics` adds up the workers' numbers, `/ready`
is true when every worker is, `/tap` merges their streams. SIGTERM and SIGHUP are passed on;
a worker that dies is started again; a worker whose parent dies drains and exits.

Control channel (newline-delimited JSON, one socketpair per worker):
    parent → worker  {"id": 7, "op": "stats" | "config" | "ready" | "tap_on" | "tap_off"}
    worker → parent  {"type": "reply", "id": 7, "result": ...} or {"type": "tap", "summary": {...}}
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from ._admin import AdminServer
from ._errors import ProxyError, StartupError
from ._metrics import Metrics, merge, render
from ._options import ServeSettings
from ._runtime import Runtime, _wanted
from ._server import (
    Control,
    runtime_options,
    serve,
    watch_signals,
    write_ready_file,
)
from ._snapshot import parse_snapshot
from ._tap import Tap
from ._tls import load_tls

log = logging.getLogger("weft.proxy")

PORTS_ENV = "WEFT_PROXY_WORKER_PORTS"
CONTROL_ENV = "WEFT_PROXY_CONTROL_FD"
REQUEST_TIMEOUT = 5.0  # a worker that does not answer its parent this fast counts as down


# -- the worker side ------------------------------------------------------------------------


async def _send_line(stream: trio.SocketStream, lock: trio.Lock, doc: dict[str, Any]) -> None:
    async with lock:
        await stream.send_all(json.dumps(doc, separators=(",", ":")).encode() + b"\n")


async def _lines(stream: trio.SocketStream) -> AsyncIterator[dict[str, Any]]:
    buf = b""
    while True:
        data = await stream.receive_some(65536)
        if not data:
            return
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if line:
                yield json.loads(line)


async def _serve_control(stream: trio.SocketStream, runtime: Runtime, control: Control) -> None:
    lock = trio.Lock()
    tapping: trio.CancelScope | None = None

    async def forward_tap(task_status: trio.TaskStatus[trio.CancelScope]) -> None:
        with trio.CancelScope() as scope, runtime.tap.subscribe() as summaries:
            task_status.started(scope)
            async for summary in summaries:
                await _send_line(stream, lock, {"type": "tap", "summary": summary})

    try:
        async with trio.open_nursery() as nursery:
            async for request in _lines(stream):
                op = request.get("op")
                result: Any = None
                if op == "stats":
                    result = runtime.metrics.dump()
                elif op == "config":
                    result = runtime.view()
                    result["pid"] = os.getpid()
                elif op == "ready":
                    result = list(runtime.ready())
                elif op == "tap_on" and tapping is None:
                    tapping = await nursery.start(forward_tap)
                elif op == "tap_off" and tapping is not None:
                    tapping.cancel()
                    tapping = None
                await _send_line(
                    stream, lock, {"type": "reply", "id": request.get("id"), "result": result}
                )
            nursery.cancel_scope.cancel()
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
    log.warning("the parent process is gone; draining")
    control.stop()


async def worker_main(settings: ServeSettings) -> None:
    """One worker: a whole proxy without an admin listener, steered by its parent."""
    overrides = json.loads(os.environ.get(PORTS_ENV, "{}"))
    fd = int(os.environ[CONTROL_ENV])
    options = runtime_options(settings, reuse_port=True, port_overrides=overrides)
    runtime = Runtime(options, Metrics(), Tap(sys.stdout if settings.access_log else None))
    control = Control()
    channel = trio.SocketStream(trio.socket.from_stdlib_socket(socket.socket(fileno=fd)))
    failure: StartupError | None = None
    async with trio.open_nursery() as nursery:
        await nursery.start(watch_signals, control)
        nursery.start_soon(_serve_control, channel, runtime, control)
        try:
            await serve(
                settings,
                control=control,
                options=options,
                admin=False,
                write_ready=False,
                runtime=runtime,
            )
        except StartupError as exc:
            failure = exc
        nursery.cancel_scope.cancel()
    if failure is not None:
        raise failure


# -- the parent side ------------------------------------------------------------------------


class Worker:
    def __init__(self, index: int) -> None:
        self.index = index
        self.process: trio.Process | None = None
        self.stream: trio.SocketStream | None = None
        self._lock = trio.Lock()
        self._next_id = 0
        self._waiting: dict[int, trio.MemorySendChannel[Any]] = {}

    async def request(self, op: str) -> Any:
        if self.stream is None:
            raise ProxyError(f"worker {self.index} is not running")
        self._next_id += 1
        ident = self._next_id
        send, receive = trio.open_memory_channel[Any](1)
        self._waiting[ident] = send
        try:
            with trio.fail_after(REQUEST_TIMEOUT):
                await _send_line(self.stream, self._lock, {"id": ident, "op": op})
                return await receive.receive()
        finally:
            self._waiting.pop(ident, None)

    async def read_replies(self, tap: Tap) -> None:
        assert self.stream is not None
        try:
            async for message in _lines(self.stream):
                if message.get("type") == "tap":
                    tap.publish(message["summary"])
                elif (waiter := self._waiting.get(message.get("id", -1))) is not None:
                    waiter.send_nowait(message.get("result"))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass


class Supervisor:
    """The parent: starts and restarts workers, answers the admin listener for all of them."""

    def __init__(self, settings: ServeSettings, argv: list[str], overrides: dict[str, int]) -> None:
        self.settings = settings
        self.argv = argv
        self.overrides = overrides
        self.workers = [Worker(i) for i in range(settings.workers)]
        self.hub = Tap()  # the workers' tap summaries, merged
        self.stopping = False
        self._tap_users = 0

    def _command(self) -> list[str]:
        args = list(self.argv[1:])
        return [sys.executable, "-m", "weft", *args, "--worker-of", str(os.getpid())]

    async def run_worker(self, worker: Worker) -> None:
        while not self.stopping:
            parent_end, child_end = socket.socketpair()
            env = dict(os.environ)
            env[PORTS_ENV] = json.dumps(self.overrides)
            env[CONTROL_ENV] = str(child_end.fileno())
            env.pop("WEFT_PROXY_READY_FILE", None)
            process = await trio.lowlevel.open_process(
                self._command(), env=env, pass_fds=(child_end.fileno(),)
            )
            child_end.close()
            worker.process = process
            worker.stream = trio.SocketStream(trio.socket.from_stdlib_socket(parent_end))
            async with trio.open_nursery() as nursery:
                nursery.start_soon(worker.read_replies, self.hub)
                if self._tap_users:
                    nursery.start_soon(self._quietly, worker, "tap_on")
                status = await process.wait()
                nursery.cancel_scope.cancel()
            worker.stream = None
            if self.stopping:
                return
            log.warning(
                "worker exited; starting it again",
                extra={"kv": {"worker": worker.index, "status": status}},
            )
            await trio.sleep(1.0)

    async def _quietly(self, worker: Worker, op: str) -> None:
        try:
            await worker.request(op)
        except (ProxyError, trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    def signal_all(self, signum: int) -> None:
        for worker in self.workers:
            if worker.process is not None and worker.process.returncode is None:
                worker.process.send_signal(signum)

    # -- admin provider
    async def _gather(self, op: str) -> list[Any]:
        results: list[Any] = [None] * len(self.workers)

        async def one(i: int, worker: Worker) -> None:
            try:
                results[i] = await worker.request(op)
            except (
                ProxyError,
                trio.TooSlowError,
                trio.BrokenResourceError,
                trio.ClosedResourceError,
            ):
                results[i] = None

        async with trio.open_nursery() as nursery:
            for i, worker in enumerate(self.workers):
                nursery.start_soon(one, i, worker)
        return results

    async def ready(self) -> tuple[bool, str]:
        if self.stopping:
            return False, "draining"
        answers = await self._gather("ready")
        for worker, answer in zip(self.workers, answers, strict=True):
            if not answer or not answer[0]:
                why = answer[1] if answer else "not answering"
                return False, f"worker {worker.index}: {why}"
        return True, f"{len(self.workers)} workers ready; {answers[0][1]}"

    async def metrics(self) -> bytes:
        dumps = [d for d in await self._gather("stats") if d]
        merged = merge(dumps) if dumps else Metrics().dump()
        return render(lambda: merged)

    async def config(self) -> dict[str, Any]:
        views = await self._gather("config")
        first: dict[str, Any] = next((v for v in views if v), {})
        doc = dict(first)
        doc["pid"] = os.getpid()
        doc["workers"] = [
            {
                "index": w.index,
                "pid": v["pid"] if v else None,
                "version": v["version"] if v else None,
                "requests": v["requests"] if v else None,
            }
            for w, v in zip(self.workers, views, strict=True)
        ]
        return doc

    @asynccontextmanager
    async def tap(self) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        with self.hub.subscribe() as channel:
            self._tap_users += 1
            if self._tap_users == 1:
                await self._gather("tap_on")
            try:
                yield channel
            finally:
                self._tap_users -= 1
                if self._tap_users == 0:
                    with trio.CancelScope(shield=True):
                        await self._gather("tap_off")


def _reserve_ports(settings: ServeSettings) -> tuple[dict[str, int], list[socket.socket]]:
    """Check the snapshot as a worker would, and hold a port for each port-0 listener."""
    assert settings.snapshot is not None
    try:
        snapshot = parse_snapshot(Path(settings.snapshot).read_bytes())
        load_tls(snapshot.tls, snapshot.identity)
    except OSError as exc:
        raise StartupError(
            f"cannot read the snapshot {settings.snapshot}: {exc.strerror}", 64
        ) from exc
    except ProxyError as exc:
        raise StartupError(f"snapshot {settings.snapshot} refused: {exc}", 64) from exc
    overrides: dict[str, int] = {}
    held: list[socket.socket] = []
    for (role, name), (address, port) in _wanted(snapshot).items():
        if port:
            continue
        sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((address, 0))
        held.append(sock)
        overrides[f"{role}/{name}" if name else role] = sock.getsockname()[1]
    return overrides, held


async def _supervise(settings: ServeSettings, argv: list[str]) -> None:
    overrides, held = _reserve_ports(settings)
    supervisor = Supervisor(settings, argv, overrides)
    control = Control()
    async with trio.open_nursery() as nursery:
        await nursery.start(watch_signals, control)
        for worker in supervisor.workers:
            nursery.start_soon(supervisor.run_worker, worker)
        admin = AdminServer(supervisor, settings.admin)
        address = await nursery.start(admin.serve)
        with trio.move_on_after(60):
            while not (await supervisor.ready())[0]:
                if control.stop_requested.is_set():
                    break
                await trio.sleep(0.05)
        info = {
            "pid": os.getpid(),
            "address": address,
            "admin": address,
            "workers": [w.process.pid if w.process else None for w in supervisor.workers],
            "listeners": (await supervisor.config()).get("listeners", {}),
        }
        if settings.ready_file is not None:
            write_ready_file(settings.ready_file, info)
        log.info(
            "workers serving", extra={"kv": {"workers": len(supervisor.workers), "admin": address}}
        )

        async def forward_reloads() -> None:
            while True:
                await control.reload_requested.wait()
                control.reload_requested = trio.Event()
                supervisor.signal_all(signal.SIGHUP)

        nursery.start_soon(forward_reloads)
        await control.stop_requested.wait()
        supervisor.stopping = True
        supervisor.signal_all(signal.SIGTERM)
        with trio.move_on_after(settings.drain_grace + 5):
            for worker in supervisor.workers:
                if worker.process is not None:
                    await worker.process.wait()
        supervisor.signal_all(signal.SIGKILL)
        nursery.cancel_scope.cancel()
    for sock in held:
        sock.close()


def run_workers(settings: ServeSettings, argv: list[str]) -> None:
    """The parent process; StartupError if the snapshot cannot be served."""
    trio.run(_supervise, settings, argv)
