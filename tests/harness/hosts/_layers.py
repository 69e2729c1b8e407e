"""A host's own root on top of the shared cached root: an overlay where it works, else a copy.

Files a host needs before it boots (hostname, machine-id, sshd port, keys) are staged into its
upper layer (or its copy) from the machine side; everything later goes through the running host.
"""

from __future__ import annotations

import os
import stat
import subprocess
import tempfile
import threading
from pathlib import Path

_overlay_works: dict[tuple[Path, Path], bool] = {}
_probe_lock = threading.Lock()


def overlay_supported(lower: Path, run_base: Path) -> bool:
    """Whether an overlay with `lower` below and an upper layer under `run_base` mounts here.

    Probed once per process in a throwaway mount namespace, so the probe leaves no mount.
    """
    key = (lower, run_base)
    with _probe_lock:
        if key not in _overlay_works:
            run_base.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix="overlay-probe-", dir=run_base) as tmp:
                for name in ("upper", "work", "merged"):
                    (Path(tmp) / name).mkdir()
                options = f"lowerdir={lower},upperdir={tmp}/upper,workdir={tmp}/work"
                probe = subprocess.run(
                    ["unshare", "--mount", "--propagation", "private", "mount", "-t", "overlay",
                     "overlay", "-o", options, f"{tmp}/merged"],
                    capture_output=True, stdin=subprocess.DEVNULL, timeout=30,
                )  # fmt: skip
            _overlay_works[key] = probe.returncode == 0
        return _overlay_works[key]


def copy_root(lower: Path, target: Path) -> None:
    """A full private copy (reflinks where the filesystem has them): the fallback to overlay."""
    subprocess.run(
        ["cp", "-a", "--reflink=auto", f"{lower}/.", str(target)],
        check=True, capture_output=True, stdin=subprocess.DEVNULL, timeout=600,
    )  # fmt: skip


class Stage:
    """Writes files into a host's layer before boot, with the directory modes of the root below.

    In an overlay the upper directory's mode wins, so a parent created here must copy the
    lower one's (`/root` stays 0700, which sshd's StrictModes checks).
    """

    def __init__(self, layer: Path, lower: Path) -> None:
        self.layer = layer
        self.lower = lower

    def _parent(self, rel: str) -> Path:
        parts = Path(rel.lstrip("/")).parts
        current = self.layer
        below = self.lower
        for part in parts[:-1]:
            current, below = current / part, below / part
            if current.is_symlink():
                raise ValueError(f"refusing to stage {rel}: {current} is a symlink")
            if not current.exists():
                current.mkdir()
                try:
                    info = below.lstat()
                except FileNotFoundError:
                    info = None
                if info is not None and stat.S_ISDIR(info.st_mode):
                    os.chown(current, info.st_uid, info.st_gid)
                    os.chmod(current, stat.S_IMODE(info.st_mode))
                else:
                    os.chmod(current, 0o755)
        return current

    def write(self, rel: str, data: str | bytes, mode: int = 0o644) -> None:
        target = self._parent(rel) / Path(rel).name
        if target.is_symlink() or target.exists():
            target.unlink()
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            os.fchmod(f.fileno(), mode)  # whatever the umask took away

    def symlink(self, rel: str, points_to: str) -> None:
        target = self._parent(rel) / Path(rel).name
        if target.is_symlink() or target.exists():
            target.unlink()
        os.symlink(points_to, target)
