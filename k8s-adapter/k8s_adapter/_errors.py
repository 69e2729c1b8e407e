"""Errors of the `k8s_adapter` package.

    AdapterError
    ├── ConfigError         a setting, kubeconfig or service-account file is unusable; names it
    ├── BadObject           an object from the API server cannot be understood (logged, skipped)
    ├── KubeUnavailable     the API server cannot be reached, or a watch stream broke
    └── KubeError           the API server answered with a `Status` error (`code`, `reason`)
        ├── Gone            410: the resourceVersion was compacted away; relist
        ├── Conflict        409: someone else wrote first (Lease races) or it already exists
        └── NotFound        404

httpx errors become KubeUnavailable and error responses become KubeError where they enter
(`_kube.py`); msgspec validation errors become BadObject (`_objects.py`). Registry errors
stay `registry.client`'s own (`APIError`, `ServerUnreachable`): the adapter only retries them.
"""

from __future__ import annotations


class AdapterError(Exception):
    """Base of every error the Kubernetes adapter raises."""


class ConfigError(AdapterError, ValueError):
    """A setting is invalid; `field` names it (the CLI exits 64 with this message)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class BadObject(AdapterError):
    """An object the API server sent is malformed or of an unexpected kind."""


class KubeUnavailable(AdapterError):
    """The API server could not be reached, or a stream from it ended mid-way."""


class KubeError(AdapterError):
    """The API server answered with an error `Status`."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message


class Gone(KubeError):
    """410 Gone (reason Expired): the resourceVersion held is older than the server keeps."""


class Conflict(KubeError):
    """409: an optimistic-concurrency write lost, or the object already exists."""


class NotFound(KubeError):
    """404: the object (or its namespace) does not exist."""


def kube_error(code: int, reason: str, message: str) -> KubeError:
    cls = {410: Gone, 409: Conflict, 404: NotFound}.get(code, KubeError)
    return cls(code, reason, message)
