"""Which connections a server takes: a cap per server and per client address. No I/O.

Every connection costs a file descriptor and a little memory, so the caps are what stand
between a flood of idle connections and the process running out of descriptors (then it
cannot accept, reach etcd or open a file) or memory. The per-address cap keeps one client
from taking every slot; behind a load balancer or NAT every client has the same address, so
there it is set to 0 (off).
"""

from __future__ import annotations

from dataclasses import dataclass

# Descriptors a daemon needs besides its clients: etcd and registry connections, the
# listeners, log files, the event loop's own, a few for health checks and proxies' pipes.
FD_RESERVE = 128


@dataclass(frozen=True)
class FdFit:
    """How the connection cap fits under the open-file limit (RLIMIT_NOFILE)."""

    cap: int  # the cap to enforce
    soft_limit: int  # the soft limit to set (may be raised, up to the hard limit)
    lowered: bool  # the configured cap did not fit and was lowered


def fit_under_fd_limit(max_connections: int, soft: int, hard: int) -> FdFit:
    """The connection cap and soft limit to run with, given the process's limits.

    The soft limit is raised (up to the hard limit) to make room for the cap; if the hard limit
    is too low, the cap is lowered so the process keeps descriptors for its own work.
    """
    needed = max_connections + FD_RESERVE
    if soft >= needed:
        return FdFit(max_connections, soft, False)
    raised = needed if hard < 0 else min(needed, hard)  # hard < 0: RLIM_INFINITY
    raised = max(raised, soft)
    if raised >= needed:
        return FdFit(max_connections, raised, False)
    return FdFit(max(1, raised - FD_RESERVE), raised, True)


class Admission:
    """Counts open connections, in total and per client address."""

    def __init__(self, max_connections: int, max_per_ip: int) -> None:
        self.max_connections = max_connections
        self.max_per_ip = max_per_ip  # 0: no per-address cap
        self.open = 0
        self._per_ip: dict[str, int] = {}

    def admit(self, ip: str) -> str | None:
        """Count the connection in and return None, or say why it is refused."""
        if self.open >= self.max_connections:
            return f"the server is at its limit of {self.max_connections} connections"
        held = self._per_ip.get(ip, 0)
        if self.max_per_ip and held >= self.max_per_ip:
            return f"{ip} already has {held} connections open (the limit per address)"
        self.open += 1
        self._per_ip[ip] = held + 1
        return None

    def release(self, ip: str) -> None:
        self.open -= 1
        left = self._per_ip[ip] - 1
        if left:
            self._per_ip[ip] = left
        else:
            del self._per_ip[ip]

    def held_by(self, ip: str) -> int:
        return self._per_ip.get(ip, 0)
