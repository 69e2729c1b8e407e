"""The Weft registry: an etcd-backed, Consul-compatible service catalog and its HTTP API.

This is the registry's public face: what other packages (agent, k8s_adapter, weft, bench)
may use. Everything in an underscored module is private to the registry.

    registry                  the names below
    registry.client           RegistryClient and its errors (the agent, the adapter, the CLI)
    registry.validation       the registration rules and `parse_duration`, shared with the agent
    registry.checks           the HTTP/TCP probe and the check status table
    registry.web              the small trio HTTP server the agent and the adapter serve with
    registry.dns              the DNS relay an agent serves its host with
    registry.etcd             the etcd v3 JSON-gateway client
    registry.server           `weft server` itself (`run`)

The server side (`RegistryServer`, `run_server`, the HTTP server) is imported on first use, so
a CLI command that only parses a duration does not load trio and the whole server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._errors import RegistryError as RegistryError
from ._model import Status as Status
from .validation import InvalidInput as InvalidInput
from .validation import parse_duration as parse_duration

if TYPE_CHECKING:
    from ._config import ServerConfig as ServerConfig
    from .client import APIError as APIError
    from .client import RegistryClient as RegistryClient
    from .client import ServerUnreachable as ServerUnreachable
    from .server import RegistryServer as RegistryServer
    from .server import run as run_server  # noqa: F401 (in __all__ through _LAZY)
    from .web import HTTPError as HTTPError
    from .web import HTTPServer as HTTPServer
    from .web import Request as Request
    from .web import Response as Response
    from .web import Router as Router

_LAZY = {
    "ServerConfig": ("_config", "ServerConfig"),
    "APIError": ("client", "APIError"),
    "RegistryClient": ("client", "RegistryClient"),
    "ServerUnreachable": ("client", "ServerUnreachable"),
    "RegistryServer": ("server", "RegistryServer"),
    "run_server": ("server", "run"),
    "HTTPError": ("web", "HTTPError"),
    "HTTPServer": ("web", "HTTPServer"),
    "Request": ("web", "Request"),
    "Response": ("web", "Response"),
    "Router": ("web", "Router"),
}

__all__ = [
    "ServerConfig",
    "RegistryError",
    "Status",
    "InvalidInput",
    "parse_duration",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'registry' has no attribute {name!r}")
    import importlib

    module, attr = _LAZY[name]
    value = getattr(importlib.import_module(f"registry.{module}"), attr)
    globals()[name] = value
    return value
