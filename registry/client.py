"""An async client of the registry's HTTP API (native and Consul routes), on httpx + trio.

Used by the CLI, the agent and the Kubernetes adapter. Several server addresses may be given;
a request is tried on the next one when a server cannot be reached, does not answer within
the request's deadline, or answers 502/503/504 (a POST only when it never connected). The
deadline (`timeout`) covers the whole exchange; the agent keeps it under a third of its
lease TTL, so a hung server costs one keepalive, not the lease.
"""

from __future__ import annotations

import json as jsonlib
import ssl
from collections.abc import Sequence
from typing import Any

import httpx
import trio

from ._errors import RegistryError, Unavailable


class APIError(RegistryError):
    """The server answered with an error; `status` is the HTTP status."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.status = status
        self.problems: list[str] = []  # a refused batch of resources: every problem


class ServerUnreachable(Unavailable):
    """No registry server could be reached."""


_FAIL_OVER = frozenset({502, 503, 504})


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
        self.timeout = timeout
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
        # A POST that reached a server and got no answer may have been applied: it is tried
        # again elsewhere only if it never connected. Everything else is safe to repeat.
        repeatable = method.upper() != "POST"
        deadline = timeout if timeout is not None else self.timeout
        failures = []
        refused: httpx.Response | None = None
        for _ in range(len(self.addresses)):
            refused = None
            address = self.addresses[self._current]
            url = address + path
            try:
                # One deadline for the whole exchange: httpx's timeouts are per read, and a
                # stopped server that accepted the connection would hold a trickle forever.
                with trio.fail_after(deadline):
                    resp = await self.http.request(
                        method,
                        url,
                        content=body,
                        params=params,
                        headers=headers,
                        timeout=deadline,
                    )
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                failures.append(f"{address}: {exc or type(exc).__name__}")
                self._rotate()
                continue
            except (httpx.HTTPError, trio.TooSlowError) as exc:
                self._rotate()
                what = str(exc) or (
                    f"no answer within {deadline:g}s"
                    if isinstance(exc, trio.TooSlowError | httpx.TimeoutException)
                    else type(exc).__name__
                )
                if repeatable:
                    failures.append(f"{address}: {what}")
                    continue
                raise ServerUnreachable(
                    f"{address} did not answer {method} {path}: {what}"
                ) from exc
            if resp.status_code in _FAIL_OVER and repeatable:
                # The server is up but cannot serve (cut off from etcd, draining): another may.
                failures.append(f"{address}: HTTP {resp.status_code} {resp.text[:200].strip()}")
                self._rotate()
                refused = resp
                continue
            if resp.status_code >= 400 and not (allow_404 and resp.status_code == 404):
                raise _api_error(resp)
            return resp
        if refused is not None and len(self.addresses) == 1:
            raise _api_error(refused)  # one server: its own answer says most
        raise ServerUnreachable("no registry server could answer: " + "; ".join(failures))

    def _rotate(self) -> None:
        self._current = (self._current + 1) % len(self.addresses)

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

    # -- metrics -----------------------------------------------------------------------------

    async def push_metrics(self, body: dict[str, Any]) -> dict[str, Any]:
        """Store this node's proxies' counters (an agent token; see registry/_metrics_sample)."""
        return (await self.request("POST", "/v1/metrics/push", json=body)).json()

    async def metrics(self, view: str, **params: Any) -> dict[str, Any]:
        """A golden-metrics view: stat, edges, routes or proxies (docs/observability.md)."""
        return (await self.get_json(f"/v1/metrics/{view}", **params))[0]

    # -- tokens ------------------------------------------------------------------------------

    async def create_token(
        self,
        role: str,
        *,
        node: str = "",
        source: str = "",
        description: str = "",
        key_prefix: dict[str, str] | None = None,
        services: list[str] | None = None,
        service_prefix: list[str] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"role": role, "description": description}
        if node:
            body["node"] = node
        if source:
            body["source"] = source
        if key_prefix:
            body["key_prefix"] = key_prefix
        if services is not None or service_prefix is not None:
            body["services"] = services or []
            body["service_prefix"] = service_prefix or []
        return (await self.request("POST", "/v1/tokens", json=body)).json()

    async def update_token_services(
        self, accessor: str, services: list[str], service_prefix: list[str]
    ) -> dict[str, Any]:
        body = {"services": services, "service_prefix": service_prefix}
        return (await self.request("PATCH", f"/v1/tokens/{accessor}", json=body)).json()

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

    # -- traffic resources -------------------------------------------------------------------

    async def apply_resources(
        self, docs: list[dict[str, Any]], *, dry_run: bool = False
    ) -> list[dict[str, Any]]:
        """Store a batch (validated as a whole); per resource: kind, name, action, revision."""
        body = {"resources": docs, "dry_run": dry_run}
        results: list[dict[str, Any]] = (
            await self.request("POST", "/v1/resources", json=body)
        ).json()["results"]
        return results

    async def resources(
        self, kind: str | None = None, *, index: int | None = None, wait: str | None = None
    ) -> tuple[list[dict[str, Any]], int]:
        body, idx = await self.get_json("/v1/resources", kind=kind, index=index, wait=wait)
        return body["resources"], idx

    async def resource(self, kind: str, name: str) -> dict[str, Any] | None:
        resp = await self.request("GET", f"/v1/resources/{kind}/{name}", allow_404=True)
        return None if resp.status_code == 404 else resp.json()

    async def delete_resource(self, kind: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = (
            await self.request("DELETE", f"/v1/resources/{kind}/{name}")
        ).json()
        return result

    # -- intentions ---------------------------------------------------------------------------

    async def intentions(
        self, *, index: int | None = None, wait: str | None = None
    ) -> tuple[dict[str, Any], int]:
        """The mesh default and every intention (`GET /v1/intentions`), blocking with index."""
        body, idx = await self.get_json("/v1/intentions", index=index, wait=wait)
        return body, idx

    async def intention_put(self, source: str, destination: str, body: dict[str, Any]) -> None:
        params = {"source": source, "destination": destination}
        await self.request("PUT", "/v1/connect/intentions/exact", params=params, json=body)

    async def intention_get(self, source: str, destination: str) -> dict[str, Any] | None:
        params = {"source": source, "destination": destination}
        resp = await self.request(
            "GET", "/v1/connect/intentions/exact", params=params, allow_404=True
        )
        return None if resp.status_code == 404 else resp.json()

    async def intention_list(self) -> list[dict[str, Any]]:
        return (await self.get_json("/v1/connect/intentions"))[0]

    async def intention_check(self, source: str, destination: str) -> bool:
        body, _ = await self.get_json(
            "/v1/connect/intentions/check", source=source, destination=destination
        )
        return bool(body["Allowed"])

    async def intention_delete(self, source: str, destination: str) -> None:
        params = {"source": source, "destination": destination}
        await self.request("DELETE", "/v1/connect/intentions/exact", params=params)

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
            api_error = APIError(resp.status_code, error["message"], error.get("field"))
            api_error.problems = list(error.get("problems") or [])
            return api_error
    except ValueError:
        pass
    text = resp.text.strip() or resp.reason_phrase
    return APIError(resp.status_code, text)


def _seconds(wait: str) -> float:
    from ._numbers import parse_wait

    try:
        return parse_wait(wait, default=300.0, maximum=600.0)
    except ValueError:  # the server will refuse it and say why
        return 300.0
