"""Egress: forward-proxy requests for hosts outside the mesh (docs/egress.md).

The forward proxy first looks a request's host up as a mesh upstream. If it is none, this
layer decides:

- a host an `ExternalService` declares (snapshot v4 `external`): that service's upstream,
  chosen by the request's port (an explicit port must be a declared one; none given: the
  first declared port that suits HTTP, or any for CONNECT); from there on it is routed,
  retried, timed out and counted like a mesh upstream;
- else, in `registry-only` mode: refused with a 403 naming the host and how to declare it,
  counted in `weft_proxy_egress_refused_total{host}` (the first 64 distinct hosts by name,
  the rest as `other`, so a caller cannot grow the label set) and logged at most once per
  host per 10 s;
- else (`allow-any`, the default): a host name with a dot, or an IP address, is passed
  through to where it says (plain HTTP or a CONNECT tunnel; peer `passthrough` in metrics);
  a bare word is left to the caller's "no upstream named" answer, as before.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections import OrderedDict
from typing import TYPE_CHECKING

import trio

from ._accrual import AccrualPolicy
from ._cluster import Cluster, EndpointAddress
from ._errors import HttpError
from ._h1 import Head
from ._http_plan import Reject, Route
from ._snapshot import PoolPolicy, Timeouts, Upstream

if TYPE_CHECKING:
    from ._listener_host import Config
    from ._metrics import Metrics

log = logging.getLogger("weft.proxy")

MAX_HOST_LABELS = 64
MAX_PASSTHROUGH = 128  # distinct host:port clusters kept (least recently used go first)
LOG_EVERY = 10.0  # seconds between two refusal logs for one host
_DNS_NAME = re.compile(
    r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$"
)


def _port_of(authority: bytes) -> int | None:
    """The explicit port of an authority (`host:port`, `[v6]:port`), or None."""
    if authority.startswith(b"["):
        rest = authority[authority.find(b"]") + 1 :]
    else:
        rest = authority[authority.find(b":") :] if authority.count(b":") == 1 else b""
    if not rest.startswith(b":"):
        return None
    text = rest[1:]
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise HttpError(400, f"malformed port in {authority[:80]!r}")
    return int(text)


def request_port(head: Head) -> int | None:
    """The port a forward-proxy request names, if any."""
    target = head.target
    if head.method == b"CONNECT":
        return _port_of(target)
    if target[:7].lower() == b"http://":
        rest = target[7:]
        for sep in (b"/", b"?", b"#"):
            rest = rest.split(sep, 1)[0]
        return _port_of(rest)
    return _port_of(head.host or b"")


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class Egress:
    """The forward proxy's decisions about hosts that are not mesh upstreams."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._index: tuple[str, dict[str, list[Upstream]]] = ("", {})
        self._passthrough: OrderedDict[tuple[str, int], Cluster] = OrderedDict()
        self._logged: dict[str, float] = {}

    def _hosts(self, config: Config) -> dict[str, list[Upstream]]:
        digest = config.snapshot.digest  # built once per snapshot, not per request
        if self._index[0] != digest:
            self._index = (digest, config.snapshot.external_hosts())
        return self._index[1]

    def resolve(self, config: Config, host: str, head: Head) -> Upstream | Route | Reject | None:
        """A declared external upstream, a passthrough route, a refusal, or None (unknown)."""
        connect = head.method == b"CONNECT"
        port = request_port(head)
        for upstream in self._hosts(config).get(host, ()):
            external = upstream.external
            assert external is not None
            if port == external.port or (
                port is None and (connect or external.protocol in ("http", "https"))
            ):
                return upstream
        if config.snapshot.outbound == "registry-only":
            return self.refuse(host, port)
        if _DNS_NAME.match(host) or _is_address(host):
            return self.passthrough(host, port or (443 if connect else 80), connect)
        return None

    def refuse(self, host: str, port: int | None) -> Reject:
        shown = f"{host}:{port}" if port else host
        label = host if _DNS_NAME.match(host) or _is_address(host) else "other"
        if label not in self.metrics.egress_refused and (
            len(self.metrics.egress_refused) >= MAX_HOST_LABELS
        ):
            label = "other"
        self.metrics.add(self.metrics.egress_refused, label)
        now = trio.current_time()
        if now - self._logged.get(label, -LOG_EVERY) >= LOG_EVERY:
            self._logged[label] = now
            log.warning(
                "egress refused",
                extra={"kv": {"host": shown[:260], "refused": self.metrics.egress_refused[label]}},
            )
        if _is_address(host):
            how = "call it by a host name that an ExternalService declares (kind: ExternalService"
        else:
            how = f"declare it (kind: ExternalService, spec.hosts: [{host[:253]}]"
        return Reject(
            403,
            f"outbound traffic is registry-only: {shown[:260]!r} is neither a mesh service nor "
            f"declared by an ExternalService; {how}, spec.ports: [{{port: {port or 80}, "
            "protocol: http}]) and apply it with `weft apply -f`",
            self.metrics.http("outbound", "refused"),
            label="egress_registry_only",
        )

    def passthrough(self, host: str, port: int, connect: bool) -> Route:
        key = (host, port)
        cluster = self._passthrough.get(key)
        if cluster is None:
            cluster = Cluster("passthrough", metrics=self.metrics, tls=None)
            cluster.configure(
                [(EndpointAddress(host, port, None), 1)],
                strategy="round_robin",
                timeouts=Timeouts(),
                pool=PoolPolicy(max_connections=64),
                accrual=AccrualPolicy(max_failures=2**62),  # one endpoint: nowhere else to go
            )
            self._passthrough[key] = cluster
            while len(self._passthrough) > MAX_PASSTHROUGH:
                _, old = self._passthrough.popitem(last=False)
                old.close()
        else:
            self._passthrough.move_to_end(key)
        stats = self.metrics.http("outbound", "passthrough")
        return Route(cluster=cluster, stats=stats, peer="passthrough", connect=connect)

    def reap(self, now: float) -> None:
        """Close passthrough connections idle past their pool's limit."""
        for cluster in self._passthrough.values():
            cluster.reap(now)

    def close(self) -> None:
        for cluster in self._passthrough.values():
            cluster.close()
        self._passthrough.clear()
