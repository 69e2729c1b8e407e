"""The test hosts' Debian root: built once with debootstrap, cached by recipe, never modified.

The cache holds one directory per recipe, `root-<hash>/`, where the hash covers the suite, the
variant, the package list and the customisation script below, so changing any of them builds a
new root beside the old one. Builds take a lock (concurrent sessions wait for one build and then
share it) and happen in a temporary directory renamed into place, so a root that exists is whole.
Running hosts use the root read-only as their overlay's lower layer: never change it in place.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

SUITE = "bookworm"
VARIANT = "minbase"
PACKAGES: tuple[str, ...] = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "libnss-systemd",  # names for DynamicUser= accounts
    "openssh-server",
    "python3",
    "python3-venv",
    "python3-apt",  # Ansible's apt module imports it on the managed host
    "iproute2",
    "ca-certificates",
    "sudo",
    "procps",
    "curl",
)
DEFAULT_MIRROR = "http://deb.debian.org/debian"
BUILD_TIMEOUT = 1200.0

# Runs in the new root (chroot) after debootstrap. Part of the recipe hash.
CUSTOMISE = r"""
set -eu
# Host keys are made per host by the harness; a shared cached key would be a lie.
rm -f /etc/ssh/ssh_host_*
# sshd starts only once the harness has given the host its own port (else it would take port 22
# of the machine, whose network namespace the hosts share).
systemctl disable ssh.service >/dev/null 2>&1
# Nothing in the background that grabs the dpkg lock (Ansible's apt tasks would wait on it) or
# scans disks while a test runs; no getty on consoles that nobody reads.
idle="apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer
    e2scrub_reap.service fstrim.timer systemd-pstore.service getty@tty1.service
    console-getty.service"
systemctl disable $idle >/dev/null 2>&1
systemctl mask $idle >/dev/null 2>&1
cat > /etc/ssh/sshd_config.d/10-weft-testhost.conf <<'EOF'
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
EOF
install -d -m 0700 /root/.ssh
# Each host gets its own (written by the harness before boot).
: > /etc/machine-id
: > /etc/hostname
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/*.log
"""
RECIPE_VERSION = 1


class RootBuildError(RuntimeError):
    """debootstrap or the customisation of the test host root failed."""


def repo_root() -> Path:
    return Path(__file__).resolve().parents[3]


def cache_dir() -> Path:
    """`$WEFT_TESTHOST_CACHE`, else `.cache/testhost/` in the repository (git-ignored)."""
    env = os.environ.get("WEFT_TESTHOST_CACHE")
    return Path(env) if env else repo_root() / ".cache" / "testhost"


def recipe_hash(packages: Sequence[str] = PACKAGES) -> str:
    recipe = {
        "version": RECIPE_VERSION,
        "suite": SUITE,
        "variant": VARIANT,
        "packages": sorted(packages),
        "customise": CUSTOMISE,
        "arch": os.uname().machine,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def mirror() -> str:
    """`$WEFT_TESTHOST_MIRROR`, else the machine's own Debian mirror, else deb.debian.org."""
    env = os.environ.get("WEFT_TESTHOST_MIRROR")
    if env:
        return env
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        found = _first_debian_uri(path.read_text(errors="replace"), deb822=True)
        if found:
            return found
    sources = Path("/etc/apt/sources.list")
    if sources.exists():
        found = _first_debian_uri(sources.read_text(errors="replace"), deb822=False)
        if found:
            return found
    return DEFAULT_MIRROR


def _first_debian_uri(text: str, *, deb822: bool) -> str | None:
    pattern = r"^URIs:\s*(\S+)" if deb822 else r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)"
    for match in re.finditer(pattern, text, re.MULTILINE):
        uri = match.group(1).rstrip("/")
        if uri.endswith("/debian"):
            return uri
    return None


def ensure_root(
    packages: Sequence[str] = PACKAGES, *, log: Callable[[str], None] | None = None
) -> Path:
    """The cached root for this recipe, built first if missing. Safe to call concurrently."""
    base = cache_dir()
    base.mkdir(parents=True, exist_ok=True)
    final = base / f"root-{recipe_hash(packages)}"
    if final.is_dir():
        return final
    say = log or (lambda msg: print(f"[testhost] {msg}", file=sys.stderr, flush=True))
    with open(base / "build.lock", "w") as lock:
        if not _try_lock(lock):
            say(f"waiting for another process to finish building {final.name}")
            fcntl.flock(lock, fcntl.LOCK_EX)
        if final.is_dir():  # built while we waited
            return final
        # Under the lock, any temporary build left here belongs to a build that died.
        for stale in base.glob("tmp-root-*"):
            _remove_tree(stale)
        tmp = base / f"tmp-root-{final.name[5:]}-{os.getpid()}"
        try:
            started = time.monotonic()
            say(f"building test host root {final.name} with debootstrap (about a minute)")
            build_log = base / f"{final.name}.build.log"
            build_log.unlink(missing_ok=True)
            _debootstrap(tmp, packages, base / "debs", build_log)
            _customise(tmp, build_log)
            os.rename(tmp, final)
            say(f"built {final} in {time.monotonic() - started:.0f} s")
        finally:
            if tmp.exists():
                _remove_tree(tmp)
    return final


def prune_roots(packages: Sequence[str] = PACKAGES) -> list[Path]:
    """Remove cached roots (and their logs) of other recipes. Only when no host runs on them."""
    base = cache_dir()
    keep = f"root-{recipe_hash(packages)}"
    removed = []
    with open(base / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for path in sorted(base.glob("root-*")):
            if path.name.split(".")[0] == keep:
                continue
            if path.is_dir():
                _remove_tree(path)
            else:
                path.unlink()
            removed.append(path)
    return removed


def _try_lock(lock: IO[str]) -> bool:
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _debootstrap(target: Path, packages: Sequence[str], debs: Path, log_path: Path) -> None:
    if not shutil.which("debootstrap"):
        raise RootBuildError("debootstrap is not installed: run `scripts/bootstrap hosts`")
    debs.mkdir(parents=True, exist_ok=True)
    # Own mount and PID namespaces: the /proc and /sys debootstrap mounts into the target vanish
    # with it, and killing it on timeout kills every process it started.
    args = [
        "unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--kill-child",
        "--", "debootstrap", f"--variant={VARIANT}", f"--include={','.join(packages)}",
        f"--cache-dir={debs.resolve()}", SUITE, str(target), mirror(),
    ]  # fmt: skip
    _run_logged(args, log_path, what="debootstrap")


def _customise(target: Path, log_path: Path) -> None:
    args = [
        "unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--kill-child",
        "--", "chroot", str(target), "/usr/bin/env", "-i",
        "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "/bin/sh", "-c", CUSTOMISE,
    ]  # fmt: skip
    _run_logged(args, log_path, what="customisation")


def _run_logged(args: list[str], log_path: Path, *, what: str) -> None:
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        try:
            code = proc.wait(timeout=BUILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    if code != 0:
        tail = log_path.read_text(errors="replace")[-3000:]
        outcome = f"exited {code}" if code is not None else f"timed out after {BUILD_TIMEOUT}s"
        raise RootBuildError(f"{what} {outcome}; log {log_path}:\n{tail}")


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    if path.exists():  # e.g. a directory debootstrap left read-only
        subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=False)
