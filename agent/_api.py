"""The agent's local HTTP API (loopback): status, TTL check updates, and snapshot streams.

GET  /v1/agent/status                         what `weft agent status` shows
GET  /v1/agent/metrics                        Prometheus text (instances dropped from snapshots)
PUT  /v1/agent/check/pass|warn|fail/<id>      TTL check update (Consul's paths; agent token)
PUT  /v1/agent/maintenance?enable=&reason=    this node's maintenance mode, forwarded to the
                                              registry (Consul's path; agent token)
GET  /v1/agent/proxy/<id>/snapshot?index=N    the proxy's snapshot once its version > N
PUT  /v1/agent/proxy/<id>/ack                 the proxy reports what it did with a version
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from registry.checks import Status
from registry.client import APIError, ServerUnreachable
from registry.validation import InvalidInput, parse_index, parse_wait
from registry.web import HTTPError, Request, Response, Router

from ._publisher import Publisher

log = logging.getLogger("weft.agent.api")

DEFAULT_WAIT = 60.0
MAX_WAIT = 600.0


class LocalAPI:
    def __init__(
        self,
        *,
        token: str,
        publisher: Publisher,
        status: Callable[[], dict[str, Any]],
        ttl_update: Callable[[str, Status, str], object],
        set_maintenance: Callable[[bool, str], Awaitable[None]] | None = None,
        metrics: Callable[[], str] = lambda: "",
    ) -> None:
        self.metrics = metrics
        self.token = token
        self.publisher = publisher
        self.status = status
        self.ttl_update = ttl_update
        self.set_maintenance = set_maintenance
        self.router = Router()
        self.router.add("GET", "/v1/agent/status", self._status)
        self.router.add("GET", "/v1/agent/metrics", self._metrics)
        for verb, st in (
            ("pass", Status.PASSING),
            ("warn", Status.WARNING),
            ("fail", Status.CRITICAL),
        ):
            self.router.add("PUT", f"/v1/agent/check/{verb}/{{check_id}}", self._check(st))
        self.router.add("PUT", "/v1/agent/maintenance", self._maintenance)
        self.router.add("GET", "/v1/agent/proxy/{proxy_id}/snapshot", self._snapshot)
        self.router.add("PUT", "/v1/agent/proxy/{proxy_id}/ack", self._ack)

    async def __call__(self, request: Request) -> Response:
        try:
            route, params = self.router.match(request.method, request.path)
            request.params = params
            return await route.handler(request)
        except HTTPError as exc:
            return Response.json(
                {"error": {"message": exc.message, "field": exc.field, "status": exc.status}},
                status=exc.status,
            )
        except Exception:  # a bug answers 500 and is logged; it never ends the agent
            log.exception("internal error on %s %s", request.method, request.path)
            return Response.json(
                {"error": {"message": "internal error (logged by the agent)", "status": 500}},
                status=500,
            )

    def _authorized(self, request: Request) -> None:
        sent = request.headers.get("x-consul-token") or request.headers.get("x-weft-token") or ""
        auth = request.headers.get("authorization", "")
        if not sent and auth.lower().startswith("bearer "):
            sent = auth[7:].strip()
        if not sent or not hmac.compare_digest(sent.encode(), self.token.encode()):
            raise HTTPError(
                403,
                "send this node's agent token (X-Consul-Token) to update checks through the agent",
            )

    async def _status(self, request: Request) -> Response:
        return Response.json(self.status())

    async def _metrics(self, request: Request) -> Response:
        return Response(
            body=self.metrics().encode(), content_type="text/plain; version=0.0.4; charset=utf-8"
        )

    def _check(self, status: Status) -> Callable[[Request], Any]:
        async def handler(request: Request) -> Response:
            self._authorized(request)
            check_id = request.params["check_id"]
            try:
                self.ttl_update(check_id, status, request.arg("note") or "")
            except KeyError:
                raise HTTPError(404, f"no check {check_id!r} on this agent") from None
            except ValueError as exc:
                raise HTTPError(400, str(exc)) from None
            return Response(status=200, body=b"", content_type="text/plain")

        return handler

    async def _maintenance(self, request: Request) -> Response:
        self._authorized(request)
        enable = request.arg("enable")
        if enable not in ("true", "false"):
            raise HTTPError(400, "enable: must be true or false")
        if self.set_maintenance is None:
            raise HTTPError(404, "this agent does not forward maintenance mode")
        try:
            await self.set_maintenance(enable == "true", request.arg("reason") or "")
        except APIError as exc:
            raise HTTPError(exc.status, f"the registry refused: {exc.message}") from None
        except ServerUnreachable as exc:
            raise HTTPError(502, f"the registry is unreachable: {exc.message}") from None
        return Response(status=200, body=b"", content_type="text/plain")

    async def _snapshot(self, request: Request) -> Response:
        proxy_id = request.params["proxy_id"]
        # This endpoint answers without a token: its parameters are an attacker's to choose.
        try:
            raw_index = request.arg("index")
            index = parse_index(raw_index, "index") if raw_index is not None else 0
            wait = parse_wait(request.arg("wait"), "wait", default=DEFAULT_WAIT, maximum=MAX_WAIT)
        except InvalidInput as exc:
            raise HTTPError(400, exc.message, field=exc.field) from None
        if proxy_id not in self.publisher.proxies:
            raise HTTPError(404, f"no proxy {proxy_id!r} on this agent")
        published = await self.publisher.wait_newer(proxy_id, index, trio.current_time() + wait)
        if published is None:
            raise HTTPError(404, f"proxy {proxy_id!r} was removed")
        return Response(
            body=json.dumps(published.doc).encode(),
            headers=[("X-Weft-Index", str(published.version))],
        )

    async def _ack(self, request: Request) -> Response:
        proxy_id = request.params["proxy_id"]
        ack = request.json()
        if not isinstance(ack, dict):
            raise HTTPError(400, "ack body is not a JSON object")
        self.publisher.record_ack(proxy_id, ack)
        return Response.json({"recorded": True})
