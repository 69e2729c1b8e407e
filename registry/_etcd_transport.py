"""The etcd client's transport: one JSON request to whichever etcd member answers.

`EtcdTransport` is the base of `registry.etcd.EtcdClient`. It holds the endpoints, the
credentials and the HTTP connection pool, and decides which failures are tried again on the
next member: a request that never reached a member is; a write whose answer was lost is not,
since etcd may already have applied it. etcd's error answers are mapped here onto the error
tree drawn in `registry.etcd`.

The watch (`_etcd_watch.py`) opens its streams through the same pool, endpoint rotation and
credentials, and uses `status` of one member as its liveness probe.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import trio

from ._etcd_types import (
    _UNAUTHENTICATED,
    _UNAVAILABLE_CODES,
    EtcdAuthError,
    EtcdError,
    EtcdLeaseNotFound,
    EtcdRequestError,
    EtcdTLS,
    EtcdUnavailable,
)


@dataclass
class _Auth:
    username: str
    password: str
    token: str | None = field(default=None, repr=False)


class EtcdTransport:
    """A connection to an etcd cluster through any of `endpoints`, failing over between them:
    the base of `EtcdClient`, which adds etcd's API on top of `call`.

    Requests that etcd may already have applied (a write whose answer was lost) are not
    retried on another member; everything that never reached a member is.
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        tls: EtcdTLS | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 5.0,
        max_connections: int = 32,
    ) -> None:
        if not endpoints:
            raise ValueError("at least one etcd endpoint is required")
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self._current = 0
        self._auth = _Auth(username, password or "") if username else None
        self._auth_lock = trio.Lock()
        self._timeout = timeout
        self._http = httpx.AsyncClient(
            verify=tls.context() if tls else True,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    def _headers(self) -> dict[str, str]:
        if self._auth and self._auth.token:
            return {"Authorization": self._auth.token}
        return {}

    async def _authenticate(self, endpoint: str) -> None:
        assert self._auth is not None
        resp = await self._http.post(
            endpoint + "/v3/auth/authenticate",
            content=json.dumps({"name": self._auth.username, "password": self._auth.password}),
        )
        if resp.status_code != 200:
            raise EtcdAuthError(
                f"etcd at {endpoint} refused user {self._auth.username!r}: {_error_text(resp)}"
            )
        self._auth.token = resp.json()["token"]

    async def call(
        self, path: str, body: dict[str, Any], *, idempotent: bool = True
    ) -> dict[str, Any]:
        """POST `body` to `path` on a live endpoint and return etcd's JSON answer."""
        payload = json.dumps(body, separators=(",", ":"))
        failures: list[str] = []
        reauthenticated = False
        attempts = len(self.endpoints) + 1
        while attempts > 0:
            attempts -= 1
            endpoint = self.endpoints[self._current]
            try:
                if self._auth and self._auth.token is None:
                    async with self._auth_lock:
                        if self._auth.token is None:
                            await self._authenticate(endpoint)
                resp = await self._http.post(
                    endpoint + path, content=payload, headers=self._headers()
                )
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                failures.append(f"{endpoint}: {exc or type(exc).__name__}")
                self._rotate()
                continue
            except httpx.TransportError as exc:
                if not idempotent:
                    self._rotate()
                    raise EtcdUnavailable(
                        f"etcd at {endpoint} did not answer a write "
                        f"({exc or type(exc).__name__}); it may or may not have been applied"
                    ) from exc
                failures.append(f"{endpoint}: {exc or type(exc).__name__}")
                self._rotate()
                continue
            if resp.status_code == 200:
                return json.loads(resp.content)
            code, message = _error_of(resp)
            if code == _UNAUTHENTICATED and self._auth and not reauthenticated:
                self._auth.token = None
                reauthenticated = True
                attempts += 1
                continue
            if code in _UNAVAILABLE_CODES:
                failures.append(f"{endpoint}: {message}")
                self._rotate()
                if not idempotent and code == 4:
                    raise EtcdUnavailable(f"etcd at {endpoint} timed out a write: {message}")
                continue
            raise _map_error(code, message)
        raise EtcdUnavailable("no etcd endpoint answered: " + "; ".join(failures))

    def _rotate(self) -> None:
        self._current = (self._current + 1) % len(self.endpoints)

    async def status(self, endpoint: str | None = None) -> dict[str, Any]:
        """etcd's maintenance status of one endpoint (default: the current one)."""
        if endpoint is None:
            return await self.call("/v3/maintenance/status", {})
        resp = await self._http.post(
            endpoint + "/v3/maintenance/status", content="{}", headers=self._headers()
        )
        if resp.status_code != 200:
            code, message = _error_of(resp)
            raise _map_error(code, message)
        return json.loads(resp.content)


def _error_of(resp: httpx.Response) -> tuple[int, str]:
    try:
        body = json.loads(resp.content)
    except ValueError:
        return (14 if resp.status_code >= 500 else 0), f"HTTP {resp.status_code}: {resp.text[:200]}"
    if "error" in body and isinstance(body["error"], dict):
        body = body["error"]
    return int(body.get("code", 0)), str(body.get("message") or body.get("error") or body)


def _error_text(resp: httpx.Response) -> str:
    return _error_of(resp)[1]


def _map_error(code: int, message: str) -> EtcdError:
    if "lease not found" in message:
        return EtcdLeaseNotFound(message)
    if code == _UNAUTHENTICATED or "authentication failed" in message:
        return EtcdAuthError(message)
    if code in _UNAVAILABLE_CODES:
        return EtcdUnavailable(message)
    return EtcdRequestError(code, message)
