"""`/v1/txn`'s Service and Check operations, planned into the same etcd transaction as its
KV operations (see `_txn.py`).

Service verbs: `set` (an AgentService on a node), `get`, `delete`. Check verbs: `set` of a
status (an existing check keeps what it runs; a new one is status-only and needs the
`ServiceID` it belongs to), `get`, `delete`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._catalog import Registration
from ._consul_input import registration_from_consul
from ._consul_views import check_json, service_json
from ._decode import F
from ._errors import InvalidInput
from ._model import Check, Status, encode_check, replace
from .etcd import Compare, Delete, Put

if TYPE_CHECKING:
    from ._txn import Plan, Planner

SERVICE_SHAPE: dict[str, F] = {
    "Verb": F("str"),
    "Node": F("str"),
    "Service": F("anymap"),
    "Namespace": F("any", ignored=True),
    "Partition": F("any", ignored=True),
}
CHECK_SHAPE: dict[str, F] = {
    "Verb": F("str"),
    "Check": F(
        "obj",
        {
            "Node": F("str"),
            "CheckID": F("str"),
            "Name": F("str"),
            "Status": F("str"),
            "Notes": F("str"),
            "Output": F("str"),
            "ServiceID": F("str"),
            "ServiceName": F("any", ignored=True),
            "ServiceTags": F("any", ignored=True),
            "Type": F("any", ignored=True),
            "Definition": F("any", ignored=True),
            "Namespace": F("any", ignored=True),
            "Partition": F("any", ignored=True),
            "CreateIndex": F("any", ignored=True),
            "ModifyIndex": F("any", ignored=True),
        },
    ),
}


def plan_service(planner: Planner, plan: Plan, i: int, spec: dict[str, Any], where: str) -> None:
    verb = spec.get("Verb", "")
    node = spec.get("Node") or planner.node
    body = dict(spec.get("Service", {}))
    if verb == "set":
        if "Service" in body and "Name" not in body:
            body["Name"] = body.pop("Service")
        for ignored in ("CreateIndex", "ModifyIndex", "Datacenter"):
            body.pop(ignored, None)
        reg: Registration = registration_from_consul(
            body, node=node, node_address=planner.node_address, rules=planner.rules
        )
        inst = reg.instance
        # Instance keys never collide with KV keys: a NUL cannot be in a KV key's path.
        planner.claim(plan, f"\0service/{inst.service}/{node}/{inst.id}", where)
        plan.instances.append(inst)
        plan.ops.extend(planner.catalog.registration_ops(reg))
        plan.results.append(
            lambda outcome: [{"Service": _service_view(planner, node, inst.id) or {}}]
        )
        return
    if verb not in ("get", "delete"):
        raise InvalidInput(
            f"{where}.Verb: {verb!r} is not one of set, get, delete", field=f"{where}.Verb"
        )
    iid = body.get("ID") or body.get("Service") or ""
    found = planner.mirror.find_instance(node, iid) if isinstance(iid, str) else None
    if found is None:
        plan.errors.append((i, f'service "{iid}" on node "{node}" doesn\'t exist'))
        plan.results.append(lambda outcome: [])
        return
    key = planner.keys.instance(found.service, found.node, found.id)
    if verb == "get":
        plan.guard(
            i, Compare("mod", key, "=", found.modify_index), lambda: f'service "{iid}" changed'
        )
        view = service_json(found)
        plan.results.append(lambda outcome: [{"Service": view}])
        return
    planner.claim(plan, f"\0service/{found.service}/{node}/{found.id}", where)
    plan.instances.append(found)
    plan.ops.extend(planner.catalog.deregistration_ops(found))
    plan.results.append(lambda outcome: [])


def plan_check(planner: Planner, plan: Plan, i: int, spec: dict[str, Any], where: str) -> None:
    """Check verbs: `get`, `delete`, and `set` of a status. A set on an existing check
    changes its status and output and keeps what it runs; a new one is status-only (its
    registrant owns the status, as for `/v1/catalog/register`)."""
    verb = spec.get("Verb", "")
    body = spec.get("Check", {})
    node = body.get("Node") or planner.node
    check_id = body.get("CheckID", "")
    if verb not in ("set", "get", "delete"):
        raise InvalidInput(
            f"{where}.Verb: {verb!r} is not one of set, get, delete", field=f"{where}.Verb"
        )
    if not check_id:
        raise InvalidInput(f"{where}.Check.CheckID: is required", field=f"{where}.Check")
    found = planner.mirror.find_check(node, check_id)
    if verb == "set":
        status = _status(body.get("Status", "critical"), f"{where}.Check.Status")
        if found is not None:
            check = replace(found, status=status, output=body.get("Output", found.output))
            inst = planner.mirror.instance(found.service, node, found.instance)
        else:
            iid = body.get("ServiceID", "")
            inst = planner.mirror.find_instance(node, iid) if iid else None
            if inst is None:
                raise InvalidInput(
                    f"{where}.Check.ServiceID: a new check needs the ID of a service on "
                    f"node {node!r} (node-level checks are not supported)",
                    field=f"{where}.Check.ServiceID",
                )
            check = Check(
                id=check_id,
                node=node,
                service=inst.service,
                instance=inst.id,
                name=body.get("Name", check_id),
                status=status,
                notes=body.get("Notes", ""),
                output=body.get("Output", ""),
                runner="adapter",
                lease=inst.lease,  # it leaves with its instance
            )
        key = planner.keys.check(check.service, node, check.instance, check.id)
        planner.claim(plan, "\0check" + key, where)
        if inst is not None:
            plan.instances.append(inst)
        plan.ops.append(Put(key, encode_check(check), check.lease))
        if found is not None:
            plan.guard(
                i,
                Compare("mod", key, "=", found.modify_index),
                lambda: f'check "{check_id}" changed meanwhile',
            )
        plan.results.append(lambda outcome: [{"Check": _check_view(planner, node, check_id)}])
        return
    if found is None:
        plan.errors.append((i, f'check "{check_id}" on node "{node}" doesn\'t exist'))
        plan.results.append(lambda outcome: [])
        return
    key = planner.keys.check(found.service, node, found.instance, found.id)
    inst = planner.mirror.instance(found.service, node, found.instance)
    if verb == "get":
        plan.guard(
            i,
            Compare("mod", key, "=", found.modify_index),
            lambda: f'check "{check_id}" changed meanwhile',
        )
        view = check_json(found, inst)
        plan.results.append(lambda outcome: [{"Check": view}])
        return
    planner.claim(plan, "\0check" + key, where)
    if inst is not None:
        plan.instances.append(inst)
    plan.ops.append(Delete(key))
    plan.results.append(lambda outcome: [])


def _check_view(planner: Planner, node: str, check_id: str) -> dict[str, Any]:
    check = planner.mirror.find_check(node, check_id)
    if check is None:
        return {}
    return check_json(check, planner.mirror.instance(check.service, node, check.instance))


def _service_view(planner: Planner, node: str, iid: str) -> dict[str, Any] | None:
    inst = planner.mirror.find_instance(node, iid)
    return service_json(inst) if inst else None


def _status(raw: str, where: str) -> Status:
    try:
        status = Status(str(raw).lower())
    except ValueError:
        status = Status.MAINTENANCE
    if status is Status.MAINTENANCE:
        raise InvalidInput(f"{where}: {raw!r} is not passing, warning or critical", field=where)
    return status
