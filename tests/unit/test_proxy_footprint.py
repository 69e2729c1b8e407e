"""What a `weft proxy` process loads: every sidecar pays for each module it imports (the
budget is 40 MB RSS per sidecar, see docs/benchmarks.md "Sidecar memory")."""

from __future__ import annotations

import subprocess
import sys

# Loaded by `weft proxy` only through a rarely used path, or never: httpx (and the rich,
# pygments and click its CLI pulls in) cost ~7 MB, the registry's HTTP server and model are
# not the proxy's, h2 loads on the first HTTP/2 connection.
NOT_LOADED = ["httpx", "rich", "pygments", "click", "registry.web", "registry._config", "h2"]

_PROBE = """
import sys
from weft.cli._main import build_parser
build_parser("proxy")
import proxy._server, proxy._workers
print(" ".join(m for m in {names!r} if m in sys.modules))
"""


def test_a_proxy_process_does_not_import_the_registry_server_or_httpx() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(names=NOT_LOADED)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.split() == []


def test_the_registry_still_offers_its_lazy_names() -> None:
    import registry

    assert registry.ServerConfig.__name__ == "ServerConfig"
