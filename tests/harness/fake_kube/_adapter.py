"""`weft k8s-adapter` as a real subprocess, pointed at a FakeKube and a `weft server`."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from .._procs import Proc, spawn, weft_command
from .._wait import wait_until

if TYPE_CHECKING:
    from . import FakeKube

_names = itertools.count(1)

# Short timings so tests see elections, resyncs and reconnects in seconds.
FAST = (
    "--coalesce",
    "20ms",
    "--lease-duration",
    "3s",
    "--renew-deadline",
    "2s",
    "--retry-period",
    "0.4s",
    "--watch-timeout",
    "30s",
    "--resync",
    "60s",
    "--grace",
    "3s",
)


def adapter_token(server_url: str, operator_token: str, cluster: str) -> str:
    """A registry token for the adapter of `cluster` (role adapter, source k8s/<cluster>)."""
    resp = httpx.post(
        f"{server_url}/v1/tokens",
        headers={"X-Consul-Token": operator_token},
        json={"role": "adapter", "source": f"k8s/{cluster}", "description": "test adapter"},
    )
    resp.raise_for_status()
    return str(resp.json()["secret"])


class K8sAdapter:
    def __init__(
        self,
        fake: FakeKube,
        registry_url: str,
        token: str,
        workdir: Path,
        *,
        cluster: str = "c1",
        identity: str | None = None,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.fake = fake
        self.registry_url = registry_url
        self.token = token
        self.cluster = cluster
        self.identity = identity or f"adapter-{next(_names)}"
        self.dir = workdir / self.identity
        self.dir.mkdir(parents=True, exist_ok=True)
        self.extra = list(args)
        self.env = dict(env or {})
        self.proc: Proc | None = None
        self.url = ""
        fake.ensure_namespace("weft-system")

    def command(self) -> list[str]:
        kubeconfig = self.fake.write_kubeconfig(self.dir / "kubeconfig")
        return [
            *weft_command(),
            "k8s-adapter",
            "--cluster",
            self.cluster,
            "--registry",
            self.registry_url,
            "--kubeconfig",
            str(kubeconfig),
            "--identity",
            self.identity,
            "--lease-namespace",
            "weft-system",
            "--health-listen",
            "127.0.0.1:0",
            "--ready-file",
            str(self.dir / "ready.json"),
            *FAST,
            *self.extra,
        ]

    def start(self, timeout: float = 30.0) -> K8sAdapter:
        ready = self.dir / "ready.json"
        ready.unlink(missing_ok=True)
        env = {"WEFT_K8S_REGISTRY_TOKEN": self.token, **self.env}
        self.proc = spawn(self.command(), log_path=self.dir / "adapter.log", env=env)
        info = self.proc.wait_ready_file(ready, timeout=timeout)
        self.url = info["url"]
        return self

    def status(self) -> dict[str, Any]:
        resp = httpx.get(f"{self.url}/status", timeout=5)
        resp.raise_for_status()
        return dict(resp.json())

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout: float = 30.0) -> K8sAdapter:
        wait_until(self.ready, timeout=timeout, what=f"{self.identity} to be ready:\n{self.tail()}")
        return self

    def wait_in_sync(self, timeout: float = 30.0) -> dict[str, Any]:
        def in_sync() -> dict[str, Any] | None:
            status = self.status()
            sync = status["registry_sync"]
            return status if status["leader"] and sync["in_sync"] else None

        return wait_until(in_sync, timeout=timeout, what=f"{self.identity} to be in sync")

    def leader(self) -> bool:
        try:
            return bool(self.status()["leader"])
        except (httpx.HTTPError, KeyError, json.JSONDecodeError):
            return False

    def tail(self, chars: int = 3000) -> str:
        return self.proc.log()[-chars:] if self.proc else ""

    def log(self) -> str:
        return self.proc.log() if self.proc else ""

    def signal(self, sig: int) -> None:
        if self.proc:
            self.proc.signal(sig)

    def stop(self) -> int | None:
        return self.proc.stop() if self.proc else None

    def kill(self) -> None:
        if self.proc:
            self.proc.kill()


class Adapters:
    """The adapters one test starts against one fake cluster and one registry server; the
    test's fixture calls `stop_all()` so no process outlives its test."""

    def __init__(self, fake: FakeKube, registry_url: str, operator_token: str, workdir: Path):
        self.fake = fake
        self.registry_url = registry_url
        self.operator_token = operator_token
        self.workdir = workdir
        self.started: list[K8sAdapter] = []

    def start(
        self,
        *args: str,
        cluster: str = "c1",
        identity: str | None = None,
        env: dict[str, str] | None = None,
        wait: bool = True,
    ) -> K8sAdapter:
        token = adapter_token(self.registry_url, self.operator_token, cluster)
        adapter = K8sAdapter(
            self.fake,
            self.registry_url,
            token,
            self.workdir,
            cluster=cluster,
            identity=identity,
            args=args,
            env=env,
        )
        self.started.append(adapter)
        return adapter.start() if wait else adapter

    def stop_all(self) -> None:
        for adapter in self.started:
            adapter.stop()
