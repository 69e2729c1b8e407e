"""`weft server`: the registry (and, mounted beside it, the CA) over one HTTP listener.

Stateless: everything lives in etcd; run as many as you like behind any load balancer.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Protocol

import trio

from . import (
    _consul_query,
    _metrics_api,
    _openapi,
    _resource_api,
    _servers_api,
    _tap_api,
    _ui,
    consul,
    native,
)
from ._acl import hash_secret
from ._announce import Announcer
from ._atomic_files import write_atomic, write_ready_file
from ._batcher import WriteBatcher
from ._ca_api import retry_after_header
from ._catalog import Catalog
from ._check_reach import CheckReach
from ._config import ConfigError, ServerConfig, split_host_port
from ._context import Context, RegistryOptions, token_secret
from ._dns import DNSOptions
from ._dns_server import DNSServer
from ._duties import HealthDuties
from ._errors import Forbidden, InvalidResources, RegistryError, Unavailable
from ._etcd_upkeep import StorageMonitor, compact_forever
from ._fanout import Hub
from ._keys import Keys
from ._leader import Leadership, lead
from ._mirror import Mirror
from ._server_area import SERVER_AREA
from ._sessions import Sessions
from ._signals import serve_until_signalled
from ._sync import MirrorSync
from ._tls_files import server_context
from ._validate import CheckRules
from .etcd import EtcdClient, EtcdError, EtcdTLS
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

    def __init__(
        self,
        ctx: Context,
        extensions: Sequence[Extension] = (),
        *,
        storage: StorageMonitor | None = None,
    ) -> None:
        self.ctx = ctx
        self.storage = storage
        self.router = Router()
        consul.mount(self.router, ctx)
        native.mount(self.router, ctx)
        _resource_api.mount(self.router, ctx)
        _metrics_api.mount(self.router, ctx)
        _servers_api.AREA.mount(self.router, ctx)
        _tap_api.mount(self.router, ctx)
        _ui.mount(self.router, ctx)
        for extension in extensions:
            extension.mount(self.router, ctx)
        SERVER_AREA.mount(self.router, self)
        # Rendered from the routes just mounted: the document describes what is served.
        self.openapi_body = json.dumps(_openapi.document(self.router.routes)).encode()

    async def __call__(self, request: Request) -> Response:
        stale = self.ctx.catalog.sync.stale_reason()
        if stale is None:
            return await self._dispatch(request)
        # A server that cannot vouch for its view of etcd says so on every Consul answer and
        # checks a write's token against etcd itself: a token revoked through another server
        # while this one was cut off must not work here.
        if request.method not in ("GET", "HEAD") and token_secret(request):
            refused = await self._verify_token(request, stale)
            if refused is not None:
                return refused
        if request.path == "/v1/status/leader":
            return Response.json("")  # what Consul answers while it has no leader
        resp = await self._dispatch(request)
        resp.headers = [
            ("X-Consul-KnownLeader", "false") if name == "X-Consul-KnownLeader" else (name, value)
            for name, value in resp.headers
        ]
        return resp

    async def _verify_token(self, request: Request, stale: str) -> Response | None:
        """None if the request's token is in etcd right now, else the answer refusing it."""
        secret = token_secret(request) or ""
        key = self.ctx.keys.token(hash_secret(secret))
        with trio.move_on_after(2):
            try:
                stored = await self.ctx.catalog.etcd.get(key)
            except EtcdError:
                pass
            else:
                if stored is not None:
                    return None
                return await self._dispatch_error(
                    request, Forbidden("the token sent is not recognised (revoked, or a typo?)")
                )
        return await self._dispatch_error(
            request,
            Unavailable(f"cannot verify the token against etcd ({stale}); try another server"),
        )

    async def _dispatch_error(self, request: Request, exc: RegistryError) -> Response:
        async def refuse(request: Request) -> Response:
            raise exc

        return await self._dispatch(request, refuse)

    async def _dispatch(
        self,
        request: Request,
        handler: Callable[[Request], Awaitable[Response]] | None = None,
    ) -> Response:
        route = None
        try:
            route, params = self.router.match(request.method, request.path)
            request.params = params
            request.route = route
            if getattr(route.endpoint, "auth", None) == "token" and not token_secret(request):
                # Refused before the handler looks anything up, so a caller without a token
                # learns nothing (not even whether a service or check exists) and changes
                # nothing, whatever the body holds (an empty batch used to answer 200).
                raise Forbidden(
                    f"{request.method} {route.pattern} needs a token; none was sent "
                    "(X-Consul-Token, Authorization: Bearer or ?token=)"
                )
            chosen = handler or route.handler
            if "consul" in route.tags:
                return await _consul_query.around(
                    request, route.pattern, self.ctx.options.datacenter, chosen
                )
            return await chosen(request)
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
            error: dict[str, object] = {"message": message, "field": field, "status": status}
            if isinstance(exc, InvalidResources):
                error["problems"] = exc.problems
            return Response.json({"error": error}, status=status, headers=headers)
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


def write_private(path: str, text: str) -> None:
    """A secret for the operator (a token): mode 0600 from the first byte, written whole."""
    write_atomic(path, text.encode(), 0o600)


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
        self.sync = MirrorSync(
            self.etcd, self.mirror, self.hub, staleness_bound=config.staleness_bound
        )
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
            view_cache_bytes=config.view_cache_bytes,
            session_min_ttl=config.session_min_ttl,
            intention_default=config.intention_default,
            require_agent_services=config.require_agent_services,
            check_reach=CheckReach.parse(config.check_allow_networks),
            metrics_resolution=config.metrics_resolution,
            metrics_min_interval=config.metrics_min_interval,
            metrics_sample_bytes=config.metrics_sample_bytes,
            max_wait=config.max_blocking_wait,
        )
        self.sessions = Sessions(
            self.etcd,
            self.keys,
            self.mirror,
            self.catalog,
            self.hub,
            min_ttl=config.session_min_ttl,
            server_node=config.node_name,
        )
        self.sync.listeners.append(self.sessions.on_changes)
        self.ctx = Context(
            options, self.keys, self.mirror, self.hub, self.catalog, self.sessions, clock=clock
        )
        self.extensions = list(extensions or [])
        self.storage = StorageMonitor(
            self.etcd, quota_bytes=config.etcd_quota_bytes, interval=config.etcd_status_interval
        )
        self.app = RegistryApp(self.ctx, self.extensions, storage=self.storage)
        self.http = HTTPServer(
            self.app,
            limits=Limits(
                max_body=config.max_body_bytes,
                head_timeout=config.head_timeout,
                body_timeout=config.body_timeout,
                idle_timeout=config.idle_timeout,
                send_timeout=config.send_timeout,
                read_ahead=config.read_ahead_bytes,
                max_connections=config.max_connections,
                max_connections_per_ip=config.max_connections_per_ip,
                grace=config.grace,
            ),
            ssl_context=(
                server_context(config.tls_cert_file, config.tls_key_file)
                if config.tls_cert_file
                else None
            ),
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
        self._url = ""
        self.announcer = Announcer(
            self.etcd,
            self.keys,
            self.sync,
            identity=self.identity,
            facts=lambda: {
                "advertise": options.advertise,
                "url": self._url,
                "intention_default": options.intention_default,
            },
            clock=clock,
        )
        self._bind = (host, port)

    async def serve(
        self, *, task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        async def start(nursery: trio.Nursery) -> None:
            await nursery.start(self.sync.run)
            nursery.start_soon(self.batcher.run)
            nursery.start_soon(self.sessions.run)
            if self.config.bootstrap:
                await self._bootstrap()
            nursery.start_soon(self.storage.run)
            nursery.start_soon(self.sync.probe_forever)
            nursery.start_soon(
                lead, self.etcd, self.keys.leader("health"), self.identity, self._duties
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
            # Where other hosts reach this server: the advertised address when one is set (a
            # wildcard listen address means nothing to another host).
            scheme = "https" if self.config.tls_cert_file else "http"
            advertised = self.config.advertise
            self._url = f"{scheme}://{advertised}" if advertised else self.url(bound)
            nursery.start_soon(self.announcer.run)
            if self.config.ready_file:
                ready.update(address=address, url=self.url(bound), pid=os.getpid())
                write_ready_file(self.config.ready_file, ready)
            log.info(
                "serving",
                extra={
                    "kv": {"address": address, "url": self.url(bound), "prefix": self.keys.prefix}
                },
            )
            task_status.started(bound)
            if self.on_ready is not None:
                self.on_ready(f"serving on {self.url(bound)}")

        try:
            # The drain bound is a little over the HTTP grace: HTTPServer closes what is left
            # at `grace` itself, and this waits for it to finish doing so.
            await serve_until_signalled(
                start, drain=self._drain, reload=self.reload, grace=self.config.grace + 1
            )
        finally:
            with trio.CancelScope(shield=True):
                await self.etcd.aclose()

    async def _duties(self, leadership: Leadership) -> None:
        """What the leading server does: health duties and etcd compaction."""
        duties = HealthDuties(
            self.catalog,
            self.mirror,
            clock=self.clock,
            interval=self.config.reap_interval,
            guard=leadership.guard(),
            reach=CheckReach.parse(self.config.check_allow_networks),
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(duties.run)
            if self.config.compaction_retention > 0:
                nursery.start_soon(
                    partial(
                        compact_forever,
                        self.etcd,
                        retention=self.config.compaction_retention,
                        interval=self.config.compaction_interval,
                    )
                )

    def url(self, bound: tuple[str, int]) -> str:
        scheme = "https" if self.config.tls_cert_file else "http"
        host = bound[0]
        if ":" in host:
            host = f"[{host}]"
        return f"{scheme}://{host}:{bound[1]}"

    async def _drain(self) -> None:
        self.http.shutdown()
        await self.announcer.withdraw()
        await self.http.wait_drained()

    def reload(self) -> bool:
        """SIGHUP: a new TLS context from the certificate files, swapped in only if it loads
        completely; otherwise the running one is untouched. True if a new one was taken."""
        if self.http.ssl_context is None:
            log.info("SIGHUP: no TLS certificate configured, nothing to reload")
            return False
        try:
            fresh = server_context(self.config.tls_cert_file, self.config.tls_key_file)
        except ConfigError as exc:
            log.error(
                "TLS reload refused, still serving the previous certificate: %s",
                exc,
                extra={"kv": {"file": self.config.tls_cert_file, "field": exc.field}},
            )
            return False
        self.http.ssl_context = fresh  # new connections use it; open ones keep theirs
        log.info("reloaded TLS certificate", extra={"kv": {"file": self.config.tls_cert_file}})
        return True

    async def _bootstrap(self) -> None:
        created = await self.catalog.create_bootstrap_token()
        if created is None:
            log.info("already bootstrapped: the operator token was shown when it was created")
            return
        secret, token = created
        if self.config.bootstrap_token_file:
            write_private(self.config.bootstrap_token_file, secret + "\n")
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

    if config.recover_operator:
        from ._recovery import recover_command

        try:
            return recover_command(config)
        except InvalidKeyEncryptionKey as exc:
            log.error("invalid configuration: %s", exc)
            return 64
    try:
        extensions = standard_extensions(config)
    except InvalidKeyEncryptionKey as exc:
        log.error("invalid configuration: %s", exc)
        return 64
    try:
        server = RegistryServer(config, extensions=extensions, on_ready=on_ready)
    except ConfigError as exc:
        log.error("invalid configuration: %s", exc)
        return 64
    try:
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
