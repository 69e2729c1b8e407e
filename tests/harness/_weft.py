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
    ) -> None:
        self.etcd_endpoints = list(etcd_endpoints)
        self.prefix = prefix
        self.name = f"server{next(_names)}"
        self.dir = workdir / self.name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.extra = list(args)
        self.listen = listen
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
            *self.extra,
        ]
        if self.bootstrap:
            args += ["--bootstrap", "--bootstrap-token-file", str(self.token_file)]
        return args

    def start(self, timeout: float = 30.0) -> WeftServer:
        ready = self.dir / "ready.json"
        ready.unlink(missing_ok=True)
        self.proc = spawn(self.command(), log_path=self.dir / "server.log")
        info = self.proc.wait_ready_file(ready, timeout=timeout)
        self.url = info["url"]
        self.address = info["address"]
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
