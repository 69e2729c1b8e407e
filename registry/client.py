"""An async client of the registry's HTTP API (native and Consul routes), on httpx + trio.

Used by the CLI, the agent and the Kubernetes adapter. Several server addresses may be given;
requests that could not reach a server are tried on the next one.
"""

from __future__ import annotations

import json as jsonlib
import ssl
from collections.abc import Sequence
from typing import Any

import httpx

from ._errors import RegistryError, Unavailable


class APIError(RegistryError):
    """The server answered with an error; `status` is the HTTP status."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.status = status


class ServerUnreachable(Unavailable):
    """No registry server could be reached."""


class RegistryClient:
    def __init__(
        self,
        addresses: str | Sequence[str],
        *,
        token: str | None = None,
        ca_file: str | None = None,
        cert: tuple[str, str] | None = None,
        timeout: float = 10.0,
    ) -> None:
        if isinstance(addresses, str):
            addresses = [a.strip() for a in addresses.split(",") if a.strip()]
        self.addresses = [a.rstrip("/") if "://" in a else f"http://{a}" for a in addresses]
        if not self.addresses:
            raise ValueError("at least one registry server address is required")
        self.token = token
        verify: ssl.SSLContext | bool = True
        if ca_file or cert:
            verify = ssl.create_default_context(cafile=ca_file)
            if cert:
                verify.load_cert_chain(*cert)
        self._current = 0
        self.http = httpx.AsyncClient(
            verify=verify,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def address(self) -> str:
        return self.addresses[self._current]

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
        allow_404: bool = False,
    ) -> httpx.Response:
        headers = {"X-Consul-Token": self.token} if self.token else {}
        body = content if json is None else jsonlib.dumps(json).encode()
        failures = []
        for _ in range(len(self.addresses)):
            url = self.addresses[self._current] + path
            try:
                resp = await self.http.request(
                    method,
                    url,
                    content=body,
                    params=params,
                    headers=headers,
                    timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
                )
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                failures.append(f"{self.addresses[self._current]}: {exc or type(exc).__name__}")
                self._current = (self._current + 1) % len(self.addresses)
                continue
            except httpx.HTTPError as exc:
                raise ServerUnreachable(
                    f"{self.addresses[self._current]} did not answer {method} {path}: "
                    f"{exc or type(exc).__name__}"
                ) from exc
            if resp.status_code >= 400 and not (allow_404 and resp.status_code == 404):
                raise _api_error(resp)
            return resp
        raise ServerUnreachable("no registry server reachable: " + "; ".join(failures))

    async def get_json(self, path: str, **params: Any) -> tuple[Any, int]:
        """GET a JSON view and its index (`index`/`wait` params make it a blocking query)."""
        clean = {k: v for k, v in params.items() if v is not None}
        timeout = None
        if "wait" in clean:
            timeout = _seconds(clean["wait"]) * 1.1 + 10
        resp = await self.request("GET", path, params=clean, timeout=timeout)
        index = int(resp.headers.get("X-Weft-Index") or resp.headers.get("X-Consul-Index") or 0)
        return resp.json(), index

    # -- registry ----------------------------------------------------------------------------

    async def services(self) -> list[dict[str, Any]]:
        return (await self.get_json("/v1/registry/services"))[0]

    async def service(
        self,
        name: str,
        *,
        passing: bool = False,
        index: int | None = None,
        wait: str | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        params: dict[str, Any] = {"index": index, "wait": wait}
        if passing:
            params["passing"] = ""
        data, idx = await self.get_json(f"/v1/registry/services/{name}", **params)
        return data["instances"], idx

    async def instances(
        self, *, node: str | None = None, source: str | None = None
    ) -> list[dict[str, Any]]:
        return (await self.get_json("/v1/registry/instances", node=node, source=source))[0]

    async def register(self, instance: dict[str, Any]) -> dict[str, Any]:
        return (await self.request("PUT", "/v1/registry/instances", json=instance)).json()

    async def deregister(self, service: str, node: str, instance_id: str) -> None:
        await self.request("DELETE", f"/v1/registry/instances/{service}/{node}/{instance_id}")

    async def batch(
        self, upserts: list[dict[str, Any]], deletes: list[dict[str, str]]
    ) -> dict[str, Any]:
        return (
            await self.request(
                "POST", "/v1/registry/batch", json={"upserts": upserts, "deletes": deletes}
            )
        ).json()

    async def update_check(
        self, node: str, check_id: str, status: str, output: str = ""
    ) -> dict[str, Any]:
        return (
            await self.request(
                "PUT",
                f"/v1/registry/checks/{node}/{check_id}",
                json={"status": status, "output": output},
            )
        ).json()

    async def maintenance(self, node: str, enable: bool, reason: str = "") -> None:
        await self.request(
            "PUT", f"/v1/registry/maintenance/{node}", json={"enable": enable, "reason": reason}
        )

    async def grant_lease(self, ttl: int) -> str:
        return (await self.request("POST", "/v1/registry/leases", json={"ttl": ttl})).json()["id"]

    async def keepalive(self, lease: str) -> int:
        return (await self.request("PUT", f"/v1/registry/leases/{lease}")).json()["ttl"]

    async def revoke(self, lease: str) -> None:
        await self.request("DELETE", f"/v1/registry/leases/{lease}")

    # -- tokens ------------------------------------------------------------------------------

    async def create_token(
        self,
        role: str,
        *,
        node: str = "",
        source: str = "",
        description: str = "",
        key_prefix: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"role": role, "description": description}
        if node:
            body["node"] = node
        if source:
            body["source"] = source
        if key_prefix:
            body["key_prefix"] = key_prefix
        return (await self.request("POST", "/v1/tokens", json=body)).json()

    async def tokens(self) -> list[dict[str, Any]]:
        return (await self.request("GET", "/v1/tokens")).json()

    async def revoke_token(self, accessor: str) -> dict[str, Any]:
        return (await self.request("DELETE", f"/v1/tokens/{accessor}")).json()

    async def token_self(self) -> dict[str, Any]:
        return (await self.request("GET", "/v1/tokens/self")).json()

    # -- CA ----------------------------------------------------------------------------------

    async def ca_roots(
        self, *, index: int | None = None, wait: str | None = None
    ) -> tuple[dict[str, Any], int]:
        return await self.get_json("/v1/ca/roots", index=index, wait=wait)

    async def ca_status(self) -> dict[str, Any]:
        return (await self.request("GET", "/v1/ca/status")).json()

    async def ca_init(self, body: dict[str, Any]) -> dict[str, Any]:
        return (await self.request("POST", "/v1/ca/init", json=body)).json()

    async def ca_rotate(self, body: dict[str, Any]) -> dict[str, Any]:
        return (await self.request("POST", "/v1/ca/rotate", json=body)).json()

    async def ca_sign(
        self, csr_pem: str, service: str, *, namespace: str = "default", lifetime: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"csr": csr_pem, "service": service, "namespace": namespace}
        if lifetime:
            body["lifetime"] = lifetime
        return (await self.request("POST", "/v1/ca/sign", json=body)).json()

    async def ca_server_certificate(
        self, csr_pem: str, dns_names: list[str], ip_addresses: list[str]
    ) -> dict[str, Any]:
        body = {"csr": csr_pem, "dns_names": dns_names, "ip_addresses": ip_addresses}
        return (await self.request("POST", "/v1/ca/server-certificate", json=body)).json()

    # -- KV (Consul routes) ------------------------------------------------------------------

    async def kv_get(self, key: str) -> bytes | None:
        resp = await self.request("GET", f"/v1/kv/{key}", params={"raw": ""}, allow_404=True)
        return None if resp.status_code == 404 else resp.content

    async def kv_list(self, prefix: str) -> list[str]:
        resp = await self.request("GET", f"/v1/kv/{prefix}", params={"keys": ""}, allow_404=True)
        return [] if resp.status_code == 404 else resp.json()

    async def kv_put(self, key: str, value: bytes) -> bool:
        return bool((await self.request("PUT", f"/v1/kv/{key}", content=value)).json())

    async def kv_delete(self, key: str, *, recurse: bool = False) -> bool:
        params = {"recurse": ""} if recurse else None
        return bool((await self.request("DELETE", f"/v1/kv/{key}", params=params)).json())


def _api_error(resp: httpx.Response) -> APIError:
    try:
        body = resp.json()
        error = body.get("error", {}) if isinstance(body, dict) else {}
        if isinstance(error, dict) and error.get("message"):
            return APIError(resp.status_code, error["message"], error.get("field"))
    except ValueError:
        pass
    text = resp.text.strip() or resp.reason_phrase
    return APIError(resp.status_code, text)


def _seconds(wait: str) -> float:
    from ._decode import parse_duration

    try:
        return parse_duration(wait)
    except ValueError:
        return 300.0
