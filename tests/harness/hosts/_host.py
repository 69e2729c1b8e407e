"""A real systemd host on this machine: systemd as PID 1 in its own namespaces over a Debian root.

How a host boots (see docs/testing.md for why):
  sh -c 'echo $$ > <cgroup>/cgroup.procs; exec "$@"' \
    setpriv --pdeathsig KILL -- \
    unshare --cgroup --pid --fork --mount --uts --ipc --propagation private --kill-child -- \
    sh boot.sh            # overlay root, /proc, ro /sys, cgroup2, /dev, /run; pivot_root
      exec systemd        # as PID 1, container=weft-testhost
The network namespace is the machine's: each host's sshd listens on its own loopback port, and
the host reaches the machine's loopback services (etcd, `weft server`) as they are.
Commands run inside through `nsenter` into the host's namespaces and root.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .._procs import free_port
from .._wait import wait_until
from . import _cgroup, _runs
from ._console import Console
from ._layers import Stage, copy_root, overlay_supported
from ._results import HostError, RunResult, wait_raising
from ._root import ensure_root
from ._shell import HostShell
from ._ssh import SshKeyPair, ssh_client_options

BOOT_SH = Path(__file__).with_name("boot.sh")
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")


@dataclass(frozen=True)
class Bind:
    """A machine path mounted into the host when it boots, at `target` (default: the same path).

    Read-only unless `readonly=False`. The mount lives in the host's mount namespace only.
    """

    source: Path
    target: str | None = None
    readonly: bool = True

    def line(self, lower: Path) -> str:
        target = self.target or str(Path(self.source).resolve())
        source = str(Path(self.source).resolve())
        if not Path(source).exists():
            raise ValueError(f"bind source {source} does not exist")
        if not target.startswith("/") or ".." in Path(target).parts:
            raise ValueError(f"bind target {target!r} must be an absolute path without '..'")
        if any(c in path for path in (source, target) for c in "\t\n"):
            raise ValueError(f"bind paths must not contain tabs or newlines: {source!r}")
        current = lower
        for part in Path(target).parts[1:]:
            current = current / part
            if current.is_symlink() and os.readlink(current).startswith("/"):
                # boot.sh resolves the target before pivot_root: it would land on the machine.
                raise ValueError(f"bind target {target} passes the absolute symlink {current}")
        return f"{'ro' if self.readonly else 'rw'}\t{source}\t{target}"


_ports_lock = threading.Lock()
_ports_given: set[int] = set()


def unique_free_port() -> int:
    """A loopback port the kernel just proved free and this process has not handed out before."""
    with _ports_lock:
        while True:
            port = free_port()
            if port not in _ports_given:
                _ports_given.add(port)
                return port


class SystemdHost(HostShell):
    """One booted Debian host. `start()` it, use it, `stop()` it (also on failure: use `with`).

    `address`/`ssh_port` are where its sshd listens (root, key `ssh_key`); `pid` is its PID 1 as
    the machine sees it; `failed_units` lists what had failed when it reached `degraded`.
    Running commands, systemctl, the journal and files: see `HostShell`.
    """

    address = "127.0.0.1"

    def __init__(
        self,
        name: str,
        *,
        ssh_key: SshKeyPair | None = None,
        ssh_port: int | None = None,
        root: Path | None = None,
        logs_dir: Path | None = None,
        binds: Sequence[Bind] = (),
        storage: Literal["auto", "overlay", "copy"] = "auto",
        boot_timeout: float = 90.0,
    ) -> None:
        super().__init__()
        if not _NAME.match(name):
            raise ValueError(f"host name {name!r} must match {_NAME.pattern} (it is the hostname)")
        self.name = name
        self.ssh_key = ssh_key
        self.ssh_port = (
            ssh_port if ssh_port is not None else (unique_free_port() if ssh_key else None)
        )
        self.root = root
        self.logs_dir = logs_dir
        self.binds = tuple(binds)
        self.storage = storage
        self.boot_timeout = boot_timeout
        self.id = f"{name}-{os.getpid()}-{secrets.token_hex(3)}"
        self.dir = _runs.run_base() / self.id
        self.cgroup: Path | None = None
        self.pid: int | None = None
        self.mode: str | None = None  # "overlay" or "copy"
        self.failed_units: list[str] = []
        self._popen: subprocess.Popen[bytes] | None = None
        self._console: Console | None = None
        self._stop_lock = threading.Lock()
        self._stopped = False

    def __repr__(self) -> str:
        return f"<SystemdHost {self.name} pid={self.pid} ssh={self.address}:{self.ssh_port}>"

    def __enter__(self) -> SystemdHost:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self, *, wait: bool = True) -> SystemdHost:
        """Prepare the root and boot; with `wait`, return once systemd is up (and sshd serves)."""
        _runs.reap_stale_hosts_once()
        lower = self.root or ensure_root()
        _runs.register(self)
        try:
            self._prepare(lower)
            self._boot(lower)
            if wait:
                self.wait_until_running()
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def known_hosts(self) -> Path:
        return self.dir / "known_hosts"

    @property
    def console_path(self) -> Path:
        return self.dir / "console.log"

    def _prepare(self, lower: Path) -> None:
        self.dir.mkdir(parents=True)
        self.cgroup = _cgroup.create(self.id)
        record = {**_runs.owner_record(), "cgroup": str(self.cgroup), "name": self.name}
        (self.dir / "owner.json").write_text(json.dumps(record))
        if self.storage == "overlay" or (
            self.storage == "auto" and overlay_supported(lower, self.dir.parent)
        ):
            self.mode = "overlay"
            for layer in ("upper", "work", "merged"):
                (self.dir / layer).mkdir()
            stage = Stage(self.dir / "upper", lower)
        else:
            self.mode = "copy"
            (self.dir / "merged").mkdir()
            copy_root(lower, self.dir / "merged")
            stage = Stage(self.dir / "merged", lower)
        stage.write("etc/hostname", f"{self.name}\n")
        stage.write("etc/machine-id", uuid.uuid4().hex + "\n", 0o444)
        stage.write(
            "etc/hosts",
            f"127.0.0.1\tlocalhost\n127.0.1.1\t{self.name}\n"
            "::1\tlocalhost ip6-localhost ip6-loopback\n",
        )
        try:
            stage.write("etc/resolv.conf", Path("/etc/resolv.conf").read_text())
        except OSError:
            pass
        if self.ssh_key is not None:
            self._stage_sshd(stage)
        self.console_path.touch()

    def _stage_sshd(self, stage: Stage) -> None:
        assert self.ssh_key is not None
        host_key = SshKeyPair.generate(self.dir / "hostkey", "ssh_host_ed25519_key", self.name)
        stage.write("etc/ssh/ssh_host_ed25519_key", host_key.private.read_bytes(), 0o600)
        stage.write("etc/ssh/ssh_host_ed25519_key.pub", host_key.public.read_bytes())
        stage.write("etc/ssh/sshd_config.d/00-weft-testhost-listen.conf", self._sshd_config())
        stage.write("root/.ssh/authorized_keys", self.ssh_key.public_text() + "\n", 0o600)
        stage.symlink(
            "etc/systemd/system/multi-user.target.wants/ssh.service",
            "/lib/systemd/system/ssh.service",
        )
        self._host_key_line = " ".join(host_key.public_text().split()[:2])
        self._write_known_hosts()

    def _sshd_config(self) -> str:
        return (
            f"Port {self.ssh_port}\nListenAddress {self.address}\n"
            "HostKey /etc/ssh/ssh_host_ed25519_key\n"
        )

    def _write_known_hosts(self) -> None:
        self.known_hosts.write_text(f"[{self.address}]:{self.ssh_port} {self._host_key_line}\n")

    def _boot(self, lower: Path) -> None:
        assert self.cgroup is not None
        self._console = Console(self.console_path)
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "ROOT": str(self.dir / "merged"),
            "HOSTNAME_": self.name,
            "CONSOLE": self._console.device,
            "GO": str(self.dir / "go"),
        }
        if self.mode == "overlay":
            env.update(LOWER=str(lower), UPPER=str(self.dir / "upper"), WORK=str(self.dir / "work"))
        else:
            env["COPY"] = "1"
        if self.binds:
            env["BINDS"] = "\n".join(bind.line(lower) for bind in self.binds)
        args = [
            "/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.cgroup / "cgroup.procs"),
            "setpriv", "--pdeathsig", "KILL", "--",
            "unshare", "--cgroup", "--pid", "--fork", "--mount", "--uts", "--ipc",
            "--propagation", "private", "--kill-child", "--",
            "/bin/sh", str(BOOT_SH),
        ]  # fmt: skip
        with open(self.dir / "boot.log", "ab") as log:
            self._popen = _runs.popen_from_long_lived_thread(
                args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True,
            )  # fmt: skip
        popen = self._popen

        def pid_one() -> int | None:
            if popen.poll() is not None:
                raise HostError(f"host {self.name} exited {popen.returncode} while booting\n"
                                + self._diagnostics())  # fmt: skip
            children = Path(f"/proc/{popen.pid}/task/{popen.pid}/children").read_text().split()
            return int(children[0]) if children else None

        self.pid = wait_raising(pid_one, timeout=30, what=f"PID 1 of host {self.name}")
        # The host's cgroup should hold only the host: put `unshare` back where we are, then
        # let boot.sh go on.
        _cgroup.move(popen.pid, _cgroup.own_cgroup())
        (self.dir / "go").touch()

    def alive(self) -> bool:
        return self._popen is not None and self._popen.poll() is None and not self._killed

    def wait_until_running(self, timeout: float | None = None) -> str:
        """Poll `systemctl is-system-running` until `running` or `degraded`; return that state.

        Units that had failed are in `failed_units`. sshd (when the host has a key) must be
        active and accepting: if its port was taken meanwhile, it moves to a fresh port.
        """
        timeout = self.boot_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout

        def settled() -> str | None:
            if not self.alive():
                raise HostError(f"host {self.name} died while booting\n" + self._diagnostics())
            state = self.run(["systemctl", "is-system-running"], timeout=15).stdout.strip()
            if state in ("running", "degraded"):
                return state
            if state in ("maintenance", "stopping"):
                raise HostError(f"host {self.name} is {state}\n" + self._diagnostics())
            return None  # offline (systemd not yet exec'd), initializing, starting, no bus yet

        state = wait_raising(
            settled, timeout=timeout, what=f"host {self.name} to reach running/degraded",
            on_timeout=self._diagnostics,
        )  # fmt: skip
        if self.ssh_key is not None:
            self._ensure_sshd(deadline)
            state = self.run(["systemctl", "is-system-running"], timeout=15).stdout.strip()
        self.failed_units = self._failed_units()
        return state

    def _failed_units(self) -> list[str]:
        out = self.systemctl("list-units", "--failed", "--plain", "--no-legend", check=False)
        return [line.split()[0] for line in out.stdout.splitlines() if line.strip()]

    def _ensure_sshd(self, deadline: float) -> None:
        for _attempt in range(3):

            def settled() -> str | None:
                state = self.unit_property("ssh.service", "ActiveState")
                return state if state in ("active", "failed", "inactive") else None

            state = wait_raising(
                settled, timeout=max(1.0, deadline - time.monotonic()), what="ssh.service to settle"
            )
            if state == "active":
                wait_until(
                    lambda: _sshd_answers(self.address, self.ssh_port),
                    timeout=max(1.0, deadline - time.monotonic()),
                    what=f"sshd of {self.name} to accept on port {self.ssh_port}",
                )
                return
            # Most likely another process took the port between free_port() and sshd's bind.
            self.ssh_port = unique_free_port()
            self.write_file("/etc/ssh/sshd_config.d/00-weft-testhost-listen.conf",
                            self._sshd_config())  # fmt: skip
            self._write_known_hosts()
            self.systemctl("reset-failed", "ssh.service", check=False)
            self.systemctl("restart", "ssh.service", check=False)
        raise HostError(f"sshd of host {self.name} would not start\n" + self._diagnostics())

    def stop(self) -> None:
        """SIGKILL PID 1 and everything in the host's cgroup; remove its cgroup and directory.

        Every mount of the host lives in its private mount namespace, which the kernel
        discards with its last process: there is nothing to unmount.
        """
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
        try:
            self._save_logs()
            self._killed = True  # no more commands inside from here on
            if self.cgroup is not None:
                if self.pid is not None and self.pid in _cgroup.pids(self.cgroup):
                    _kill(self.pid)
                _cgroup.kill(self.cgroup)
            if self._popen is not None:
                try:
                    self._popen.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    _kill(self._popen.pid)
                    self._popen.wait(timeout=10)
            if self.cgroup is not None:
                _cgroup.remove(self.cgroup, timeout=15)
            if self._console is not None:
                self._console.close()
        finally:
            if self.dir.exists():
                shutil.rmtree(self.dir, ignore_errors=True)
            _runs.unregister(self)

    def poweroff(self, timeout: float = 60.0) -> None:
        """Shut down as a VM would (`systemctl poweroff`: units stopped in order), then `stop()`.

        A failed or hung shutdown raises HostError after the host has been cleaned up anyway.
        """
        popen = self._popen
        try:
            if popen is None or not self.alive():
                raise HostError(f"host {self.name} is not running")
            self._save_logs()  # the journal is gone with the host
            self.systemctl("poweroff", "--no-block")
            try:
                popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                raise HostError(
                    f"host {self.name} did not power off within {timeout}s\n" + self._diagnostics()
                ) from None
        finally:
            self.stop()

    def _save_logs(self) -> None:
        if self.logs_dir is None or self._popen is None:
            return
        try:
            self.logs_dir.mkdir(parents=True, exist_ok=True)
            if self.console_path.exists():
                shutil.copyfile(self.console_path, self.logs_dir / f"{self.name}.console.log")
            if self._popen.poll() is None and self.pid is not None:
                journal = self.run(["journalctl", "-b", "--no-pager", "-o", "short-precise"],
                                   timeout=15).stdout  # fmt: skip
                (self.logs_dir / f"{self.name}.journal.log").write_text(journal)
        except Exception:  # logs are a courtesy; stopping must go on
            pass

    def _diagnostics(self) -> str:
        parts = []
        for label, path in (("boot log", self.dir / "boot.log"), ("console", self.console_path)):
            try:
                parts.append(f"--- {label} ---\n{path.read_text(errors='replace')[-3000:]}")
            except OSError:
                pass
        if self.alive() and self.pid is not None:
            try:
                failed = self.systemctl("--failed", "--no-pager", check=False, timeout=10).stdout
                journal = self.run(["journalctl", "-b", "--no-pager", "-n", "60"], timeout=10)
                parts.append(f"--- failed units ---\n{failed}--- journal ---\n{journal.stdout}")
            except HostError:
                pass
        return "\n".join(parts)

    # -- from the machine --------------------------------------------------------------------------

    def console_log(self) -> str:
        try:
            return self.console_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def pids(self) -> list[int]:
        """Machine pids of every process in the host's cgroup (its PID 1 and its units)."""
        return _cgroup.pids(self.cgroup) if self.cgroup and self.cgroup.exists() else []

    def ssh_command(self, *remote: str) -> list[str]:
        """argv for the machine's ssh client to run `remote` as root on this host."""
        if self.ssh_key is None:
            raise HostError(f"host {self.name} was started without an SSH key")
        return [
            "ssh", *ssh_client_options(self.ssh_key, self.known_hosts), "-p", str(self.ssh_port),
            f"root@{self.address}", *remote,
        ]  # fmt: skip

    def ssh(self, *remote: str, timeout: float = 60.0) -> RunResult:
        args = self.ssh_command(*remote)
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)  # fmt: skip
        return RunResult(tuple(args), proc.returncode, proc.stdout, proc.stderr)

    def ansible_vars(self) -> dict[str, Any]:
        """Inventory variables that let Ansible reach this host as it would a VM."""
        if self.ssh_key is None:
            raise HostError(f"host {self.name} was started without an SSH key")
        return {
            "ansible_host": self.address,
            "ansible_port": self.ssh_port,
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(self.ssh_key.private),
            "ansible_python_interpreter": "/usr/bin/python3",
            "ansible_ssh_common_args": (
                f"-o UserKnownHostsFile={self.known_hosts} -o StrictHostKeyChecking=yes "
                "-o IdentitiesOnly=yes"
            ),
        }


def _sshd_answers(host: str, port: int | None) -> bool:
    """Whether an SSH server (not whatever else might have taken the port) greets us there."""
    if port is None:
        return False
    try:
        with socket.create_connection((host, port), timeout=2) as sock:
            sock.settimeout(2)
            greeting = sock.recv(64)
            sock.sendall(b"SSH-2.0-weft-testhost-probe\r\n")
            return greeting.startswith(b"SSH-")
    except OSError:
        return False


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
