"""`weft` daemons as real subprocesses, on ports they bind themselves (port 0)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

from ._procs import Proc, spawn, weft_command

_names = itertools.count(1)


class WeftServer:
    """A `weft server` subprocess; `url` and `token` once started."""

    def __init__(
        self,
        etcd_endpoints: Sequence[str],
        prefix: str,
        workdir: Path,
        *,
        args: Sequence[str] = (),
        listen: str = "127.0.0.1:0",
        bootstrap: bool = True,
        open_files: int | None = None,
    ) -> None:
        self.open_files = open_files  # the child's RLIMIT_NOFILE, as LimitNOFILE= sets it
        self.etcd_endpoints = list(etcd_endpoints)
        self.prefix = prefix
        self.name = f"server{next(_names)}"
        self.dir = workdir / self.name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.extra = list(args)
        self.listen = listen
        self.dns_listen = "127.0.0.1:0"
        self.dns = ""  # host:port of the DNS interface (UDP and TCP) once started
        self.bootstrap = bootstrap
        self.proc: Proc | None = None
        self.url = ""
        self.address = ""
        self.token: str | None = None

    @property
    def token_file(self) -> Path:
        return self.dir / "bootstrap-token"

    def command(self) -> list[str]:
        args = [
            *weft_command(),
            "server",
            "--listen",
            self.listen,
            "--etcd-endpoints",
            ",".join(self.etcd_endpoints),
            "--etcd-prefix",
            self.prefix,
            "--ready-file",
            str(self.dir / "ready.json"),
            "--min-deregister-critical-after",
            "1s",
            "--grace",
            "2s",
            "--dns-listen",
            self.dns_listen,
            *self.extra,
        ]
        if self.bootstrap:
            args += ["--bootstrap", "--bootstrap-token-file", str(self.token_file)]
        return args

    def start(self, timeout: float = 30.0) -> WeftServer:
        ready = self.dir / "ready.json"
        ready.unlink(missing_ok=True)
        self.proc = spawn(
            self.command(), log_path=self.dir / "server.log", open_files=self.open_files
        )
        info = self.proc.wait_ready_file(ready, timeout=timeout)
        self.url = info["url"]
        self.address = info["address"]
        self.dns = info.get("dns", "")
        if self.dns:
            self.dns_listen = self.dns
        if self.token is None and self.token_file.exists():
            self.token = self.token_file.read_text().strip()
        # Later restarts reuse the same port, as a real server would.
        self.listen = self.address
        return self

    def log(self) -> str:
        return self.proc.log() if self.proc else ""

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()

    def kill(self) -> None:
        if self.proc:
            self.proc.kill()

    def headers(self, token: str | None = None) -> dict[str, str]:
        token = token or self.token
        return {"X-Consul-Token": token} if token else {}


class WeftAgent:
    """A `weft agent run` subprocess with its own config dir, services.d and data dir."""

    def __init__(
        self,
        server_url: str,
        token: str,
        workdir: Path,
        *,
        node: str,
        extra: dict[str, object] | None = None,
        open_files: int | None = None,
    ) -> None:
        self.open_files = open_files  # the child's RLIMIT_NOFILE, as LimitNOFILE= sets it
        self.node = node
        self.dir = workdir / f"agent-{node}"
        self.services_dir = self.dir / "services.d"
        self.services_dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "token").write_text(token)
        self.token = token
        self.server_url = server_url
        self.extra = dict(extra or {})
        self.proc: Proc | None = None
        self.address = ""
        self.dns = ""  # host:port of the agent's DNS relay, when dns_listen is set

    def config_text(self) -> str:
        import json

        settings: dict[str, object] = {
            "servers": [self.server_url],
            "node_name": self.node,
            "node_address": "127.0.0.1",
            "token_file": str(self.dir / "token"),
            "data_dir": str(self.dir / "data"),
            "services_dir": str(self.services_dir),
            "api_listen": "127.0.0.1:0",
            "ready_file": str(self.dir / "ready.json"),
            "lease_ttl": "5s",
            "grace": "2s",
            **self.extra,
        }
        return "".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items())

    def define(self, name: str, text: str) -> Path:
        path = self.services_dir / f"{name}.toml"
        path.write_text(text)
        return path

    def start(
        self, *, env: dict[str, str] | None = None, wait: bool = True, timeout: float = 60.0
    ) -> WeftAgent:
        config = self.dir / "agent.toml"
        config.write_text(self.config_text())
        ready = self.dir / "ready.json"
        ready.unlink(missing_ok=True)
        self.proc = spawn(
            [*weft_command(), "agent", "run", "--config", str(config)],
            log_path=self.dir / "agent.log",
            env=env,
            open_files=self.open_files,
        )
        if wait:
            info = self.proc.wait_ready_file(ready, timeout=timeout)
            self.address = info["address"]
            self.dns = info.get("dns", "")
        return self

    def status(self) -> dict:
        import httpx

        return httpx.get(f"http://{self.address}/v1/agent/status", timeout=10).json()

    def log(self) -> str:
        return self.proc.log() if self.proc else ""

    def stop(self) -> None:
        if self.proc:
            self.proc.stop(timeout=20)

    def kill(self) -> None:
        if self.proc:
            self.proc.kill()
