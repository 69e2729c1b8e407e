"""What the listeners' connection handlers need of the running proxy, and nothing more.

`_inbound`, `_outbound` and `_authorize` take a `ListenerHost` (the `Runtime` is one), so
they depend on this small face rather than on `_runtime`, which starts them: no import
circle between the runtime and the listeners. `Config` is one applied snapshot with what was
built from it; `RuntimeOptions` are the settings every connection reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ._http_forward import HttpConnection, HttpOptions

if TYPE_CHECKING:
    from ._h2_forward import H2Connection

if TYPE_CHECKING:
    from ._authz import Authorizer
    from ._cluster import Cluster
    from ._egress import Egress
    from ._metrics import Metrics
    from ._retry_budget import RetryBudget
    from ._snapshot import Snapshot
    from ._tap import Tap
    from ._tls import TlsMaterial


@dataclass(frozen=True, slots=True)
class RuntimeOptions:
    http: HttpOptions = HttpOptions()  # noqa: RUF009 - frozen
    detect_timeout: float = 10.0
    reuse_port: bool = False
    # Readability waits through the proxy's own epoll (`_reactor`) rather than
    # trio's (one `epoll_ctl` per wait); opt-in with `io_waits = "reactor"` (docs/proxy.md).
    reactor: bool = False
    # Workers: the ports the parent reserved for listeners the snapshot binds to port 0.
    port_overrides: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Config:
    """One applied snapshot with what was built from it; replaced whole, never mutated."""

    snapshot: Snapshot
    tls: TlsMaterial
    authorizer: Authorizer
    clusters: dict[str, Cluster]
    app: Cluster | None


class ListenerHost(Protocol):
    options: RuntimeOptions
    metrics: Metrics
    tap: Tap
    config: Config | None
    connections: set[HttpConnection | H2Connection]
    draining: bool
    budgets: dict[str, RetryBudget]  # per upstream
    egress: Egress  # hosts that are not mesh upstreams (forward proxy)

    def background(self, task: Any, *args: Any) -> None:
        """Start a task that outlives the request that asked for it (a mirrored copy)."""
