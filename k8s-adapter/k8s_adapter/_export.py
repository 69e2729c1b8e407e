"""`--to-k8s`: registry services -> selector-less Services and EndpointSlices (pure).

    registry service `billing`              Service `billing` (no selector) in the namespace
    its instances, grouped by address       EndpointSlices `billing-v4-8080-0`, ... of at most
      family and port                       100 endpoints, labelled with the Service's name
    instance passing / warning / critical   endpoint ready / serving only / neither

Pods then reach `billing.<namespace>.svc` by cluster DNS, and kube-proxy balances over the
VM instances. Everything the adapter creates is labelled managed-by weft-k8s-adapter and with
its cluster; it only ever updates or deletes objects carrying both labels. Its slices say
`endpointslice.kubernetes.io/managed-by: weft.io/k8s-adapter`, so the EndpointSlice
controller leaves them alone.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._problems import Problems
from ._selection import MANAGED_BY, MANAGED_BY_LABEL

CLUSTER_LABEL = "weft.io/cluster"
SERVICE_LABEL = "weft.io/service"
SLICE_MANAGER = "weft.io/k8s-adapter"
SOURCES_ANNOTATION = "weft.io/sources"
MAX_PER_SLICE = 100

_DNS1035 = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
_FAMILY_TAG = {"IPv4": "v4", "IPv6": "v6", "FQDN": "fqdn"}

ObjKey = tuple[str, str]  # (plural, name)


@dataclass(frozen=True)
class ExportRules:
    namespace: str
    cluster: str
    own_source: str
    sources: frozenset[str]
    tags: frozenset[str] = frozenset()
    services: frozenset[str] = frozenset()

    def selects(self, view: Mapping[str, Any]) -> bool:
        source = view.get("source", "")
        if source == self.own_source or source not in self.sources:
            return False
        if self.tags and not self.tags & set(view.get("tags") or ()):
            return False
        return not self.services or view.get("service") in self.services

    def labels(self) -> dict[str, str]:
        return {MANAGED_BY_LABEL: MANAGED_BY, CLUSTER_LABEL: self.cluster}

    def selector(self) -> str:
        """The label selector of everything this adapter owns in the namespace."""
        return f"{MANAGED_BY_LABEL}={MANAGED_BY},{CLUSTER_LABEL}={self.cluster}"


def _family(address: str) -> str:
    try:
        return "IPv6" if ipaddress.ip_address(address).version == 6 else "IPv4"
    except ValueError:
        return "FQDN"


def desired_objects(
    views: Iterable[Mapping[str, Any]], rules: ExportRules, problems: Problems
) -> dict[ObjKey, dict[str, Any]]:
    """The Services and EndpointSlices the selected registry instances call for."""
    by_service: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for view in views:
        if rules.selects(view) and view.get("address") and view.get("port"):
            by_service[str(view["service"])].append(view)
    out: dict[ObjKey, dict[str, Any]] = {}
    for name in sorted(by_service):
        if not _DNS1035.fullmatch(name):
            problems.report(
                f"registry service {name!r}",
                "is not a valid Kubernetes Service name (it must start with a letter); "
                "not published",
            )
            continue
        out.update(_service_objects(name, by_service[name], rules))
    return out


def _service_objects(
    name: str, instances: list[Mapping[str, Any]], rules: ExportRules
) -> dict[ObjKey, dict[str, Any]]:
    ports = Counter(int(i["port"]) for i in instances)
    main_port = min(ports, key=lambda p: (-ports[p], p))
    protocols = Counter(str(i.get("protocol") or "http") for i in instances)
    http = protocols["http"] >= protocols["tcp"]
    port_name = "http" if http else "tcp"
    labels = {**rules.labels(), SERVICE_LABEL: name}
    sources = sorted({str(i.get("source")) for i in instances})
    service_port: dict[str, Any] = {
        "name": port_name,
        "port": main_port,
        "targetPort": main_port,
        "protocol": "TCP",
    }
    if http:
        service_port["appProtocol"] = "http"
    out: dict[ObjKey, dict[str, Any]] = {
        ("services", name): {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": name,
                "namespace": rules.namespace,
                "labels": labels,
                "annotations": {SOURCES_ANNOTATION: ",".join(sources)},
            },
            "spec": {"type": "ClusterIP", "ports": [service_port]},
        }
    }
    groups: dict[tuple[str, int], dict[str, dict[str, Any]]] = defaultdict(dict)
    for inst in sorted(instances, key=lambda i: (str(i["address"]), str(i.get("id")))):
        address = str(inst["address"])
        status = str(inst.get("status") or "critical")
        ready = status == "passing"
        endpoint: dict[str, Any] = {
            "addresses": [address],
            "conditions": {
                "ready": ready,
                "serving": status in ("passing", "warning"),
                "terminating": False,
            },
        }
        group = groups[(_family(address), int(inst["port"]))]
        have = group.get(address)
        if have is None or (ready and not have["conditions"]["ready"]):
            group[address] = endpoint
    for (family, port), endpoints in sorted(groups.items()):
        listed = list(endpoints.values())
        for i in range(0, len(listed), MAX_PER_SLICE):
            slice_name = f"{name}-{_FAMILY_TAG[family]}-{port}-{i // MAX_PER_SLICE}"
            out[("endpointslices", slice_name)] = {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": slice_name,
                    "namespace": rules.namespace,
                    "labels": {
                        **labels,
                        "kubernetes.io/service-name": name,
                        "endpointslice.kubernetes.io/managed-by": SLICE_MANAGER,
                    },
                },
                "addressType": family,
                "endpoints": listed[i : i + MAX_PER_SLICE],
                "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
            }
    return out


@dataclass
class KubePlan:
    creates: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    updates: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    deletes: list[ObjKey] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.creates or self.updates or self.deletes)


def kube_plan(
    desired: Mapping[ObjKey, dict[str, Any]], existing: Mapping[ObjKey, dict[str, Any]]
) -> KubePlan:
    """Writes that turn `existing` (objects this adapter owns) into `desired`.

    Services are created before their slices and deleted after them.
    """
    result = KubePlan()
    for key in sorted(desired, key=lambda k: (k[0] != "services", k[1])):
        want, have = desired[key], existing.get(key)
        if have is None:
            result.creates.append((key[0], want))
        elif not same(key[0], have, want):
            result.updates.append((key[0], merged(key[0], have, want)))
    for key in sorted(existing, key=lambda k: (k[0] == "services", k[1])):
        if key not in desired:
            result.deletes.append(key)
    return result


def _port_tuple(ports: Iterable[Mapping[str, Any]] | None) -> tuple[tuple[Any, ...], ...]:
    return tuple(
        (
            p.get("name") or "",
            p.get("port"),
            p.get("targetPort", p.get("port")),
            p.get("protocol") or "TCP",
            p.get("appProtocol"),
        )
        for p in ports or ()
    )


def _endpoint_tuple(endpoints: Iterable[Mapping[str, Any]] | None) -> tuple[tuple[Any, ...], ...]:
    out = []
    for ep in endpoints or ():
        cond = ep.get("conditions") or {}
        out.append(
            (
                tuple(ep.get("addresses") or ()),
                bool(cond.get("ready", True)),
                bool(cond.get("serving", cond.get("ready", True))),
                bool(cond.get("terminating", False)),
            )
        )
    return tuple(out)


def same(plural: str, have: Mapping[str, Any], want: Mapping[str, Any]) -> bool:
    hm, wm = have.get("metadata") or {}, want.get("metadata") or {}
    if (hm.get("labels") or {}) != wm.get("labels", {}):
        return False
    if (hm.get("annotations") or {}) != wm.get("annotations", {}):
        return False
    if plural == "services":
        hs, ws = have.get("spec") or {}, want["spec"]
        return (
            _port_tuple(hs.get("ports")) == _port_tuple(ws.get("ports"))
            and (hs.get("type") or "ClusterIP") == ws["type"]
            and not hs.get("selector")
        )
    return (
        have.get("addressType") == want["addressType"]
        and _endpoint_tuple(have.get("endpoints")) == _endpoint_tuple(want.get("endpoints"))
        and _port_tuple(have.get("ports")) == _port_tuple(want.get("ports"))
    )


def merged(plural: str, have: Mapping[str, Any], want: Mapping[str, Any]) -> dict[str, Any]:
    """`want` as an update of `have`: its resourceVersion (optimistic concurrency) and the
    fields the API server allocated (cluster IPs) carried over."""
    body = copy.deepcopy(dict(have))
    body.pop("status", None)
    meta = body.setdefault("metadata", {})
    meta.pop("managedFields", None)
    meta["labels"] = dict(want["metadata"].get("labels", {}))
    meta["annotations"] = dict(want["metadata"].get("annotations", {}))
    if plural == "services":
        spec = body.setdefault("spec", {})
        spec["ports"] = copy.deepcopy(want["spec"]["ports"])
        spec["type"] = want["spec"]["type"]
        spec.pop("selector", None)
    else:
        body["endpoints"] = copy.deepcopy(want["endpoints"])
        body["ports"] = copy.deepcopy(want["ports"])
    body["apiVersion"], body["kind"] = want["apiVersion"], want["kind"]
    return body
