"""Where snapshots come from: the `SnapshotSource` interface, and the file source.

A source delivers snapshot documents (raw bytes, as received) by awaiting `apply(raw)`; the
proxy validates and applies each one as a whole, or refuses it and keeps what it had, and
returns an `ApplyResult` that the source passes back to whoever sent the document (the agent
over its local stream will send it as the acknowledgement of that version). A source that
loses its upstream simply stops delivering: the proxy keeps serving its last good snapshot.

`FileSource` reads a JSON file at start, then again when the file changes (polled: inode,
size and modification time) and when asked to (`reload()`, on SIGHUP). A missing or half-
written file is refused like any bad document and retried on its next change.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import trio

log = logging.getLogger("weft.proxy")


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What became of one delivered document: the acknowledgement of its version."""

    accepted: bool
    version: int | None  # the document's version, when it had a readable one
    reason: str  # "" when applied; else why it was refused ("unchanged" for a resend)
    digest: str | None
    source: str
    at: float  # Unix time

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


Apply = Callable[[bytes, str], Awaitable[ApplyResult]]


class SnapshotSource(Protocol):
    """What the proxy needs of a snapshot source (see docs/snapshot.md)."""

    name: str

    async def run(
        self, apply: Apply, *, task_status: trio.TaskStatus[ApplyResult] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Deliver the first document, report its result with `task_status.started(result)`,
        then deliver every later document until cancelled."""

    def reload(self) -> None:
        """Deliver the current document again soon (SIGHUP); a stream may ignore this."""


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class FileSource:
    def __init__(self, path: Path, *, interval: float = 1.0) -> None:
        self.path = path
        self.name = f"file:{path}"
        self.interval = interval
        self._reload = trio.Event()
        self._missing_logged = False

    def reload(self) -> None:
        self._reload.set()

    def _read(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except OSError as exc:
            if not self._missing_logged:
                log.warning(
                    "snapshot source unavailable; keeping the last good snapshot",
                    extra={"kv": {"path": str(self.path), "error": exc.strerror}},
                )
                self._missing_logged = True
            return None

    async def run(
        self, apply: Apply, *, task_status: trio.TaskStatus[ApplyResult] = trio.TASK_STATUS_IGNORED
    ) -> None:
        seen = _signature(self.path)
        try:
            raw = self.path.read_bytes()
        except OSError as exc:  # at start there is no last good snapshot to keep
            reason = f"cannot read {self.path}: {exc.strerror or exc}"
            result = ApplyResult(False, None, reason, None, self.name, time.time())
        else:
            result = await apply(raw, self.name)
        task_status.started(result)
        while True:
            with trio.move_on_after(self.interval):
                await self._reload.wait()
            forced = self._reload.is_set()
            self._reload = trio.Event()
            current = _signature(self.path)
            if not forced and current == seen:
                continue
            seen = current
            if current is None:
                self._read()  # logs once that the file is gone
                continue
            latest = self._read()
            if latest is None:
                continue
            self._missing_logged = False
            await apply(latest, self.name)
