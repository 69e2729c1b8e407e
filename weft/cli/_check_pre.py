"""`weft check --pre`: is this host ready for Weft? Run before installing, as the installer.

Each check reads this host only (no server is needed yet). What a host cannot tell (a clock
with no synchronisation service to ask) is a warning, never a guess.
"""

from __future__ import annotations

import errno
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from ._check_lines import Line, fail, ok, warn

MIN_PYTHON = (3, 11)
MIN_ETCD = (3, 4)  # the v3 JSON gateway under /v3/ (3.3 served /v3beta/)
DEFAULT_PORTS = (8500, 8501)  # weft server, the agent's local API
_ETCD_VERSION = re.compile(r"etcd Version:\s*(\d+)\.(\d+)\.(\d+)")


def python_line(
    version: Sequence[int] = sys.version_info[:3], executable: str = sys.executable
) -> Line:
    text = ".".join(str(v) for v in version[:3])
    if tuple(version[:2]) < MIN_PYTHON:
        return fail(
            "python",
            f"Python {text} at {executable} is too old",
            f"install Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]} or newer",
        )
    return ok("python", f"Python {text} ({executable})")


def parse_etcd_version(output: str) -> tuple[int, int, int] | None:
    match = _ETCD_VERSION.search(output)
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def etcd_line(binary: str | None) -> Line:
    path = shutil.which(binary or "etcd")
    if path is None:
        return warn(
            "etcd",
            f"no {binary or 'etcd'} binary on PATH",
            "install etcd >= 3.4 on the etcd hosts (`apt install etcd-server`); "
            "hosts that only run agents do not need it",
        )
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return fail("etcd", f"{path} --version failed ({exc})", "reinstall etcd")
    version = parse_etcd_version(out.stdout + out.stderr)
    if version is None:
        return fail(
            "etcd",
            f"{path} --version did not say its version",
            "is this etcd? reinstall etcd >= 3.4",
        )
    text = ".".join(map(str, version))
    if version[:2] < MIN_ETCD:
        return fail(
            "etcd",
            f"etcd {text} at {path} is too old (the v3 JSON gateway needs 3.4)",
            "install etcd >= 3.4",
        )
    return ok("etcd", f"etcd {text} ({path})")


def port_line(port: int, host: str = "0.0.0.0") -> Line:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return fail(
                    "ports",
                    f"port {port} is in use",
                    f"stop what listens there (`ss -ltnp 'sport = :{port}'`), or set "
                    "another listen/api_listen address",
                )
            if exc.errno == errno.EACCES:
                return fail(
                    "ports",
                    f"port {port} needs privileges to bind",
                    "use a port above 1023, or grant CAP_NET_BIND_SERVICE",
                )
            return fail("ports", f"cannot bind port {port}: {exc.strerror}", "check the host")
    return ok("ports", f"port {port} is free")


def clock_line(run: Callable[[list[str]], str | None] | None = None) -> Line:
    run = run or _output
    synced = run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"])
    if synced is not None and synced.strip() in ("yes", "no"):
        if synced.strip() == "yes":
            return ok("clock", "synchronised (timedatectl: NTPSynchronized=yes)")
        return fail(
            "clock",
            "not synchronised (timedatectl: NTPSynchronized=no)",
            "enable chrony or systemd-timesyncd: certificates and `weft check` "
            "need clocks within 2s",
        )
    if Path("/run/systemd/timesync/synchronized").exists():
        return ok("clock", "synchronised (systemd-timesyncd)")
    tracking = run(["chronyc", "tracking"])
    if tracking is not None and "Leap status" in tracking:
        if "Not synchronised" in tracking:
            return fail("clock", "chrony is not synchronised", "check `chronyc sources`")
        return ok("clock", "synchronised (chrony)")
    return warn(
        "clock",
        "cannot tell whether the clock is synchronised (no timedatectl or chronyc answer)",
        "run chrony or systemd-timesyncd: certificates need clocks within 2s",
    )


def user_lines(euid: int | None = None, user: str = "weft") -> list[Line]:
    euid = os.geteuid() if euid is None else euid
    lines = []
    if euid != 0:
        lines.append(
            warn(
                "permissions",
                "not running as root",
                "installing needs root: useradd, /etc/weft and the systemd units",
            )
        )
    else:
        lines.append(ok("permissions", "running as root"))
    try:
        pwd.getpwnam(user)
        lines.append(ok("user", f"user {user} exists"))
    except KeyError:
        lines.append(
            warn(
                "user",
                f"no user {user}",
                f"useradd --system --home /var/lib/weft --shell /usr/sbin/nologin {user}"
                " (the Ansible role does it)",
            )
        )
    return lines


def systemd_line(comm: str | None = None) -> Line:
    if comm is None:
        try:
            comm = Path("/proc/1/comm").read_text().strip()
        except OSError:
            comm = "unknown"
    if comm == "systemd":
        return ok("systemd", "PID 1 is systemd")
    return warn(
        "systemd",
        f"PID 1 is {comm}, not systemd",
        "the units need systemd; elsewhere run `weft server` and `weft agent run` "
        "under your own supervisor (readiness: --ready-file)",
    )


def pre_lines(ports: Sequence[int], etcd_binary: str | None) -> list[Line]:
    lines = [python_line(), etcd_line(etcd_binary)]
    lines += [port_line(p) for p in dict.fromkeys(ports)]
    lines.append(clock_line())
    lines += user_lines()
    lines.append(systemd_line())
    return lines


def _output(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None
