"""`weft server`: the registry (and, mounted beside it, the CA) over one HTTP listener.

Stateless: everything lives in etcd; run as many as you like behind any load balancer.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import ssl
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import trio

from . import _consul_api, _consul_query, _native_api, _openapi
from ._batcher import WriteBatcher
from ._ca_api import retry_after_header
from ._catalog import Catalog
from ._config import ServerConfig, split_host_port
from ._context import Context, RegistryOptions
from ._dns import DNSOptions
from ._dns_server import DNSServer
from ._duties import HealthDuties
from ._errors import RegistryError
from ._fanout import Hub
from ._keys import Keys
from ._leader import lead
from ._mirror import Mirror
from ._sessions import Sessions
from ._sync import MirrorSync
from ._validate import CheckRules
from .etcd import EtcdClient, EtcdTLS
from .web import HTTPError, HTTPServer, Limits, Request, Response, Router

log = logging.getLogger("weft.server")

# Paths of Consul's API: an unknown one answers a plain-text 404 as Consul does, so every
# Consul client sees one shape of "not found" (the native API answers JSON errors).
CONSUL_PREFIXES = (
    "/v1/agent",
    "/v1/catalog",
    "/v1/health",
    "/v1/kv",
    "/v1/session",
    "/v1/txn",
    "/v1/acl",
    "/v1/status",
    "/v1/event",
    "/v1/query",
    "/v1/coordinate",
    "/v1/operator",
    "/v1/connect",
    "/v1/config",
    "/v1/internal",
)


class Extension(Protocol):
    """Something mounted beside the registry on the same server (the CA is one)."""

    def mount(self, router: Router, ctx: Context) -> None: ...

    async def start(self, ctx: Context, etcd: EtcdClient) -> None:
        """Before the server binds its port; raising refuses to start."""

    async def run(self) -> None:
        """Background work for as long as the server runs."""


class RegistryApp:
    """Routing and error rendering: Consul routes answer errors in plain text, others in JSON."""

    def __init__(self, ctx: Context, extensions: Sequence[Extension] = ()) -> None:
        self.ctx = ctx
        self.router = Router()
        _consul_api.mount(self.router, ctx)
        _native_api.mount(self.router, ctx)
        for extension in extensions:
            extension.mount(self.router, ctx)
        self.router.add("GET", "/v1/openapi.json", self._openapi)
        self.router.add("GET", "/v1/weft/health", self._health)
        self._openapi_body = json.dumps(_openapi.document()).encode()

    async def _openapi(self, request: Request) -> Response:
        return Response(body=self._openapi_body)

    async def _health(self, request: Request) -> Response:
        ctx = self.ctx
        healthy = ctx.catalog.sync.healthy
        body = {
            "status": "ok" if healthy else "loading",
            "revision": ctx.mirror.revision,
            "blocking_queries": ctx.hub.waiting,
        }
        return Response.json(body, status=200 if healthy else 503)

    async def __call__(self, request: Request) -> Response:
        route = None
        try:
            route, params = self.router.match(request.method, request.path)
            request.params = params
            request.route = route
            if "consul" in route.tags:
                return await _consul_query.around(
                    request, route.pattern, self.ctx.options.datacenter, route.handler
                )
            return await route.handler(request)
        except (HTTPError, RegistryError) as exc:
            status = exc.status
            message, field = exc.message, exc.field
            consul = route is not None and "consul" in route.tags
            if route is None and request.path.startswith(CONSUL_PREFIXES):
                consul = True
            headers = [("Allow", exc.allow)] if isinstance(exc, HTTPError) and exc.allow else []
            headers += retry_after_header(exc)  # type: ignore[arg-type]
            if consul:
                resp = Response.text(message + "\n", status)
                resp.headers.extend(headers)
                return resp
            body = {"error": {"message": message, "field": field, "status": status}}
            return Response.json(body, status=status, headers=headers)
        except Exception:
            log.error(
                "internal error on %s %s:\n%s", request.method, request.path, traceback.format_exc()
            )
            return Response.json(
                {
                    "error": {
                        "message": "internal server error (logged on the server)",
                        "field": None,
                        "status": 500,
                    }
                },
                status=500,
            )


def _etcd_client(config: ServerConfig) -> EtcdClient:
    tls = None
    if config.etcd_ca_file or config.etcd_cert_file:
        tls = EtcdTLS(
            config.etcd_ca_file or None, config.etcd_cert_file or None, config.etcd_key_file or None
        )
    return EtcdClient(
        list(config.etcd_endpoints),
        tls=tls,
        username=config.etcd_username or None,
        password=config.etcd_password or None,
    )


def _ssl_context(config: ServerConfig) -> ssl.SSLContext | None:
    if not config.tls_cert_file:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(config.tls_cert_file, config.tls_key_file)
    return ctx


def _write_private(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


class RegistryServer:
    def __init__(
        self,
        config: ServerConfig,
        *,
        extensions: list[Extension] | None = None,
        clock: Callable[[], float] = time.time,
        on_ready: Callable[[str], None] | None = None,
    ) -> None:
        self.on_ready = on_ready
        self.config = config
        self.clock = clock
        self.etcd = _etcd_client(config)
        self.keys = Keys(config.etcd_prefix)
        self.mirror = Mirror(self.keys)
        self.hub = Hub()
        self.sync = MirrorSync(self.etcd, self.mirror, self.hub)
        self.batcher = WriteBatcher(self.etcd)
        self.catalog = Catalog(
            self.etcd, self.keys, self.mirror, self.sync, self.batcher, clock=clock
        )
        host, port = split_host_port(config.listen, "listen")
        options = RegistryOptions(
            datacenter=config.datacenter,
            node_name=config.node_name,
            anonymous_reads=config.anonymous_reads,
            check_rules=CheckRules(config.min_check_interval, config.min_deregister_critical_after),
            advertise=config.advertise or config.listen,
            reap_interval=config.reap_interval,
            session_min_ttl=config.session_min_ttl,
        )
        self.sessions = Sessions(
            self.etcd,
            self.keys,
            self.mirror,
            self.catalog,
            self.hub,
            min_ttl=config.session_min_ttl,
        )
        self.sync.listeners.append(self.sessions.on_changes)
        self.ctx = Context(
            options, self.keys, self.mirror, self.hub, self.catalog, self.sessions, clock=clock
        )
        self.extensions = list(extensions or [])
        self.app = RegistryApp(self.ctx, self.extensions)
        self.http = HTTPServer(
            self.app,
            limits=Limits(max_body=config.max_body_bytes, grace=config.grace),
            ssl_context=_ssl_context(config),
            long_request=lambda request: "index" in request.query,
        )
        self.dns: DNSServer | None = None
        if config.dns_listen:
            self.dns = DNSServer(
                self.mirror,
                DNSOptions(
                    domain=config.dns_domain.strip("."),
                    datacenter=config.datacenter,
                    service_ttl=int(config.dns_service_ttl),
                    node_ttl=int(config.dns_node_ttl),
                    include_warning=config.dns_include_warning,
                ),
            )
            self._dns_bind = split_host_port(config.dns_listen, "dns_listen")
        self.identity = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._bind = (host, port)

    async def serve(
        self, *, task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.sync.run)
                nursery.start_soon(self.batcher.run)
                nursery.start_soon(self.sessions.run)
                if self.config.bootstrap:
                    await self._bootstrap()
                duties = HealthDuties(
                    self.catalog, self.mirror, clock=self.clock, interval=self.config.reap_interval
                )
                nursery.start_soon(
                    lead, self.etcd, self.keys.leader("health"), self.identity, duties.run
                )
                for extension in self.extensions:
                    await extension.start(self.ctx, self.etcd)
                    nursery.start_soon(extension.run)
                ready: dict[str, object] = {}
                if self.dns is not None:
                    dns_bound = await nursery.start(self.dns.serve, *self._dns_bind)
                    ready["dns"] = f"{dns_bound[0]}:{dns_bound[1]}"
                bound = await nursery.start(self.http.serve, *self._bind)
                address = f"{bound[0]}:{bound[1]}"
                if self.config.ready_file:
                    ready.update(address=address, url=self.url(bound), pid=os.getpid())
                    Path(self.config.ready_file).write_text(json.dumps(ready))
                log.info(
                    "serving",
                    extra={
                        "kv": {
                            "address": address,
                            "url": self.url(bound),
                            "prefix": self.keys.prefix,
                        }
                    },
                )
                task_status.started(bound)
                if self.on_ready is not None:
                    self.on_ready(f"serving on {self.url(bound)}")
                await self._until_stopped()
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await self.etcd.aclose()

    def url(self, bound: tuple[str, int]) -> str:
        scheme = "https" if self.config.tls_cert_file else "http"
        host = bound[0]
        if ":" in host:
            host = f"[{host}]"
        return f"{scheme}://{host}:{bound[1]}"

    async def _until_stopped(self) -> None:
        # HTTPServer.serve returns after shutdown() has drained; this waits for the signal.
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    self._reload()
                    continue
                log.info(
                    "stopping: draining requests",
                    extra={"kv": {"grace_seconds": self.config.grace}},
                )
                self.http.shutdown()
                with trio.move_on_after(self.config.grace + 1):
                    await self.http.wait_drained()
                return

    def _reload(self) -> None:
        if self.http.ssl_context is not None:
            try:
                self.http.ssl_context.load_cert_chain(
                    self.config.tls_cert_file, self.config.tls_key_file
                )
                log.info(
                    "reloaded TLS certificate", extra={"kv": {"file": self.config.tls_cert_file}}
                )
            except (OSError, ssl.SSLError) as exc:
                log.error("kept the old TLS certificate: %s", exc)
        else:
            log.info("SIGHUP: nothing to reload")

    async def _bootstrap(self) -> None:
        created = await self.catalog.create_bootstrap_token()
        if created is None:
            log.info("already bootstrapped: the operator token was shown when it was created")
            return
        secret, token = created
        if self.config.bootstrap_token_file:
            _write_private(self.config.bootstrap_token_file, secret + "\n")
            log.info(
                "bootstrap operator token written",
                extra={
                    "kv": {"file": self.config.bootstrap_token_file, "accessor": token.accessor}
                },
            )
        else:
            print(f"bootstrap operator token (shown once; keep it safe): {secret}", flush=True)


def standard_extensions(config: ServerConfig) -> list[Extension]:
    """What `weft server` mounts beside the registry: the CA."""
    from ._ca_api import CAExtension, read_kek

    kek = read_kek(config.ca_kek_file, config.ca_kek)
    return [
        CAExtension(
            kek,
            leaf_ttl=config.ca_leaf_ttl,
            allow_short_leaves=config.ca_allow_short_leaves,
            sign_rate=config.ca_sign_rate,
            sign_burst=config.ca_sign_burst,
        )
    ]


def run(config: ServerConfig, on_ready: Callable[[str], None] | None = None) -> int:
    """Run `weft server` until SIGTERM; exit status 1 if it cannot start."""
    from ca import CAError, InvalidKeyEncryptionKey

    try:
        extensions = standard_extensions(config)
    except InvalidKeyEncryptionKey as exc:
        log.error("invalid configuration: %s", exc)
        return 64
    try:
        server = RegistryServer(config, extensions=extensions, on_ready=on_ready)
        trio.run(server.serve)
    except CAError as exc:
        log.error("cannot start: %s", exc)
        return 1
    except BaseExceptionGroup as group:
        from .etcd import unwrap_group

        inner = unwrap_group(group)
        if isinstance(inner, CAError):
            log.error("cannot start: %s", inner)
            return 1
        raise
    return 0
