"""Per-endpoint pools of keep-alive connections, with a size limit and an idle timeout.

Most recently used first (a warm connection is likelier to be alive and in cache). A pooled
connection is checked with a non-blocking peek before reuse, so one the endpoint closed while
idle is dropped rather than written to.
"""

from __future__ import annotations

import trio

from ._stream import Stream


class Pool:
    __slots__ = ("_lot", "active", "closed", "idle", "idle_timeout", "max_connections")

    def __init__(self, max_connections: int, idle_timeout: float) -> None:
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.idle: list[tuple[Stream, float]] = []
        self.active = 0
        self.closed = False
        self._lot = trio.lowlevel.ParkingLot()

    def take_idle(self, now: float) -> Stream | None:
        idle = self.idle
        while idle:
            conn, since = idle.pop()
            if now - since > self.idle_timeout or conn.stale():
                conn.close()
                continue
            self.active += 1
            return conn
        return None

    async def checkout(self, now: float) -> Stream | None:
        """An idle connection, or None with a slot reserved for a new one (then `release`)."""
        while True:
            conn = self.take_idle(now)
            if conn is not None:
                return conn
            if self.active < self.max_connections:
                self.active += 1
                return None
            await self._lot.park()
            now = trio.current_time()

    def release(self, conn: Stream | None, *, reusable: bool, now: float) -> None:
        self.active -= 1
        if conn is not None:
            if reusable and not self.closed and not conn.closed:
                self.idle.append((conn, now))
            else:
                conn.close()
        if self._lot:  # someone waits for a connection slot
            self._lot.unpark()

    def reap(self, now: float) -> int:
        """Close connections idle longer than the timeout; returns how many."""
        keep = []
        closed = 0
        for conn, since in self.idle:
            if now - since > self.idle_timeout:
                conn.close()
                closed += 1
            else:
                keep.append((conn, since))
        self.idle = keep
        return closed

    def close(self) -> None:
        """No more reuse: idle connections close now, active ones when released."""
        self.closed = True
        for conn, _ in self.idle:
            conn.close()
        self.idle = []
        self._lot.unpark_all()
