"""What the proxy's integration tests share (this module holds no tests).

- `ProxyProc`: a real `weft proxy` subprocess from a snapshot file, found through its ready file
  and driven through its admin listener; always stopped.
- `Mesh`: a test CA plus snapshot builders for services and their sidecars.
- `Background`: trio servers on a background thread with their own event loop, so sync and
  async tests (and module-scoped fixtures) can share them: `HttpApp` (an h11 server, a parser
  independent of the proxy's), `LineEcho`, and a `websockets` echo server.
- `redis_server`: a real redis-server from Debian's package on a free port.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import h11
import trio
import websockets.sync.server
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import Proc, TestCA, TlsPaths, free_port, spawn, wait_until
from tests.harness._procs import weft_command

SCHEMA = "weft.proxy.snapshot/v1"


# -- proxies -----------------------------------------------------------------------------------


class ProxyProc:
    """One `weft proxy` process."""

    def __init__(self, directory: Path, name: str, doc: dict[str, Any], *args: str, env=None):
        self.directory = directory
        self.name = name
        self.snapshot_path = directory / f"{name}.snapshot.json"
        self.ready_path = directory / f"{name}.ready.json"
        self.write_snapshot(doc)
        self.ready_path.unlink(missing_ok=True)
        self.args = [
            *weft_command(),
            "proxy",
            "--snapshot",
            str(self.snapshot_path),
            "--admin",
            "127.0.0.1:0",
            "--ready-file",
            str(self.ready_path),
            "--watch-interval",
            "0.1",
            "--drain-grace",
            "3s",
            *args,
        ]
        self.proc: Proc = spawn(self.args, log_path=directory / f"{name}.log", env=env)
        self.info: dict[str, Any] = {}

    def wait_ready(self, timeout: float = 20.0) -> ProxyProc:
        self.info = self.proc.wait_ready_file(self.ready_path, timeout=timeout)
        return self

    # -- addresses
    @property
    def admin(self) -> str:
        return f"http://{self.info['admin']}"

    def listener(self, label: str) -> int:
        return int(self.listeners()[label].rpartition(":")[2])

    def listeners(self) -> dict[str, str]:
        return self.config()["listeners"]

    @property
    def inbound_port(self) -> int:
        return self.listener("inbound")

    # -- admin
    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.admin + path, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def config(self) -> dict[str, Any]:
        status, body = self.get("/config")
        assert status == 200, body
        return json.loads(body)

    def metrics(self) -> dict[tuple[str, tuple], float]:
        status, body = self.get("/metrics")
        assert status == 200
        out: dict[tuple[str, tuple], float] = {}
        for family in text_string_to_metric_families(body.decode()):
            for s in family.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels`."""
        total = 0.0
        for (sample, sample_labels), value in self.metrics().items():
            if sample == name and set(labels.items()) <= set(sample_labels):
                total += value
        return total

    # -- control
    def write_snapshot(self, doc: dict[str, Any] | str) -> None:
        text = doc if isinstance(doc, str) else json.dumps(doc, indent=2)
        tmp = self.snapshot_path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(self.snapshot_path)

    def wait_applied(self, version: int, timeout: float = 10.0) -> dict[str, Any]:
        return wait_until(
            lambda: (c := self.config())["version"] == version and c,
            timeout=timeout,
            what=f"{self.name} to apply snapshot version {version}",
        )

    def wait_result(self, version: int, timeout: float = 10.0) -> dict[str, Any]:
        """The fate of the last document with `version` (applied or refused)."""
        return wait_until(
            lambda: (r := self.config()["last_result"]) and r["version"] == version and r,
            timeout=timeout,
            what=f"{self.name} to report on snapshot version {version}",
        )

    def sighup(self) -> None:
        self.proc.popen.send_signal(signal.SIGHUP)

    def stop(self) -> int | None:
        return self.proc.stop()

    def kill(self) -> None:
        self.proc.kill()

    def log(self) -> str:
        return self.proc.log()


@contextmanager
def proxies(*procs: ProxyProc) -> Iterator[tuple[ProxyProc, ...]]:
    """Wait until all are ready; stop all at the end, whatever happens."""
    try:
        for p in procs:
            p.wait_ready()
        yield procs
    finally:
        for p in procs:
            p.stop()


# -- snapshots ---------------------------------------------------------------------------------


@dataclass
class Mesh:
    directory: Path
    ca: TestCA = field(default_factory=lambda: TestCA("weft.test"))
    _tls: dict[str, TlsPaths] = field(default_factory=dict)

    def tls(self, service: str) -> TlsPaths:
        if service not in self._tls:
            self._tls[service] = self.ca.issue(service).write(self.directory / "tls" / service)
        return self._tls[service]

    def spiffe(self, service: str) -> str:
        return self.ca.spiffe(service)

    def snapshot(
        self,
        service: str,
        *,
        version: int = 1,
        app_port: int | None = None,
        protocol: str = "http",
        upstreams: list[dict[str, Any]] | None = None,
        forward_proxy: bool = False,
        authorization: dict[str, Any] | None = None,
        tls: TlsPaths | None = None,
        response_ms: int | None = None,
    ) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "schema": SCHEMA,
            "version": version,
            "identity": self.spiffe(service),
            "tls": (tls or self.tls(service)).as_snapshot(),
        }
        if app_port is not None:
            doc["inbound"] = {
                "address": "127.0.0.1",
                "port": 0,
                "protocol": protocol,
                "app": {"port": app_port},
            }
            if response_ms:
                doc["inbound"]["timeouts"] = {"response_ms": response_ms}
        if authorization is not None:
            doc["authorization"] = authorization
        if upstreams:
            doc["upstreams"] = upstreams
        if forward_proxy:
            doc["forward_proxy"] = {"port": 0}
        return doc

    def upstream(
        self,
        name: str,
        ports: list[int] | list[tuple[int, int]],
        *,
        protocol: str = "http",
        balancer: str | None = None,
        identity: str | None = None,
        listen: bool = True,
        **extra: Any,
    ) -> dict[str, Any]:
        endpoints = []
        for item in ports:
            port, weight = item if isinstance(item, tuple) else (item, 1)
            endpoints.append(
                {
                    "address": "127.0.0.1",
                    "port": port,
                    "weight": weight,
                    "identity": identity or self.spiffe(name),
                }
            )
        doc: dict[str, Any] = {"name": name, "protocol": protocol, "endpoints": endpoints, **extra}
        if listen:
            doc["port"] = 0
        if balancer:
            doc["balancer"] = balancer
        return doc


# -- backends on a background trio loop ------------------------------------------------------


class Background:
    """A trio event loop on its own thread that hosts servers for the test."""

    def __enter__(self) -> Background:
        ready = threading.Event()
        self._error: BaseException | None = None

        async def main() -> None:
            self.token = trio.lowlevel.current_trio_token()
            self._stop = trio.Event()
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                ready.set()
                await self._stop.wait()
                nursery.cancel_scope.cancel()

        def run() -> None:
            try:
                trio.run(main)
            except BaseException as exc:  # surfaced by __exit__
                self._error = exc
                ready.set()

        self._thread = threading.Thread(target=run, name="test-backends", daemon=True)
        self._thread.start()
        assert ready.wait(10), "background trio loop did not start"
        return self

    def start(self, async_fn: Callable[..., Any], *args: Any) -> Any:
        return trio.from_thread.run(self.nursery.start, async_fn, *args, trio_token=self.token)

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return trio.from_thread.run_sync(fn, *args, trio_token=self.token)

    def __exit__(self, *exc: object) -> None:
        try:
            trio.from_thread.run_sync(self._stop.set, trio_token=self.token)
        except trio.RunFinishedError:
            pass
        self._thread.join(10)
        if self._error is not None:
            raise self._error


@dataclass
class Seen:
    method: str
    target: str
    headers: dict[str, str]
    body_length: int


class HttpApp:
    """An HTTP/1.1 application (h11) that says who it is and what it received.

    GET /...            200 JSON {instance, method, path, headers}
    POST /echo          200 JSON {length, sha256} of the body, read as it streams in
    GET /chunked?parts=N&size=S   a chunked response of N parts
    GET /status/NNN     that status
    GET /sleep?s=X      answers after X seconds
    GET /flaky?p=P      503 with probability P (0.3), else 200: a seeded draw, so a run of
                        requests in order fails the same way every time
    any other path      ?fail=P: 503 with probability P (the same seeded draw); ?failevery=N:
                        503 to every Nth such request (never N-1 failures in a row);
                        ?sleep=X: answers after X seconds; so a route's own path can fail
    Every answer waits `delay` seconds first (a slow instance).
    """

    def __init__(self, name: str, *, delay: float = 0.0) -> None:
        self.name = name
        self.delay = delay
        self.rng = random.Random(name)
        self.counted = 0  # requests with ?failevery so far
        self.seen: list[Seen] = []
        self.closed_connections = 0
        self.port = 0
        self._scope: trio.CancelScope | None = None

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        with trio.CancelScope() as self._scope:
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            self.port = listeners[0].socket.getsockname()[1]
            task_status.started(self.port)
            await trio.serve_listeners(self._handle, listeners)

    def stop(self) -> None:
        if self._scope is not None:
            self._scope.cancel()

    async def _next(self, conn: h11.Connection, stream: trio.SocketStream) -> Any:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                conn.receive_data(data)
                continue
            return event

    async def _send(self, conn: h11.Connection, stream: trio.SocketStream, *events: Any) -> None:
        for event in events:
            data = conn.send(event)
            if data:
                await stream.send_all(data)

    async def _handle(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=256 * 1024)
        try:
            while True:
                event = await self._next(conn, stream)
                if not isinstance(event, h11.Request):
                    return
                await self._answer(conn, stream, event)
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            return
        finally:
            self.closed_connections += 1
            await stream.aclose()

    async def _answer(
        self, conn: h11.Connection, stream: trio.SocketStream, req: h11.Request
    ) -> None:
        headers = {k.decode().lower(): v.decode() for k, v in req.headers}
        target = req.target.decode()
        url = urlsplit(target)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if conn.they_are_waiting_for_100_continue:
            await self._send(conn, stream, h11.InformationalResponse(status_code=100, headers=[]))
        digest = hashlib.sha256()
        length = 0
        while True:
            event = await self._next(conn, stream)
            if isinstance(event, h11.Data):
                digest.update(event.data)
                length += len(event.data)
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                return
        self.seen.append(Seen(req.method.decode(), target, headers, length))
        if self.delay:
            await trio.sleep(self.delay)
        if url.path == "/echo":
            await self._json(conn, stream, {"length": length, "sha256": digest.hexdigest()})
        elif url.path == "/chunked":
            parts, size = int(query.get("parts", 3)), int(query.get("size", 10))
            await self._send(
                conn,
                stream,
                h11.Response(status_code=200, headers=[("content-type", "text/plain")]),
            )
            for i in range(parts):
                await self._send(conn, stream, h11.Data(data=str(i % 10).encode() * size))
                await trio.sleep(0.005)
            await self._send(conn, stream, h11.EndOfMessage())
        elif url.path.startswith("/status/"):
            await self._json(conn, stream, {"instance": self.name}, status=int(url.path[8:]))
        elif url.path == "/flaky":
            failed = self.rng.random() < float(query.get("p", "0.3"))
            await self._json(conn, stream, {"instance": self.name}, status=503 if failed else 200)
        elif url.path == "/sleep":
            await trio.sleep(float(query.get("s", "1")))
            await self._json(conn, stream, {"instance": self.name})
        else:
            if "sleep" in query:
                await trio.sleep(float(query["sleep"]))
            failed = "fail" in query and self.rng.random() < float(query["fail"])
            if "failevery" in query:
                self.counted += 1
                failed = self.counted % int(query["failevery"]) == 0
            await self._json(
                conn,
                stream,
                {
                    "instance": self.name,
                    "method": req.method.decode(),
                    "path": target,
                    "headers": headers,
                },
                status=503 if failed else 200,
                head_only=req.method == b"HEAD",
            )

    async def _json(
        self,
        conn: h11.Connection,
        stream: trio.SocketStream,
        doc: Any,
        *,
        status: int = 200,
        head_only: bool = False,
    ) -> None:
        body = json.dumps(doc).encode()
        response = h11.Response(
            status_code=status,
            headers=[("content-type", "application/json"), ("content-length", str(len(body)))],
        )
        if head_only:
            await self._send(conn, stream, response, h11.EndOfMessage())
        else:
            await self._send(conn, stream, response, h11.Data(data=body), h11.EndOfMessage())


class LineEcho:
    """A TCP server that sends back whatever it receives."""

    def __init__(self) -> None:
        self.port = 0

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self.port)
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, stream: trio.SocketStream) -> None:
        try:
            while data := await stream.receive_some(65536):
                await stream.send_all(data)
        except trio.BrokenResourceError:
            pass
        finally:
            await stream.aclose()


@contextmanager
def websocket_echo() -> Iterator[int]:
    def echo(ws: Any) -> None:
        for message in ws:
            ws.send(message)

    server = websockets.sync.server.serve(echo, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.socket.getsockname()[1]
    finally:
        server.shutdown()
        thread.join(10)


@contextmanager
def redis_server(directory: Path) -> Iterator[int]:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    proc = spawn(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
        ],
        log_path=directory / "redis.log",
    )
    try:

        def up() -> bool:
            if not proc.alive():
                raise AssertionError(f"redis-server exited:\n{proc.log()}")
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(100).startswith(b"+PONG")

        wait_until(up, timeout=15, what="redis-server to answer PING")
        yield port
    finally:
        proc.stop()


# -- raw sockets -------------------------------------------------------------------------------


def raw_exchange(port: int, data: bytes, *, timeout: float = 5.0) -> bytes:
    """Send `data`, then read until the proxy closes the connection or `timeout` passes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)  # the proxy may answer and close before all of it is sent
        except (BrokenPipeError, ConnectionResetError):
            pass
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else 0


def run_quietly(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False, **kwargs)
