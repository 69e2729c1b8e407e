"""What every API handler needs: the catalog, the mirror, tokens, and blocking queries."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from ._acl import Authorizer, Role, Token
from ._catalog import Catalog
from ._check_reach import CheckReach
from ._errors import Forbidden
from ._fanout import Hub
from ._keys import Keys
from ._mirror import Mirror, Topic
from ._model import Instance
from ._numbers import parse_index, parse_wait
from ._sessions import Sessions
from ._validate import CheckRules
from ._view_cache import ViewCache
from .web import Request, Response

DEFAULT_WAIT = 300.0  # Consul: 5 minutes
MAX_WAIT = 600.0  # Consul: 10 minutes


@dataclass(frozen=True)
class RegistryOptions:
    datacenter: str = "dc1"
    # Consul clients register "with the agent they talk to"; a registration through `weft server`
    # made with a non-agent token lands on this node (the same on every server, so any server
    # can later deregister it).
    node_name: str = "weft"
    anonymous_reads: bool = False
    check_rules: CheckRules = field(default_factory=CheckRules)
    advertise: str = "127.0.0.1:8500"
    reap_interval: float = 1.0
    view_cache_bytes: int = 64 << 20
    session_min_ttl: float = 10.0
    # what intentions/check answers and agents compile when no intention matches a pair
    intention_default: str = "allow"
    require_agent_services: bool = False
    check_reach: CheckReach = field(default_factory=CheckReach)
    metrics_resolution: float = 10.0
    metrics_min_interval: float = 5.0
    metrics_sample_bytes: int = 64 << 10
    # The longest a blocking query may park (the default wait is cut to it too).
    max_wait: float = MAX_WAIT


class Context:
    def __init__(
        self,
        options: RegistryOptions,
        keys: Keys,
        mirror: Mirror,
        hub: Hub,
        catalog: Catalog,
        sessions: Sessions,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.options = options
        self.keys = keys
        self.mirror = mirror
        self.hub = hub
        self.catalog = catalog
        self.sessions = sessions
        self.clock = clock
        self.authorizer = Authorizer(
            anonymous_reads=options.anonymous_reads,
            require_agent_services=options.require_agent_services,
        )
        self._views = ViewCache(options.view_cache_bytes)
        # Set by the CA when it is mounted: the trust domain identities are derived in.
        self.trust_domain: Callable[[], str | None] = lambda: None

    # -- tokens ------------------------------------------------------------------------------

    def token(self, request: Request) -> Token | None:
        """The caller's token (X-Consul-Token, Authorization: Bearer, or ?token=), if any.

        A token that was sent but is not known is refused outright rather than treated as
        anonymous, so a typo'd or revoked token is noticed.
        """
        if "weft.token" in request.state:
            return request.state["weft.token"]
        secret = token_secret(request)
        token = None
        if secret:
            token = self.catalog.lookup_token(secret)
            if token is None:
                raise Forbidden("the token sent is not recognised (revoked, or a typo?)")
        request.state["weft.token"] = token
        return token

    def reader(self, request: Request) -> Token | None:
        token = self.token(request)
        self.authorizer.read(token)
        return token

    def kv_writer(self, token: Token | None, key: str, *, prefix: bool = False) -> None:
        """May this token write (or lock, or delete) KV key `key` (or every key under it)?"""
        self.authorizer.write_kv(token, key, prefix=prefix)

    def write_node(self, token: Token | None, node: str, *, what: str) -> None:
        """May `token` write `what` (maintenance, a session, ...) on `node`?"""
        sources = None
        if token is not None and token.role is Role.ADAPTER:
            sources = frozenset(i.source for i in self.mirror.instances_on(node))
        self.authorizer.write_node(token, node, what=what, sources=sources)

    def write_instance(self, token: Token | None, instance: Instance) -> None:
        """May `token` write `instance`? An adapter also never places a new instance on a
        host agent's node (a VM's node is not its to add to). Other adapters' nodes are not
        refused: two clusters may well both have a node called `kind-control-plane`."""
        self.authorizer.write_instance(token, instance)
        if (
            token is not None
            and token.role is Role.ADAPTER
            and self.mirror.instance(instance.service, instance.node, instance.id) is None
        ):
            foreign = sorted(
                {i.source for i in self.mirror.instances_on(instance.node)} & {"agent"}
            )
            if foreign:
                raise Forbidden(
                    f"this adapter token (source {token.source!r}) may not write instances on "
                    f"node {instance.node!r}: the node holds instances of "
                    f"{', '.join(map(repr, foreign))}"
                )

    def write_check(self, token: Token | None, node: str, check_id: str) -> None:
        """May `token` set check `check_id` on `node`? An adapter only its source's checks."""
        if token is not None and token.role is Role.ADAPTER:
            check = self.mirror.find_check(node, check_id)
            inst = check and self.mirror.instance(check.service, node, check.instance)
            if inst:
                self.write_instance(token, inst)
                return
        self.write_node(token, node, what=f"check {check_id!r}")

    def node_of(self, token: Token | None) -> str:
        """The node a Consul-style agent call acts on."""
        if token is not None and token.role is Role.AGENT:
            return token.node
        return self.options.node_name

    # -- blocking queries --------------------------------------------------------------------

    async def block(
        self,
        request: Request,
        view_index: Callable[[], int],
        topics: tuple[Topic, ...],
        *,
        kv_prefix: str | None = None,
    ) -> int:
        """Wait while the view's index is not past `?index` (up to `?wait`); its index now."""
        raw_index = request.arg("index")
        # `wait` is checked even without `index` (when Consul ignores it): a bad one is a 400.
        cap = self.options.max_wait
        wait = parse_wait(request.arg("wait"), "wait", default=min(DEFAULT_WAIT, cap), maximum=cap)
        current = view_index()
        if raw_index is None:
            return current
        index = parse_index(raw_index, "index")
        if index == 0 or current > index:
            return current
        # Jitter spreads the wake-ups of clients that all started together (as Consul does).
        deadline = trio.current_time() + wait + random.uniform(0, wait / 16)
        while True:
            woke = await self.hub.wait(topics, kv_prefix=kv_prefix, deadline=deadline)
            current = view_index()
            if current > index or not woke:
                return current

    def cached_json(
        self,
        request: Request,
        index: int,
        render: Callable[[], object],
        *,
        variant: tuple[str | bool, ...] = (),
    ) -> bytes:
        """The view rendered once per index: a thousand watchers woken together share it.

        The view is the request's path; `variant` is what else changes the rendering, already
        normalised by the handler (sorted tags, flags as booleans). Nothing else of the query
        is part of the key, so arbitrary parameters cannot fill or thrash the cache.
        """
        key = (request.path, *variant)
        body = self._views.get(key, index)
        if body is None:
            body = json.dumps(render(), separators=(",", ":")).encode()
            key_size = len(request.path) + sum(len(v) for v in variant if isinstance(v, str))
            self._views.put(key, index, body, key_size)
        return body


def token_secret(request: Request) -> str | None:
    """The secret a request carries (X-Consul-Token, Authorization: Bearer, or ?token=)."""
    secret = request.headers.get("x-consul-token") or request.headers.get("x-weft-token")
    if not secret:
        auth = request.headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            secret = auth[7:].strip()
    return secret or request.arg("token") or None


def consul_response(
    body: bytes, index: int, *, status: int = 200, content_type: str = "application/json"
) -> Response:
    return Response(
        status=status,
        body=body,
        content_type=content_type,
        headers=[
            ("X-Consul-Index", str(index)),
            ("X-Consul-KnownLeader", "true"),
            ("X-Consul-LastContact", "0"),
        ],
    )
