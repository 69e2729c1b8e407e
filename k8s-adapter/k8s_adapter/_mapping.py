"""A Kubernetes Service, its EndpointSlices and their pods -> registry Entries (pure).

    each endpoint of the chosen port      one instance: pod IP, target port, node
    endpoint ready (and not terminating)  its check passing, else critical
    pod labels                            meta (keys made registry-safe), plus k8s-* keys
    pod annotation weft.io/sidecar-port   sidecar_port and identity spiffe://<td>/ns/<ns>/svc/<name>
    Service annotation weft.io/port       which Service port (name or number); default the first
    Service annotation weft.io/protocol   http or tcp; default from appProtocol or the port name
    Service annotation weft.io/tags       comma-separated registry tags

An endpoint listed twice (it moves between slices, or a dual-stack Service lists it per
family) is one instance; a ready copy wins, so a move never flaps it to critical.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ca import InvalidIdentity, SpiffeId
from registry.validation import InvalidNumber, parse_number

from ._entry import CRITICAL, PASSING, Entry, EntryKey
from ._naming import instance_id, meta_key, node_name
from ._objects import Key
from ._problems import Problems

PORT_ANNOTATION = "weft.io/port"
PROTOCOL_ANNOTATION = "weft.io/protocol"
TAGS_ANNOTATION = "weft.io/tags"
SIDECAR_ANNOTATION = "weft.io/sidecar-port"

RESERVED_META = ("k8s-cluster", "k8s-namespace", "k8s-service", "k8s-pod", "k8s-node")
MAX_META = 64


@dataclass(frozen=True)
class MappingContext:
    cluster: str
    trust_domain: str
    problems: Problems


@dataclass(frozen=True)
class ChosenPort:
    name: str  # the Service port's name ("" when it has none), as EndpointSlices name it
    protocol: str


def choose_port(service: Any) -> ChosenPort | str:
    """The Service port to register, or a message saying why there is none."""
    spec = service.spec
    ports = (spec.ports if spec is not None else None) or []
    if not ports:
        return "the Service has no ports"
    annotations = service.metadata.annotations or {}
    wanted = annotations.get(PORT_ANNOTATION)
    port = ports[0]
    if wanted is not None:
        matches = [p for p in ports if p.name == wanted or str(p.port) == wanted.strip()]
        if not matches:
            return f"annotation {PORT_ANNOTATION}={wanted!r} names no port of the Service"
        port = matches[0]
    protocol = annotations.get(PROTOCOL_ANNOTATION, "").strip().lower()
    if protocol and protocol not in ("http", "tcp"):
        return f"annotation {PROTOCOL_ANNOTATION}={protocol!r} is not http or tcp"
    if not protocol:
        protocol = _protocol_of(port)
    return ChosenPort(port.name or "", protocol)


def _protocol_of(port: Any) -> str:
    """http for appProtocol http or a port named http/http-*; tcp for anything else.

    TCP is the safe default: an HTTP proxy in front of a non-HTTP protocol breaks it, a TCP
    proxy in front of HTTP only loses the L7 features.
    """
    if port.appProtocol:
        return "http" if port.appProtocol.lower() == "http" else "tcp"
    name = (port.name or "").lower()
    return "http" if name == "http" or name.startswith("http-") else "tcp"


def _tags(service: Any) -> tuple[str, ...]:
    raw = (service.metadata.annotations or {}).get(TAGS_ANNOTATION, "")
    tags = {t.strip() for t in raw.split(",") if t.strip()}
    return tuple(sorted(t for t in tags if len(t) <= 255 and t.isprintable()))[:64]


def _meta(pod: Any, base: dict[str, str]) -> tuple[tuple[str, str], ...]:
    meta = dict(base)
    labels = (pod.metadata.labels or {}) if pod is not None else {}
    for label in sorted(labels):
        if len(meta) >= MAX_META:
            break
        key = meta_key(label)
        value = labels[label]
        if key in meta or not isinstance(value, str) or len(value) > 512:
            continue
        meta[key] = value
    return tuple(sorted(meta.items()))


def _sidecar(pod: Any, namespace: str, service: str, ctx: MappingContext) -> tuple[int, str]:
    if pod is None:
        return 0, ""
    raw = (pod.metadata.annotations or {}).get(SIDECAR_ANNOTATION)
    if raw is None:
        return 0, ""
    subject = f"Pod {namespace}/{pod.metadata.name}"
    try:
        # str.isdigit() takes '²', which int() then refuses: the registry's parser takes
        # only ASCII digits.
        port = parse_number(raw.strip(), integer=True, minimum=1, maximum=65535)
    except InvalidNumber:
        ctx.problems.report(subject, f"annotation {SIDECAR_ANNOTATION}={raw!r} is not a port")
        return 0, ""
    if not ctx.trust_domain:
        ctx.problems.report(
            subject,
            f"has a Weft sidecar ({SIDECAR_ANNOTATION}) but no trust_domain is configured; "
            "registered without its sidecar",
        )
        return 0, ""
    try:
        identity = SpiffeId(ctx.trust_domain, namespace, service).uri
    except InvalidIdentity as exc:
        ctx.problems.report(subject, f"no SPIFFE ID for its sidecar: {exc}")
        return 0, ""
    return port, identity


def _address_ok(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
        return True
    except ValueError:
        return False


def service_entries(
    weft_name: str,
    service: Any,
    slices: Iterable[Any],
    pods: Mapping[Key, Any],
    ctx: MappingContext,
) -> dict[EntryKey, Entry]:
    """The instances Service `service` should have in the registry under `weft_name`."""
    ns, svc_name = service.metadata.namespace, service.metadata.name
    subject = f"Service {ns}/{svc_name}"
    chosen = choose_port(service)
    if isinstance(chosen, str):
        ctx.problems.report(subject, chosen + "; not synced")
        return {}
    tags = _tags(service)
    families = (service.spec.ipFamilies if service.spec is not None else None) or ["IPv4"]
    preferred = families[0]
    ordered = sorted(slices, key=lambda s: (s.addressType != preferred, s.metadata.name))
    out: dict[EntryKey, Entry] = {}
    for slice_ in ordered:
        if slice_.addressType not in ("IPv4", "IPv6"):
            continue
        port = next(
            (p.port for p in slice_.ports or [] if (p.name or "") == chosen.name and p.port),
            None,
        )
        if port is None or not 1 <= port <= 65535:
            continue  # this slice does not carry the chosen port (yet)
        for ep in slice_.endpoints or []:
            entry = _endpoint_entry(weft_name, ns, svc_name, ep, port, chosen, tags, pods, ctx)
            if entry is None:
                continue
            have = out.get(entry.key)
            if have is None or (have.status != PASSING and entry.status == PASSING):
                out[entry.key] = entry
    return out


def _endpoint_entry(
    weft_name: str,
    ns: str,
    svc_name: str,
    ep: Any,
    port: int,
    chosen: ChosenPort,
    tags: tuple[str, ...],
    pods: Mapping[Key, Any],
    ctx: MappingContext,
) -> Entry | None:
    if not ep.addresses or not _address_ok(ep.addresses[0]):
        ctx.problems.report(
            f"Service {ns}/{svc_name}", f"endpoint address {ep.addresses!r} is not an IP"
        )
        return None
    address = ep.addresses[0]
    ref = ep.targetRef
    is_pod = ref is not None and ref.kind == "Pod" and bool(ref.name)
    pod = pods.get((ref.namespace or ns, ref.name)) if is_pod else None
    target = ref.name if is_pod else address
    conditions = ep.conditions
    ready = conditions is None or conditions.ready is None or conditions.ready
    terminating = conditions is not None and bool(conditions.terminating)
    node = ep.nodeName or (pod.spec.nodeName if pod is not None and pod.spec else None)
    host_ip = pod.status.hostIP if pod is not None and pod.status else None
    base = {
        "k8s-cluster": ctx.cluster,
        "k8s-namespace": ns,
        "k8s-service": svc_name,
        "k8s-pod": target if is_pod else "",
        "k8s-node": node or "",
    }
    base = {k: v for k, v in base.items() if v}
    sidecar_port, identity = _sidecar(pod, ns, weft_name, ctx)
    return Entry(
        service=weft_name,
        id=instance_id(ctx.cluster, ns, svc_name, target, port),
        node=node_name(node, ctx.cluster),
        namespace=ns,
        address=address,
        node_address=host_ip if host_ip and _address_ok(host_ip) else address,
        port=port,
        protocol=chosen.protocol,
        tags=tags,
        meta=_meta(pod, base),
        sidecar_port=sidecar_port,
        identity=identity,
        status=PASSING if ready and not terminating else CRITICAL,
    )
