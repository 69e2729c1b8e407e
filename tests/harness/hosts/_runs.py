"""Where running hosts keep their state, who owns them, and what happens when the owner dies.

A host's directory `<run base>/<host id>/` holds its overlay layers, console log and
`owner.json` (the pid and start time of the Python process that started it). Hosts are killed
three ways, strongest last: `SystemdHost.stop()` (fixtures call it in `finally`), an atexit hook
for hosts a test forgot, and the kernel: the host's `unshare` gets SIGKILL when its owner dies
(parent-death signal) and takes PID 1 with it (`--kill-child`), so even a SIGKILLed pytest leaks
no process. Directories and cgroups of dead owners are reaped by the next session.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import shutil
import subprocess
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _cgroup

if TYPE_CHECKING:
    from ._host import SystemdHost


def run_base() -> Path:
    """`$WEFT_TESTHOST_RUN_DIR`, else /var/tmp/weft-testhosts (on disk: overlay upper layers)."""
    return Path(os.environ.get("WEFT_TESTHOST_RUN_DIR", "/var/tmp/weft-testhosts"))


def process_start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, after the command name


def owner_record() -> dict[str, Any]:
    return {"pid": os.getpid(), "start_time": process_start_time(os.getpid())}


def _owner_alive(pid: int, start_time: str | None) -> bool:
    current = process_start_time(pid)
    return current is not None and (start_time is None or current == start_time)


def reap_stale_hosts() -> list[str]:
    """Remove hosts (cgroups, processes, directories) whose owning process is gone."""
    reaped: list[str] = []
    base = run_base()
    if base.is_dir():
        for host_dir in base.iterdir():
            try:
                owner = json.loads((host_dir / "owner.json").read_text())
            except (OSError, ValueError):
                continue  # not ours, or being created right now
            if _owner_alive(owner["pid"], owner.get("start_time")):
                continue
            if owner.get("cgroup"):
                _cgroup.remove(Path(owner["cgroup"]))
            shutil.rmtree(host_dir, ignore_errors=True)
            reaped.append(host_dir.name)
    try:
        parent = _cgroup.parent_dir()
    except _cgroup.CgroupError:
        return reaped
    if parent.is_dir():
        for cgroup in parent.iterdir():
            if not cgroup.is_dir() or (base / cgroup.name).exists():
                continue
            try:
                pid = int(cgroup.name.rsplit("-", 2)[1])
            except (IndexError, ValueError):
                continue
            if not _owner_alive(pid, None):
                _cgroup.remove(cgroup)
                reaped.append(cgroup.name)
    return reaped


_reaped_once = threading.Lock()
_reaped = False


def reap_stale_hosts_once() -> None:
    global _reaped
    with _reaped_once:
        if not _reaped:
            _reaped = True
            reap_stale_hosts()


# Hosts started by this process and not yet stopped; stopped at exit if a test forgot one.
_live: weakref.WeakSet[SystemdHost] = weakref.WeakSet()
_live_lock = threading.Lock()


def register(host: SystemdHost) -> None:
    with _live_lock:
        _live.add(host)


def unregister(host: SystemdHost) -> None:
    with _live_lock:
        _live.discard(host)


@atexit.register
def _stop_forgotten_hosts() -> None:
    with _live_lock:
        hosts = list(_live)
    for host in hosts:
        try:
            host.stop()
        except Exception:
            pass


# The parent-death signal fires when the *thread* that forked the child exits, not the process.
# Hosts are therefore forked from one thread that lives as long as the process, whichever
# thread (a trio worker, say) asks for the host.
_spawn_requests: queue.Queue[tuple[Callable[[], Any], Future[Any]]] = queue.Queue()
_spawner: threading.Thread | None = None
_spawner_lock = threading.Lock()


def _spawner_loop() -> None:
    while True:
        make, future = _spawn_requests.get()
        try:
            future.set_result(make())
        except BaseException as exc:
            future.set_exception(exc)


def popen_from_long_lived_thread(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
    global _spawner
    with _spawner_lock:
        if _spawner is None:
            _spawner = threading.Thread(target=_spawner_loop, name="testhost-spawner", daemon=True)
            _spawner.start()
    future: Future[subprocess.Popen[bytes]] = Future()
    _spawn_requests.put((lambda: subprocess.Popen(*args, **kwargs), future))
    return future.result(timeout=30)
