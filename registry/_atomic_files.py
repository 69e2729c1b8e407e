"""Files other processes read while we rewrite them: always whole, never half-written.

A file is written to a temporary name in the same directory, flushed to disk, renamed over
the old one and the directory entry synced, so a reader (a proxy, a test harness, systemd)
sees either the old document or the new one, and a crash at any point leaves one of the two.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_atomic(path: Path | str, data: bytes, mode: int = 0o644) -> None:
    """Replace `path` with `data` in one rename; the file has `mode` from its first byte."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)  # O_CREAT's mode is masked by the umask
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _sync_directory(path.parent)


def _sync_directory(directory: Path) -> None:
    # Without this the rename itself may be lost by a power cut (the data would survive).
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_ready_file(path: Path | str, info: dict[str, Any]) -> None:
    """The `--ready-file` every daemon writes once it serves: JSON, written atomically, so a
    reader polling for it never parses half a document."""
    write_atomic(path, (json.dumps(info, sort_keys=True) + "\n").encode())
