"""Consul's `/v1/agent/service/register` body → a Weft Registration.

Every field Consul's Go client and py-consul send is accepted (keys case-insensitively);
fields Weft has no use for (Connect, Proxy, Partition, ...) are accepted and ignored; anything
else is an error naming the field.
"""

from __future__ import annotations

from typing import Any

from ca import SpiffeId

from ._catalog import Registration
from ._decode import F, decode
from ._errors import InvalidInput
from ._model import Instance, Weights
from ._validate import (
    CheckRules,
    address,
    build_check,
    instance_id,
    kind,
    meta,
    namespace,
    port,
    service_name,
    tags,
    weights,
)

_TAGGED_ADDRESS = {"Address": F("str"), "Port": F("int")}
MAX_TAGGED_ADDRESSES = 16

_IGNORED = F("any", ignored=True)

CHECK_SHAPE: dict[str, F] = {
    "CheckID": F("str"),
    "ID": F("str"),
    "Name": F("str"),
    "Args": F("strlist"),
    "ScriptArgs": F("strlist"),
    "Interval": F("duration"),
    "Timeout": F("duration"),
    "TTL": F("duration"),
    "HTTP": F("str"),
    "Header": F("listmap"),
    "Method": F("str"),
    "Body": F("str"),
    "TCP": F("str"),
    "Status": F("str"),
    "Notes": F("str"),
    "TLSSkipVerify": F("bool"),
    "SuccessBeforePassing": F("int"),
    "FailuresBeforeWarning": F("int"),
    "FailuresBeforeCritical": F("int"),
    "DeregisterCriticalServiceAfter": F("duration"),
    "ServiceID": F("str"),
    # Accepted for compatibility; Weft does not use them.
    "Type": _IGNORED,
    "TCPUseTLS": _IGNORED,
    "TLSServerName": _IGNORED,
    "DockerContainerID": _IGNORED,
    "Shell": _IGNORED,
    "OutputMaxSize": _IGNORED,
    "Namespace": _IGNORED,
    "Partition": _IGNORED,
    "DisableRedirects": _IGNORED,
    # Check kinds Weft does not run: rejected with a clear message below.
    "GRPC": F("any"),
    "GRPCUseTLS": _IGNORED,
    "H2PING": F("any"),
    "H2PingUseTLS": _IGNORED,
    "UDP": F("any"),
    "AliasNode": F("any"),
    "AliasService": F("any"),
    "OSService": F("any"),
}

REGISTER_SHAPE: dict[str, F] = {
    "Name": F("str"),
    "ID": F("str"),
    "Tags": F("strlist"),
    "Address": F("str"),
    "TaggedAddresses": F("anymap"),  # checked by tagged_addresses()
    "Meta": F("strmap"),
    "Port": F("int"),
    "Kind": F("str"),
    "EnableTagOverride": F("bool"),
    "Weights": F("obj", {"Passing": F("int"), "Warning": F("int")}),
    "Check": F("obj", CHECK_SHAPE),
    "Checks": F("objlist", CHECK_SHAPE),
    "Namespace": F("str"),
    "Proxy": _IGNORED,
    "Connect": F("any"),  # only SidecarService.Port is used: see _sidecar_port()
    "Partition": _IGNORED,
    "SocketPath": _IGNORED,
    "Locality": _IGNORED,
    "Datacenter": _IGNORED,
}

_CHECK_FIELDS = {
    "Name": "name",
    "Interval": "interval",
    "Timeout": "timeout",
    "TTL": "ttl",
    "HTTP": "http",
    "Header": "header",
    "Method": "method",
    "TCP": "tcp",
    "Status": "status",
    "Notes": "notes",
    "TLSSkipVerify": "tls_skip_verify",
    "SuccessBeforePassing": "success_before_passing",
    "FailuresBeforeWarning": "failures_before_warning",
    "FailuresBeforeCritical": "failures_before_critical",
    "DeregisterCriticalServiceAfter": "deregister_critical_after",
}


def registration_from_consul(
    body: Any,
    *,
    node: str,
    node_address: str,
    rules: CheckRules,
    source: str = "api",
    runner: str = "server",
    trust_domain: str | None = None,
) -> Registration:
    data = decode(body, REGISTER_SHAPE, fold_case=True)
    if "Name" not in data or not data["Name"]:
        raise InvalidInput("Name: is required", field="Name")
    name = service_name(data["Name"], "Name")
    iid = instance_id(data.get("ID") or name, "ID")
    inst_port = port(data.get("Port", 0), "Port", allow_zero=True)
    passing, warning = weights(data.get("Weights", {}), "Weights")
    inst_namespace = namespace(data.get("Namespace") or "default", "Namespace")
    sidecar = _sidecar_port(data.get("Connect"))
    instance = Instance(
        service=name,
        id=iid,
        node=node,
        namespace=inst_namespace,
        address=address(data.get("Address", ""), "Address"),
        node_address=node_address,
        port=inst_port,
        sidecar_port=sidecar,
        # Derived, never sent: Consul's API has no field for it.
        identity=SpiffeId(trust_domain, inst_namespace, name).uri
        if sidecar and trust_domain
        else "",
        tags=tags(data.get("Tags", []), "Tags"),
        meta=meta(data.get("Meta", {}), "Meta"),
        weights=Weights(passing, warning),
        source=source,
        kind=kind(data.get("Kind", ""), "Kind"),
        tagged_addresses=tagged_addresses(data.get("TaggedAddresses", {}), "TaggedAddresses"),
        enable_tag_override=data.get("EnableTagOverride", False),
    )
    specs: list[tuple[str, dict[str, Any]]] = []
    if "Check" in data and _has_kind(data["Check"]):
        specs.append(("Check", data["Check"]))
    for i, spec in enumerate(data.get("Checks", [])):
        specs.append((f"Checks[{i}]", spec))
    checks = []
    seen: set[str] = set()
    for n, (where, spec) in enumerate(specs, start=1):
        for unsupported in ("GRPC", "H2PING", "UDP", "AliasNode", "AliasService", "OSService"):
            if unsupported in spec:
                raise InvalidInput(
                    f"{where}.{unsupported}: {unsupported} checks are not supported by Weft; "
                    "use TTL, HTTP or TCP",
                    field=f"{where}.{unsupported}",
                )
        check_id = (
            spec.get("CheckID")
            or spec.get("ID")
            or (f"service:{iid}" if len(specs) == 1 else f"service:{iid}:{n}")
        )
        if check_id in seen:
            raise InvalidInput(
                f"{where}.CheckID: {check_id!r} is used twice", field=f"{where}.CheckID"
            )
        seen.add(check_id)
        native = {_CHECK_FIELDS[k]: v for k, v in spec.items() if k in _CHECK_FIELDS}
        if spec.get("Args") or spec.get("ScriptArgs"):
            native["args"] = spec.get("Args") or spec.get("ScriptArgs")
        checks.append(
            build_check(
                native,
                field=where,
                check_id=check_id,
                node=node,
                service=name,
                instance=iid,
                runner=runner,
                rules=rules,
            )
        )
    return Registration(instance=instance, checks=tuple(checks))


def _sidecar_port(connect: Any) -> int:
    """Consul's `Connect: {SidecarService: {Port: N}}`: a Weft sidecar on port N.

    Consul picks a port itself when none is given; Weft has no port allocator, so it must be
    given. `Connect: {Native: true}` and an empty `Connect` mean no sidecar.
    """
    if connect is None or connect == {}:
        return 0
    if not isinstance(connect, dict):
        raise InvalidInput("Connect: expected an object", field="Connect")
    sidecar = {k.lower(): v for k, v in connect.items()}.get("sidecarservice")
    if sidecar is None:
        return 0
    if not isinstance(sidecar, dict):
        raise InvalidInput(
            "Connect.SidecarService: expected an object", field="Connect.SidecarService"
        )
    value = {k.lower(): v for k, v in sidecar.items()}.get("port")
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidInput(
            "Connect.SidecarService.Port: is required (the port the Weft sidecar listens on)",
            field="Connect.SidecarService.Port",
        )
    return port(value, "Connect.SidecarService.Port")


def tagged_addresses(values: dict[str, Any], field: str) -> dict[str, dict[str, Any]]:
    """Consul's {"lan_ipv4": {"Address": "10.0.0.1", "Port": 80}, ...}, and nothing else."""
    if len(values) > MAX_TAGGED_ADDRESSES:
        raise InvalidInput(
            f"{field}: at most {MAX_TAGGED_ADDRESSES} tagged addresses, got {len(values)}",
            field=field,
        )
    out = {}
    for name, value in values.items():
        where = f"{field}.{name}"
        meta({name: ""}, field)  # the same charset as a meta key
        entry = decode(value, _TAGGED_ADDRESS, path=where, fold_case=True)
        out[name] = {
            "Address": address(entry.get("Address", ""), f"{where}.Address"),
            "Port": port(entry.get("Port", 0), f"{where}.Port", allow_zero=True),
        }
    return out


def _has_kind(spec: dict[str, Any]) -> bool:
    # py-consul sends `"Check": {}`-like leftovers; an inline check with no kind is "no check".
    return any(
        spec.get(k)
        for k in (
            "TTL",
            "HTTP",
            "TCP",
            "Args",
            "ScriptArgs",
            "GRPC",
            "H2PING",
            "UDP",
            "AliasNode",
            "AliasService",
            "OSService",
        )
    )
