"""One `weft proxy` process per local service with a sidecar, restarted if it dies.

Why the agent supervises proxies instead of one systemd unit per proxy: a single unit to
install and harden, the same behaviour with and without systemd (demo, containers, tests), and
the agent already knows each proxy's applied snapshot version and certificate state. Upgrades
drain a host through the registry (maintenance) before restarting it, so proxies restarting with
the agent costs no requests; while the agent runs, proxies keep serving on their last snapshot
whatever happens to the servers.

Each proxy runs in its own process group; stopping sends SIGTERM (the proxy drains in-flight
requests within its grace period) and SIGKILL after it. A proxy left over by an agent that was
killed (outside systemd, which cleans the unit's cgroup) keeps serving its last snapshot until
the next agent starts and stops it first (`reap_leftovers`), so its ports are free again.
(Not PR_SET_PDEATHSIG: trio starts processes from a worker thread, and the signal would come
when that thread exits, not when the agent does.)
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from registry.lifecycle import Backoff

log = logging.getLogger("weft.agent.proxies")


@dataclass(frozen=True)
class ProxySpec:
    proxy_id: str
    admin_port: int = 0  # 0: any free port (reported in the ready file)


@dataclass
class Running:
    spec: ProxySpec
    pid: int | None = None
    restarts: int = 0
    started_at: float = 0.0
    last_exit: int | None = None
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)


class ProxySupervisor:
    def __init__(
        self,
        *,
        command: Sequence[str],
        api_url: str,
        run_dir: Path,
        workers: int = 1,
        grace: float = 10.0,
        extra_env: dict[str, str] | None = None,
        admin_host: str = "127.0.0.1",
    ) -> None:
        self.command = list(command) or [sys.executable, "-m", "weft", "proxy"]
        self.api_url = api_url
        self.run_dir = run_dir
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.workers = workers
        self.grace = grace
        self.extra_env = extra_env or {}
        self.admin_host = admin_host
        self.running: dict[str, Running] = {}
        self._nursery: trio.Nursery | None = None
        self._pending: list[Running] = []

    def ready_file(self, proxy_id: str) -> Path:
        return self.run_dir / f"{proxy_id}.json"

    def admin_address(self, proxy_id: str) -> str | None:
        try:
            return json.loads(self.ready_file(proxy_id).read_text()).get("admin")
        except (OSError, ValueError):
            return None

    def reap_leftovers(self) -> int:
        """Stop proxies a previous agent on this data dir left running; returns how many."""
        return reap_leftovers(self.run_dir, self.grace)

    def set_proxies(self, specs: Sequence[ProxySpec]) -> None:
        wanted = {s.proxy_id: s for s in specs}
        for proxy_id, running in list(self.running.items()):
            if wanted.get(proxy_id) != running.spec:
                running.scope.cancel()
                del self.running[proxy_id]
        for proxy_id, spec in wanted.items():
            if proxy_id not in self.running:
                running = Running(spec)
                self.running[proxy_id] = running
                if self._nursery is not None:
                    self._nursery.start_soon(self._supervise, running)
                else:
                    self._pending.append(running)

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for running in self._pending:
                nursery.start_soon(self._supervise, running)
            self._pending = []
            await trio.sleep_forever()

    def _argv(self, spec: ProxySpec) -> list[str]:
        return [
            *self.command,
            "--snapshot-url",
            f"{self.api_url}/v1/agent/proxy/{spec.proxy_id}",
            "--admin",
            f"{self.admin_host}:{spec.admin_port}",
            "--ready-file",
            str(self.ready_file(spec.proxy_id)),
            "--workers",
            str(self.workers),
            "--drain-grace",
            f"{self.grace}s",
        ]

    async def _supervise(self, running: Running) -> None:
        backoff = Backoff(initial=1.0, maximum=30.0)
        with running.scope:
            while True:
                self.ready_file(running.spec.proxy_id).unlink(missing_ok=True)
                proc = await trio.lowlevel.open_process(
                    self._argv(running.spec),
                    start_new_session=True,
                    stdin=subprocess.DEVNULL,
                    env={**os.environ, **self.extra_env},
                )
                running.pid, running.started_at = proc.pid, trio.current_time()
                log.info(
                    "proxy started", extra={"kv": {"proxy": running.spec.proxy_id, "pid": proc.pid}}
                )
                try:
                    code = await proc.wait()
                finally:
                    if proc.returncode is None:
                        with trio.CancelScope(shield=True):
                            await self._stop(proc)
                running.last_exit, running.pid = code, None
                ran = trio.current_time() - running.started_at
                if ran > 30:  # it ran well for a while: this is a new failure, not a crash loop
                    backoff.reset()
                delay = backoff.next()
                running.restarts += 1
                log.warning(
                    "proxy exited; restarting",
                    extra={
                        "kv": {
                            "proxy": running.spec.proxy_id,
                            "status": code,
                            "in_seconds": round(delay, 3),
                        }
                    },
                )
                await trio.sleep(delay)

    async def _stop(self, proc: trio.Process) -> None:
        _signal_group(proc.pid, signal.SIGTERM)
        with trio.move_on_after(self.grace + 2):
            await proc.wait()
        if proc.returncode is None:
            _signal_group(proc.pid, signal.SIGKILL)
            await proc.wait()
        _signal_group(proc.pid, signal.SIGKILL)  # anything left in its group (workers)

    def describe(self) -> dict[str, Any]:
        return {
            proxy_id: {
                "pid": r.pid,
                "restarts": r.restarts,
                "last_exit": r.last_exit,
                "admin": self.admin_address(proxy_id),
            }
            for proxy_id, r in self.running.items()
        }


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def reap_leftovers(run_dir: Path, grace: float) -> int:
    """Stop proxies a previous agent on this data dir left running; returns how many."""
    reaped = 0
    for ready in run_dir.glob("*.json"):
        try:
            pid = int(json.loads(ready.read_text())["pid"])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, KeyError, TypeError):
            ready.unlink(missing_ok=True)
            continue
        if str(ready).encode() not in cmdline:
            ready.unlink(missing_ok=True)
            continue  # the pid was reused by something else
        log.warning(
            "stopping a proxy left over by a previous agent",
            extra={"kv": {"pid": pid, "proxy": ready.stem}},
        )
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace + 2
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        _signal_group(pid, signal.SIGKILL)
        ready.unlink(missing_ok=True)
        reaped += 1
    return reaped
