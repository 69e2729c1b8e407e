"""The catalog in Consul's JSON shapes (what py-consul, the Go client and Prometheus read)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from ._mirror import Mirror
from ._model import Check, Instance, Status, replace

MAINT_CHECK_ID = "_node_maintenance"


def node_id(node: str) -> str:
    """A stable UUID per node name (Consul nodes have UUIDs; Weft nodes have names)."""
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{node}.node.weft"))


def node_address(mirror: Mirror, node: str) -> str:
    return mirror.node_address(node)


def consul_status(status: Status) -> str:
    return "critical" if status is Status.MAINTENANCE else str(status)


def maintenance_check(mirror: Mirror, node: str) -> dict[str, Any] | None:
    record = mirror.maint.get(node)
    if record is None:
        return None
    reason = record.get("reason") or "Maintenance mode is enabled for this node"
    return {
        "Node": node,
        "CheckID": MAINT_CHECK_ID,
        "Name": "Node Maintenance Mode",
        "Status": "critical",
        "Notes": reason,
        "Output": "",
        "ServiceID": "",
        "ServiceName": "",
        "ServiceTags": [],
        "Type": "maintenance",
        "Namespace": "default",
        "CreateIndex": 0,
        "ModifyIndex": 0,
    }


def check_json(check: Check, inst: Instance | None) -> dict[str, Any]:
    return {
        "Node": check.node,
        "CheckID": check.id,
        "Name": check.name,
        "Status": consul_status(check.status),
        "Notes": check.notes,
        "Output": check.output,
        "ServiceID": check.instance,
        "ServiceName": check.service,
        "ServiceTags": list(inst.tags) if inst else [],
        "Type": check.type,
        "Namespace": inst.namespace if inst else "default",
        "Definition": {},
        "CreateIndex": check.create_index,
        "ModifyIndex": check.modify_index,
    }


def service_json(inst: Instance) -> dict[str, Any]:
    return {
        "ID": inst.id,
        "Service": inst.service,
        "Tags": list(inst.tags),
        "Address": inst.address,
        "TaggedAddresses": dict(inst.tagged_addresses),
        "Meta": dict(inst.meta),
        "Port": inst.port,
        "Weights": {"Passing": inst.weights.passing, "Warning": inst.weights.warning},
        "EnableTagOverride": inst.enable_tag_override,
        "Kind": inst.kind,
        "Namespace": inst.namespace,
        "CreateIndex": inst.create_index,
        "ModifyIndex": inst.modify_index,
    }


def node_json(mirror: Mirror, node: str, datacenter: str) -> dict[str, Any]:
    address = node_address(mirror, node)
    return {
        "ID": node_id(node),
        "Node": node,
        "Address": address,
        "Datacenter": datacenter,
        "TaggedAddresses": _tagged(mirror, node, address),
        "Meta": mirror.node_meta(node),
    }


def _tagged(mirror: Mirror, node: str, address: str) -> dict[str, str]:
    declared = (mirror.nodes.get(node) or {}).get("tagged_addresses") or {}
    return {"lan": address, "wan": address, **declared}  # type: ignore[dict-item]


def _matches_tags(inst: Instance, wanted: list[str]) -> bool:
    return all(tag in inst.tags for tag in wanted)


def instance_checks(mirror: Mirror, inst: Instance) -> list[dict[str, Any]]:
    checks = [
        check_json(c, inst) for c in mirror.checks_of(inst.service, inst.node, inst.id).values()
    ]
    maint = maintenance_check(mirror, inst.node)
    if maint is not None:
        checks.insert(0, maint)
    return checks


def health_service(
    mirror: Mirror, name: str, *, passing: bool, tags: list[str], datacenter: str
) -> list[dict[str, Any]]:
    out = []
    for inst in _sorted(mirror.instances.get(name, {}).values()):
        if tags and not _matches_tags(inst, tags):
            continue
        checks = instance_checks(mirror, inst)
        if passing and any(c["Status"] != "passing" for c in checks):
            continue
        node = node_json(mirror, inst.node, datacenter)
        out.append({"Node": node, "Service": service_json(inst), "Checks": checks})
    return out


def catalog_service(
    mirror: Mirror, name: str, *, tags: list[str], datacenter: str
) -> list[dict[str, Any]]:
    out = []
    for inst in _sorted(mirror.instances.get(name, {}).values()):
        if tags and not _matches_tags(inst, tags):
            continue
        node_addr = node_address(mirror, inst.node)
        out.append(
            {
                "ID": node_id(inst.node),
                "Node": inst.node,
                "Address": node_addr,
                "Datacenter": datacenter,
                "TaggedAddresses": _tagged(mirror, inst.node, node_addr),
                "NodeMeta": mirror.node_meta(inst.node),
                "CreateIndex": inst.create_index,
                "ModifyIndex": inst.modify_index,
                "ServiceAddress": inst.address,
                "ServiceEnableTagOverride": inst.enable_tag_override,
                "ServiceID": inst.id,
                "ServiceName": inst.service,
                "ServicePort": inst.port,
                "ServiceMeta": dict(inst.meta),
                "ServiceTaggedAddresses": dict(inst.tagged_addresses),
                "ServiceTags": list(inst.tags),
                "ServiceKind": inst.kind,
                "ServiceProxy": {},
                "ServiceConnect": {},
                "ServiceWeights": {
                    "Passing": inst.weights.passing,
                    "Warning": inst.weights.warning,
                },
                "Namespace": inst.namespace,
            }
        )
    return out


def catalog_services(mirror: Mirror) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name in sorted(mirror.instances):
        seen: dict[str, None] = {}
        sidecar: dict[str, None] | None = None
        for inst in mirror.instances[name].values():
            for tag in inst.tags:
                seen[tag] = None
            if inst.sidecar_port:
                sidecar = sidecar or {}
                sidecar.update(dict.fromkeys(inst.tags))
        out[name] = sorted(seen)
        if sidecar is not None:  # the sidecars, as Consul lists them (tags inherited)
            out.setdefault(name + SIDECAR_SUFFIX, sorted(sidecar))
    return dict(sorted(out.items()))


def catalog_nodes(mirror: Mirror, datacenter: str) -> list[dict[str, Any]]:
    out = []
    for node in mirror.node_names():
        entry = node_json(mirror, node, datacenter)
        insts = mirror.instances_on(node)
        entry["CreateIndex"] = min((i.create_index for i in insts), default=0)
        entry["ModifyIndex"] = max((i.modify_index for i in insts), default=0)
        out.append(entry)
    return out


def health_state(mirror: Mirror, state: str) -> list[dict[str, Any]]:
    out = []
    for node, record in sorted(mirror.maint.items()):
        if record is not None and state in ("any", "critical"):
            maint = maintenance_check(mirror, node)
            if maint:
                out.append(maint)
    for check in sorted(mirror.all_checks(), key=lambda c: (c.service, c.node, c.instance, c.id)):
        if state == "any" or consul_status(check.status) == state:
            out.append(
                check_json(check, mirror.instance(check.service, check.node, check.instance))
            )
    return out


def agent_services(mirror: Mirror, node: str, datacenter: str) -> dict[str, Any]:
    out = {}
    for inst in _sorted(mirror.instances_on(node)):
        entry = service_json(inst)
        entry["Datacenter"] = datacenter
        out[inst.id] = entry
    return out


def agent_checks(mirror: Mirror, node: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    maint = maintenance_check(mirror, node)
    if maint:
        out[MAINT_CHECK_ID] = maint
    for inst in _sorted(mirror.instances_on(node)):
        for check in mirror.checks_of(inst.service, inst.node, inst.id).values():
            out[check.id] = check_json(check, inst)
    return out


def _sorted(instances: Iterable[Instance]) -> list[Instance]:
    return sorted(instances, key=lambda i: (i.node, i.id))


# -- Connect: a sidecar shown as Consul shows it -----------------------------------------------
#
# Weft stores a sidecar on its service's instance (`sidecar_port`); Consul registers it as a
# second instance, `<service>-sidecar-proxy` of kind `connect-proxy`, pointing back at the
# service. The Connect views render that second instance from the first, so Consul's clients
# (and `/v1/health/connect/<s>`) see what Consul would show.


SIDECAR_SUFFIX = "-sidecar-proxy"


def sidecar_base(name: str) -> str | None:
    """The service whose sidecars `name` would be (`web-sidecar-proxy` -> `web`)."""
    return name[: -len(SIDECAR_SUFFIX)] or None if name.endswith(SIDECAR_SUFFIX) else None


def sidecar_of(inst: Instance) -> Instance:
    return replace(
        inst,
        service=f"{inst.service}{SIDECAR_SUFFIX}",
        id=f"{inst.id}{SIDECAR_SUFFIX}",
        port=inst.sidecar_port,
        kind="connect-proxy",
        tagged_addresses={},
    )


def proxy_json(inst: Instance) -> dict[str, Any]:
    return {
        "DestinationServiceName": inst.service,
        "DestinationServiceID": inst.id,
        "LocalServiceAddress": "127.0.0.1",
        "LocalServicePort": inst.port,
        "Mode": "",
        "Upstreams": [],
    }


def health_connect(
    mirror: Mirror, name: str, *, passing: bool, tags: list[str], datacenter: str
) -> list[dict[str, Any]]:
    """The sidecars of `name`'s instances, with the instances' checks (a Weft sidecar is
    healthy when its service is: its agent runs both)."""
    out = []
    for entry in health_service(mirror, name, passing=passing, tags=tags, datacenter=datacenter):
        inst = mirror.instance(name, entry["Node"]["Node"], entry["Service"]["ID"])
        if inst is None or not inst.sidecar_port:
            continue
        service = service_json(sidecar_of(inst))
        service["Proxy"] = proxy_json(inst)
        entry["Service"] = service
        out.append(entry)
    return out


def catalog_connect(
    mirror: Mirror, name: str, *, tags: list[str], datacenter: str
) -> list[dict[str, Any]]:
    out = []
    for entry in catalog_service(mirror, name, tags=tags, datacenter=datacenter):
        inst = mirror.instance(name, entry["Node"], entry["ServiceID"])
        if inst is None or not inst.sidecar_port:
            continue
        proxy = sidecar_of(inst)
        entry.update(
            ServiceID=proxy.id,
            ServiceName=proxy.service,
            ServicePort=proxy.port,
            ServiceKind=proxy.kind,
            ServiceTaggedAddresses={},
            ServiceProxy=proxy_json(inst),
        )
        out.append(entry)
    return out
