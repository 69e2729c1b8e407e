"""What every API handler needs: the catalog, the mirror, tokens, and blocking queries."""

from __future__ import annotations

import random
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from ._acl import Authorizer, Role, Token
from ._catalog import Catalog
from ._decode import parse_duration
from ._errors import Forbidden, InvalidInput
from ._fanout import Hub
from ._keys import Keys
from ._mirror import Mirror, Topic
from ._sessions import Sessions
from ._validate import CheckRules
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
    session_min_ttl: float = 10.0


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
        self.authorizer = Authorizer(anonymous_reads=options.anonymous_reads)
        self._cache: OrderedDict[tuple[str, ...], tuple[int, bytes]] = OrderedDict()

    # -- tokens ------------------------------------------------------------------------------

    def token(self, request: Request) -> Token | None:
        """The caller's token (X-Consul-Token, Authorization: Bearer, or ?token=), if any.

        A token that was sent but is not known is refused outright rather than treated as
        anonymous, so a typo'd or revoked token is noticed.
        """
        if "weft.token" in request.state:
            return request.state["weft.token"]
        secret = request.headers.get("x-consul-token") or request.headers.get("x-weft-token")
        if not secret:
            auth = request.headers.get("authorization", "")
            if auth[:7].lower() == "bearer ":
                secret = auth[7:].strip()
        if not secret:
            secret = request.arg("token")
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
        current = view_index()
        if raw_index is None:
            return current
        try:
            index = int(raw_index)
            if index < 0:
                raise ValueError
        except ValueError:
            raise InvalidInput(
                f"index: {raw_index!r} is not a non-negative integer", field="index"
            ) from None
        raw_wait = request.arg("wait")
        wait = DEFAULT_WAIT
        if raw_wait:
            try:
                wait = min(parse_duration(raw_wait), MAX_WAIT)
            except ValueError as exc:
                raise InvalidInput(f"wait: {exc}", field="wait") from None
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
        self, request: Request, index: int, render: Callable[[], object], *, extra: tuple = ()
    ) -> bytes:
        """The view rendered once per index: a thousand watchers woken together share it."""
        import json

        key = (
            request.path,
            *sorted(
                f"{k}={v[-1]}"
                for k, v in request.query.items()
                if k not in ("index", "wait", "token", "stale", "consistent")
            ),
            *map(str, extra),
        )
        hit = self._cache.get(key)
        if hit is not None and hit[0] == index:
            self._cache.move_to_end(key)
            return hit[1]
        body = json.dumps(render(), separators=(",", ":")).encode()
        self._cache[key] = (index, body)
        if len(self._cache) > 2048:
            self._cache.popitem(last=False)
        return body


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
