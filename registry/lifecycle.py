"""What every long-running Weft daemon shares about its life (public; the agent and the
Kubernetes adapter import it, as they import `registry.client`).

    Backoff                 retry delays: exponential, full jitter, capped, resettable (pure)
    serve_until_signalled   serve; SIGHUP reloads; SIGTERM/SIGINT drain within a grace period
    write_atomic            replace a file in one rename (temp file, fsync, rename, dir fsync)
    write_ready_file        the `--ready-file` JSON, written atomically

The sidecar proxy keeps its own small copies (`proxy/_agent_source.py`'s retry delay,
`proxy/_server.py`'s ready file and signal handling): it imports nothing of Weft but `ca`.
"""

from ._atomic_files import write_atomic as write_atomic
from ._atomic_files import write_ready_file as write_ready_file
from ._backoff import Backoff as Backoff
from ._signals import serve_until_signalled as serve_until_signalled

__all__ = ["Backoff", "serve_until_signalled", "write_atomic", "write_ready_file"]
