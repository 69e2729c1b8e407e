"""Running things inside a booted host: commands, systemctl, the journal, files.

Every command enters the host's mount, UTS, IPC, PID and cgroup namespaces and its root with
`nsenter`, and runs as root with a clean environment (never the test process's).
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from .._wait import wait_until
from ._results import HostCommandError, HostError, NotBootedYet, RunResult

INNER_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "USER": "root",
    "LANG": "C.UTF-8",
    "TERM": "dumb",
    "SYSTEMD_PAGER": "",
    "SYSTEMD_COLORS": "0",
}


class HostShell:
    """The part of a host that runs things in it; `SystemdHost` adds booting and stopping."""

    name: str
    pid: int | None  # the host's PID 1 as the machine sees it

    def __init__(self) -> None:
        self._pivoted = False
        self._killed = False

    def _nsenter(self, argv: Sequence[str], env: Mapping[str, str] | None) -> list[str]:
        if self.pid is None or self._killed:
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
        """Like `run`, with bytes in and out: (exit status, stdout, stderr)."""
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

    # -- systemd ---------------------------------------------------------------------------------

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
        """Write /etc/systemd/system/<name> and (by default) `systemctl daemon-reload`."""
        self.write_file(f"/etc/systemd/system/{name}", text)
        if reload:
            self.systemctl("daemon-reload")

    # -- files -----------------------------------------------------------------------------------
    # Through commands in the host, never through /proc/<pid>/root: an absolute symlink in the
    # host's tree would resolve against the machine's root there.

    def write_file(self, path: str, data: str | bytes, mode: int = 0o644) -> None:
        """Write a file inside the host (missing parents made 0755), as root, with `mode`."""
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
