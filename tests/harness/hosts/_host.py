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

import io
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tarfile
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._procs import free_port
from .._wait import wait_until
from . import _cgroup, _runs
from ._console import Console
from ._layers import Stage, copy_root, overlay_supported
from ._root import ensure_root
from ._ssh import SshKeyPair, ssh_client_options

BOOT_SH = Path(__file__).with_name("boot.sh")
INNER_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "USER": "root",
    "LANG": "C.UTF-8",
    "TERM": "dumb",
    "SYSTEMD_PAGER": "",
    "SYSTEMD_COLORS": "0",
}
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")


class HostError(RuntimeError):
    """A test host failed to start, boot or stop; the message carries its console and journal."""


class HostCommandError(HostError):
    """A command inside a host exited non-zero (or timed out) where success was required."""

    def __init__(self, message: str, result: RunResult | None = None) -> None:
        super().__init__(message)
        self.result = result


class NotBootedYet(Exception):
    """PID 1 is still boot.sh in the machine's root: nothing may run "inside" yet."""


@dataclass(frozen=True)
class RunResult:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def check(self) -> RunResult:
        if self.returncode != 0:
            raise HostCommandError(
                f"{' '.join(self.args)!r} exited {self.returncode}\n"
                f"stdout: {self.stdout[-2000:]}\nstderr: {self.stderr[-2000:]}",
                self,
            )
        return self


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


class SystemdHost:
    """One booted Debian host. `start()` it, use it, `stop()` it (also on failure: use `with`).

    `address`/`ssh_port` are where its sshd listens (root, key `ssh_key`); `pid` is its PID 1 as
    the machine sees it; `failed_units` lists what had failed when it reached `degraded`.
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
        boot_timeout: float = 90.0,
    ) -> None:
        if not _NAME.match(name):
            raise ValueError(f"host name {name!r} must match {_NAME.pattern} (it is the hostname)")
        self.name = name
        self.ssh_key = ssh_key
        self.ssh_port = (
            ssh_port if ssh_port is not None else (unique_free_port() if ssh_key else None)
        )
        self.root = root
        self.logs_dir = logs_dir
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
        self._pivoted = False

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
        if overlay_supported(lower, self.dir.parent):
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

        self.pid = _wait_raising(pid_one, timeout=30, what=f"PID 1 of host {self.name}")
        # The host's cgroup should hold only the host: put `unshare` back where we are, then
        # let boot.sh go on.
        _cgroup.move(popen.pid, _cgroup.own_cgroup())
        (self.dir / "go").touch()

    def alive(self) -> bool:
        return self._popen is not None and self._popen.poll() is None and not self._stopped

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

        state = _wait_raising(
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

            state = _wait_raising(
                settled, timeout=max(1.0, deadline - time.monotonic()), what="ssh.service to settle"
            )
            if state == "active" and _connectable(self.address, self.ssh_port):
                return
            if state == "active":
                wait_until(
                    lambda: _connectable(self.address, self.ssh_port),
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

    # -- inside the host ------------------------------------------------------------------------

    def _nsenter(self, argv: Sequence[str], env: Mapping[str, str] | None) -> list[str]:
        if self.pid is None or self._stopped:
            raise HostError(f"host {self.name} is not running")
        if not self._pivoted:
            # Until boot.sh has pivoted, PID 1's root is the machine's: a command would run
            # (and write) there.
            root, machine = os.stat(f"/proc/{self.pid}/root/"), os.stat("/")
            if (root.st_dev, root.st_ino) == (machine.st_dev, machine.st_ino):
                raise NotBootedYet(f"host {self.name} has not switched to its own root yet")
            self._pivoted = True
        inner = {**INNER_ENV, **(env or {})}
        return [
            "nsenter", f"--target={self.pid}", "--mount", "--uts", "--ipc", "--pid", "--cgroup",
            "--root", "--wd", "--", "/usr/bin/env", "-i",
            *(f"{k}={v}" for k, v in inner.items()), *argv,
        ]  # fmt: skip

    def run_bytes(
        self,
        cmd: str | Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float = 60.0,
        env: Mapping[str, str] | None = None,
    ) -> tuple[int, bytes, bytes]:
        argv = ["/bin/sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        proc = subprocess.Popen(
            self._nsenter(argv, env),
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}, start_new_session=True,
        )  # fmt: skip
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            # The group holds nsenter and its child inside the host.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.communicate()
            raise HostCommandError(
                f"{argv!r} in host {self.name} timed out after {timeout}s"
            ) from None
        return proc.returncode, out, err

    def run(
        self,
        cmd: str | Sequence[str],
        *,
        check: bool = False,
        input: str | bytes | None = None,
        timeout: float = 60.0,
        env: Mapping[str, str] | None = None,
    ) -> RunResult:
        """Run `cmd` (argv, or a string for /bin/sh -c) as root inside the host."""
        data = input.encode() if isinstance(input, str) else input
        code, out, err = self.run_bytes(cmd, input=data, timeout=timeout, env=env)
        args = ("/bin/sh", "-c", cmd) if isinstance(cmd, str) else tuple(cmd)
        result = RunResult(args, code, out.decode(errors="replace"), err.decode(errors="replace"))
        return result.check() if check else result

    def systemctl(self, *args: str, check: bool = True, timeout: float = 60.0) -> RunResult:
        return self.run(["systemctl", "--no-pager", *args], check=check, timeout=timeout)

    def unit_property(self, unit: str, prop: str) -> str:
        return self.systemctl("show", "-p", prop, "--value", unit).stdout.strip()

    def unit_properties(self, unit: str, *props: str) -> dict[str, str]:
        out = self.systemctl("show", *(f"-p{p}" for p in props), unit).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def wait_for_unit(self, unit: str, state: str = "active", timeout: float = 30.0) -> None:
        """Poll the unit's ActiveState until it is `state`."""
        wait_until(
            lambda: self.unit_property(unit, "ActiveState") == state,
            timeout=timeout, interval=0.1, what=f"{unit} on {self.name} to be {state}",
        )  # fmt: skip

    def journal(self, unit: str | None = None, *, lines: int | None = None) -> str:
        """This boot's journal (of one unit, or all), as `journalctl -o short-precise` prints it."""
        args = ["journalctl", "-b", "--no-pager", "-o", "short-precise"]
        if unit:
            args += ["-u", unit]
        if lines:
            args += ["-n", str(lines)]
        return self.run(args, check=True).stdout

    def install_unit(self, name: str, text: str, *, reload: bool = True) -> None:
        self.write_file(f"/etc/systemd/system/{name}", text)
        if reload:
            self.systemctl("daemon-reload")

    # -- files -----------------------------------------------------------------------------------

    def write_file(self, path: str, data: str | bytes, mode: int = 0o644) -> None:
        """Write a file inside the host (parents made 0755), as root, with `mode`."""
        script = (
            '(umask 022; mkdir -p -- "$(dirname -- "$1")") && umask 077 && cat > "$1" '
            '&& chmod "$2" -- "$1"'
        )
        self.run(["/bin/sh", "-c", script, "sh", path, f"{mode:o}"], input=data, check=True)

    def read_bytes(self, path: str) -> bytes:
        code, out, err = self.run_bytes(["cat", "--", path])
        if code != 0:
            raise HostCommandError(f"cannot read {path} in host {self.name}: {err.decode()}")
        return out

    def read_text(self, path: str) -> str:
        return self.read_bytes(path).decode()

    def exists(self, path: str) -> bool:
        return self.run(["test", "-e", path]).ok

    def copy_in(self, src: Path, dest: str) -> None:
        """Copy a file or a directory tree from the machine to `dest` inside the host."""
        src = Path(src)
        if not src.is_dir():
            self.write_file(dest, src.read_bytes(), src.stat().st_mode & 0o7777)
            return
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            tar.add(src, arcname=".")
        self.run(["/bin/sh", "-c", 'mkdir -p -- "$1" && tar -C "$1" -xf -', "sh", dest],
                 input=buffer.getvalue(), check=True)  # fmt: skip

    def copy_out(self, src: str, dest: Path) -> None:
        """Copy a file or a directory tree from inside the host to `dest` on the machine."""
        dest = Path(dest)
        if not self.run(["test", "-d", src]).ok:
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(self.read_bytes(src))
            return
        code, out, err = self.run_bytes(["tar", "-C", src, "-cf", "-", "."])
        if code != 0:
            raise HostCommandError(f"cannot archive {src} in host {self.name}: {err.decode()}")
        dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(out)) as tar:
            tar.extractall(dest, filter="tar")

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


def _wait_raising(condition, *, timeout: float, what: str, on_timeout=None):
    """wait_until, except that a HostError from the condition ends the wait at once."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = condition()
        except HostCommandError:  # a command timed out under load: ask again
            result = None
        except HostError:
            raise
        except Exception:  # not up yet (no bus, no /proc entry)
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            detail = ("\n" + on_timeout()) if on_timeout else ""
            raise HostError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(0.1)


def _connectable(host: str, port: int | None) -> bool:
    if port is None:
        return False
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
