"""Subprocesses a test starts: own process group, logs kept, always stopped."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ._wait import wait_until

VENV_BIN = Path(sys.executable).parent


_LOWEST = 10000
_handed_out: set[int] = set()
_draw = random.SystemRandom()


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(family: socket.AddressFamily, host: str, port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):  # a DNS listener takes both
        with socket.socket(family, kind) as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel just proved free, for TCP and UDP (for daemons that cannot report a
    port-0 bind).

    Drawn at random from below the ephemeral range: the kernel never gives those ports to an
    outgoing connection or to another port-0 bind, so nothing but another `free_port` caller
    (another test worker, say) can take it before the daemon binds it, and the random draw
    over ~20,000 ports makes that unlikely. A port is handed out once per process."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    high = _ephemeral_low()
    if high - _LOWEST >= 1000:
        for _ in range(200):
            port = _draw.randrange(_LOWEST, high)
            if port not in _handed_out and _bindable(family, host, port):
                _handed_out.add(port)
                return port
    with socket.socket(family) as s:  # an unusual port range: the kernel's choice
        s.bind((host, 0))
        return s.getsockname()[1]


class Proc:
    """A child process in its own process group; `stop()` is safe to call more than once."""

    def __init__(self, args: Sequence[str], log_path: Path, popen: subprocess.Popen[bytes]) -> None:
        self.args = list(args)
        self.log_path = log_path
        self.popen = popen

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def signal(self, sig: int) -> None:
        if self.alive():
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        """SIGKILL the whole group (a crash, as far as the child can tell)."""
        self.signal(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.popen.wait(timeout=10)
        # Reap anything the child left behind in its group.
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        return self.popen.returncode

    def wait_ready_file(self, path: Path, timeout: float = 20.0) -> dict:
        def ready() -> dict | None:
            if not self.alive():
                raise AssertionError(
                    f"{self.args[0]} exited with {self.popen.returncode} before it was ready:\n"
                    + self.log()[-4000:]
                )
            if path.exists() and path.stat().st_size:
                return json.loads(path.read_text())
            return None

        return wait_until(ready, timeout=timeout, what=f"{self.args} to write {path}")


def spawn(
    args: Sequence[str],
    *,
    log_path: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    stdin: int | None = subprocess.DEVNULL,
    open_files: int | None = None,
) -> Proc:
    full_env = dict(os.environ)
    full_env["PYTHONUNBUFFERED"] = "1"
    if env:
        full_env.update(env)
    log_file = open(log_path, "ab")  # noqa: SIM115 - handed to the child
    try:
        popen = subprocess.Popen(
            list(args),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=stdin,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=None if open_files is None else _limit_open_files(open_files),
        )
    finally:
        log_file.close()
    return Proc(args, log_path, popen)


def _limit_open_files(limit: int):  # type: ignore[no-untyped-def]
    """What systemd's LimitNOFILE= does, for a child started here."""
    import resource

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    return apply


def weft_command() -> list[str]:
    return [str(VENV_BIN / "python"), "-m", "weft"]


def time_left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())
