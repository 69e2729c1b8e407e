"""Is this server's view of etcd fresh enough to be trusted? Pure: observations in, a verdict
out (no I/O; times are the caller's monotonic clock).

Three ways a view goes stale, each allowed for at most `bound` seconds:

    etcd stops answering        no successful probe for `bound`
    the watch is down           no watch stream established for `bound`
    the watch lags              a change etcd reported at time t is not in the mirror by t+bound

A stale server answers 503 on its health endpoint, reports no known leader, and verifies a
token against etcd itself before honouring a write made with it.
"""

from __future__ import annotations

from collections import deque


class Freshness:
    def __init__(self, bound: float, now: float) -> None:
        self.bound = bound
        self._last_probe = now  # a server that just loaded has just read etcd
        self._pending: deque[tuple[float, int]] = deque()  # (when seen, revision), ascending

    def probed(self, now: float, latest_revision: int) -> None:
        """A probe answered: etcd's newest change under the prefix is `latest_revision`."""
        self._last_probe = now
        if not self._pending or latest_revision > self._pending[-1][1]:
            self._pending.append((now, latest_revision))

    def stale_reason(
        self,
        now: float,
        mirror_revision: int,
        *,
        watch_connected: bool,
        watch_down_since: float,
    ) -> str | None:
        """Why the view cannot be trusted right now, or None if it can."""
        while self._pending and self._pending[0][1] <= mirror_revision:
            self._pending.popleft()
        silent = now - self._last_probe
        if silent > self.bound:
            return f"etcd has not answered for {silent:.1f}s"
        if not watch_connected and watch_down_since and now - watch_down_since > self.bound:
            return f"the etcd watch has been down for {now - watch_down_since:.1f}s"
        if self._pending and now - self._pending[0][0] > self.bound:
            behind = now - self._pending[0][0]
            return (
                f"the etcd watch is {behind:.1f}s behind: etcd has revision "
                f"{self._pending[-1][1]}, this server {mirror_revision}"
            )
        return None
