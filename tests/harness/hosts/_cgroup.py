"""One cgroup v2 subtree per test host: systemd's own hierarchy, and how the host is killed.

Each host's PID 1 starts in `<cgroup2 mount>/weft-testhost/<host id>/` inside a new cgroup
namespace rooted there, and mounts cgroup2 as its /sys/fs/cgroup, so its systemd runs in the
unified hierarchy and sees only its own subtree. On a hybrid machine (cgroup v1 controllers,
cgroup2 at /sys/fs/cgroup/unified, as here) the v2 tree has no controllers, which systemd
accepts: it needs the hierarchy to track processes, not the controllers. `cgroup.kill` kills
everything a host started, including processes that escaped its PID 1's children.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

PARENT = "weft-testhost"


class CgroupError(RuntimeError):
    """The machine has no usable cgroup2 hierarchy, or a host's cgroup would not go away."""


def cgroup2_mount() -> Path:
    """Where the machine mounts its cgroup2 hierarchy (its root, not a namespaced subtree)."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            if fields[sep + 1] == "cgroup2" and fields[3] == "/":
                return Path(fields[4])
    raise CgroupError(
        "no cgroup2 hierarchy is mounted on this machine (looked for fstype cgroup2 in "
        "/proc/self/mountinfo); mount one, e.g. `mount -t cgroup2 none /sys/fs/cgroup/unified`"
    )


def parent_dir() -> Path:
    return cgroup2_mount() / PARENT


def own_cgroup() -> Path:
    """The cgroup2 directory this process is in."""
    with open("/proc/self/cgroup") as f:
        for line in f:
            if line.startswith("0::"):
                return cgroup2_mount() / line[3:].strip().lstrip("/")
    return cgroup2_mount()


def create(host_id: str) -> Path:
    path = parent_dir() / host_id
    path.mkdir(parents=True)
    return path


def move(pid: int, cgroup: Path) -> None:
    try:
        (cgroup / "cgroup.procs").write_text(f"{pid}\n")
    except ProcessLookupError:
        pass


def pids(cgroup: Path) -> list[int]:
    """Every process in the subtree."""
    found: list[int] = []
    for path in _dirs_deepest_first(cgroup):
        try:
            found.extend(int(p) for p in (path / "cgroup.procs").read_text().split())
        except OSError:  # removed meanwhile
            continue
    return found


def populated(cgroup: Path) -> bool:
    try:
        events = (cgroup / "cgroup.events").read_text()
    except FileNotFoundError:
        return False
    return "populated 1" in events


def kill(cgroup: Path) -> None:
    """SIGKILL every process in the subtree (cgroup.kill, else one by one)."""
    if not cgroup.exists():
        return
    kill_file = cgroup / "cgroup.kill"
    if kill_file.exists():
        try:
            kill_file.write_text("1\n")
            return
        except OSError:
            pass
    for pid in pids(cgroup):
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass


def remove(cgroup: Path, timeout: float = 10.0) -> None:
    """Kill what is left in the subtree and remove its directories, deepest first."""
    deadline = time.monotonic() + timeout
    while cgroup.exists():
        kill(cgroup)
        busy = False
        for path in _dirs_deepest_first(cgroup):
            try:
                path.rmdir()
            except FileNotFoundError:
                pass
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    raise
                busy = True
        if not busy:
            return
        if time.monotonic() > deadline:
            raise CgroupError(
                f"cgroup {cgroup} still holds processes {pids(cgroup)} after {timeout}s of SIGKILL"
            )
        time.sleep(0.05)


def _dirs_deepest_first(cgroup: Path) -> list[Path]:
    # os.walk ignores directories that vanish while it walks (cgroups come and go).
    return [Path(top) for top, _dirs, _files in os.walk(cgroup, topdown=False)]
