"""HTTP/2 connections to a cluster's endpoints: a few multiplexed ones each, shared by streams.

A request balanced onto an endpoint takes a stream on one of that endpoint's connections that
has room (below the peer's SETTINGS_MAX_CONCURRENT_STREAMS and not going away); a new
connection is opened only when none has. Each connection's reader runs in the runtime's
connection nursery (`spawn`), so it outlives the request that opened it; connections with no
stream for the pool's idle timeout are closed by `reap`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from ._stream import Stream

# The h2 library (and the session built on it) is imported on first use: a sidecar with no
# HTTP/2 upstream never loads it, which keeps an HTTP/1.1 sidecar's memory where it was.
if TYPE_CHECKING:
    from ._balance import Endpoint
    from ._cluster import Cluster
    from ._h2_session import H2Session


class H2Lease:
    """One stream's endpoint and connection; `done` once with the outcome, as `Lease`."""

    __slots__ = ("cluster", "endpoint", "finished", "session", "started")

    def __init__(self, cluster: Cluster, endpoint: Endpoint, session: H2Session) -> None:
        self.cluster = cluster
        self.endpoint = endpoint
        self.session = session
        self.started = trio.current_time()
        self.finished = False

    def done(self, *, ok: bool, transport_failure: bool = False) -> None:
        if self.finished:
            return
        self.finished = True
        now = trio.current_time()
        cluster = self.cluster
        if cluster.balancer.finish(
            self.endpoint, now, now - self.started, ok=ok, transport=transport_failure
        ):
            cluster.metrics.add(cluster.metrics.ejections, cluster.name)
        self.session.last_used = now

    def abandon(self) -> None:
        if self.finished:
            return
        self.finished = True
        self.cluster.balancer.release(self.endpoint)
        self.session.last_used = trio.current_time()


class H2Pool:
    def __init__(self) -> None:
        self.sessions: dict[str, list[H2Session]] = {}
        self.opening: dict[str, trio.Event] = {}  # endpoints a connection is being opened to
        self.closed = False

    def usable(self, key: str) -> H2Session | None:
        sessions = self.sessions.get(key)
        if not sessions:
            return None
        for session in list(sessions):
            if session.closed is not None:
                sessions.remove(session)
            elif session.capacity() > 0:
                return session
        return None

    async def open(self, key: str, conn: Stream, spawn: Callable[..., None] | None) -> H2Session:
        from ._h2_session import H2Closed, H2Session

        session = H2Session(conn, client=True)
        session.last_used = trio.current_time()
        try:
            await session.start()
        except BaseException:
            conn.close()
            raise
        if spawn is None or self.closed:
            conn.close()
            raise H2Closed("the proxy is shutting down")
        spawn(session.run)
        self.sessions.setdefault(key, []).append(session)
        return session

    def reap(self, now: float, idle_timeout: float) -> None:
        if not self.sessions:
            return
        from ._h2_session import H2Closed

        for key, sessions in list(self.sessions.items()):
            keep = []
            for session in sessions:
                if session.closed is not None:
                    continue
                if not session.inboxes and now - session.last_used > idle_timeout:
                    session.close(H2Closed("idle"))
                    continue
                keep.append(session)
            if keep:
                self.sessions[key] = keep
            else:
                del self.sessions[key]

    def close(self) -> None:
        self.closed = True
        if not self.sessions:
            return
        from ._h2_session import H2Closed

        for sessions in self.sessions.values():
            for session in sessions:
                session.close(H2Closed("the cluster is gone"))
        self.sessions.clear()
