"""The Kubernetes REST API over httpx on trio: paged lists, watch streams, object writes.

Thin on purpose: it moves JSON and turns transport failures into KubeUnavailable and error
`Status` answers into KubeError (Gone, Conflict, NotFound, ...). What the objects mean is for
the pure modules; when to list again is the informer's business.

lightkube's own AsyncClient was the first choice, but under trio it fails on its retry path
(it calls asyncio.sleep), cannot ask for bookmarks, and answers 410 by watching from "now"
instead of relisting, which loses deletions; its kubeconfig parser and models are used.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from ._credentials import KubeCredentials
from ._errors import KubeError, KubeUnavailable, kube_error
from ._objects import Kind

WatchEvent = tuple[str, Any]  # (ADDED | MODIFIED | DELETED | BOOKMARK, raw object)


class KubeClient:
    def __init__(self, creds: KubeCredentials, *, user_agent: str, timeout: float = 30.0) -> None:
        self.creds = creds
        self.timeout = timeout
        self.http = httpx.AsyncClient(
            base_url=creds.server,
            verify=creds.verify,
            auth=creds.auth,
            timeout=httpx.Timeout(timeout),
            headers={"User-Agent": user_agent, "Accept": "application/json"},
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=8),
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
    ) -> Any:
        content = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if content is not None else None
        try:
            resp = await self.http.request(
                method, path, params=params, content=content, headers=headers
            )
        except httpx.HTTPError as exc:
            raise KubeUnavailable(
                f"{method} {path}: {exc or type(exc).__name__} ({self.creds.server})"
            ) from exc
        if resp.status_code >= 400:
            raise status_error(resp)
        try:
            return resp.json()
        except ValueError:
            raise KubeUnavailable(f"{method} {path}: the answer is not JSON") from None

    async def list(
        self,
        kind: Kind[Any],
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        page: int = 500,
    ) -> tuple[list[Any], str]:
        """Every object of `kind` (in pages of `page`) and the list's resourceVersion."""
        items: list[Any] = []
        token: str | None = None
        version = ""
        while True:
            params: dict[str, Any] = {"limit": page}
            if token:
                params["continue"] = token
            if label_selector:
                params["labelSelector"] = label_selector
            body = await self.request("GET", kind.collection(namespace), params=params)
            if not isinstance(body, dict) or not isinstance(body.get("items") or [], list):
                raise KubeUnavailable(f"the {kind.name} list is not a list object")
            meta = body.get("metadata") or {}
            items.extend(body.get("items") or [])
            version = str(meta.get("resourceVersion") or version)
            token = meta.get("continue") or None
            if not token:
                break
        if not version:
            raise KubeUnavailable(f"the {kind.name} list carries no resourceVersion")
        return items, version

    async def watch(
        self,
        kind: Kind[Any],
        resource_version: str,
        *,
        timeout_seconds: int,
        namespace: str | None = None,
        label_selector: str | None = None,
    ) -> AsyncIterator[WatchEvent]:
        """Events after `resource_version` until the server ends the stream.

        An ERROR event raises its KubeError (Gone: relist); a line that is not a complete JSON
        event means the stream broke (KubeUnavailable): resume from the last version seen.
        """
        params: dict[str, Any] = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": max(1, int(timeout_seconds)),
        }
        if label_selector:
            params["labelSelector"] = label_selector
        path = kind.collection(namespace)
        try:
            async with self.http.stream(
                "GET", path, params=params, timeout=httpx.Timeout(self.timeout, read=None)
            ) as resp:
                if resp.status_code >= 400:
                    await resp.aread()
                    raise status_error(resp)
                async for line in resp.aiter_lines():
                    if not line.strip():
                        continue
                    try:
                        event = json.loads(line)
                        type_, obj = event["type"], event.get("object")
                    except (ValueError, KeyError, TypeError):
                        raise KubeUnavailable(
                            f"the {kind.name} watch stream broke: {line[:80]!r} is not an event"
                        ) from None
                    if type_ == "ERROR":
                        raise _error_event(obj)
                    yield type_, obj
        except httpx.HTTPError as exc:
            raise KubeUnavailable(
                f"the {kind.name} watch stream broke: {exc or type(exc).__name__}"
            ) from exc

    # -- objects -----------------------------------------------------------------------------

    async def get(self, kind: Kind[Any], namespace: str, name: str) -> Any:
        return await self.request("GET", kind.item(namespace, name))

    async def create(self, kind: Kind[Any], namespace: str, body: dict[str, Any]) -> Any:
        return await self.request("POST", kind.collection(namespace), body=body)

    async def replace(self, kind: Kind[Any], namespace: str, body: dict[str, Any]) -> Any:
        name = body["metadata"]["name"]
        return await self.request("PUT", kind.item(namespace, name), body=body)

    async def delete(self, kind: Kind[Any], namespace: str, name: str) -> Any:
        return await self.request("DELETE", kind.item(namespace, name))


def status_error(resp: httpx.Response) -> KubeError:
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("kind") == "Status":
        return kube_error(
            int(body.get("code") or resp.status_code),
            str(body.get("reason") or resp.reason_phrase),
            str(body.get("message") or ""),
        )
    return kube_error(resp.status_code, resp.reason_phrase, resp.text[:200])


def _error_event(obj: Any) -> KubeError:
    if isinstance(obj, dict):
        return kube_error(
            int(obj.get("code") or 500), str(obj.get("reason") or ""), str(obj.get("message") or "")
        )
    return kube_error(500, "InternalError", f"malformed ERROR event: {obj!r}")
