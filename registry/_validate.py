"""The rules a registration must meet, shared by the native and the Consul-compatible API.

Each function takes decoded values and the field path, and raises InvalidInput naming the
field and the rule, or returns the normalised value.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ca import is_dns_label

from ._decode import F
from ._errors import InvalidInput
from ._model import CHECK_TYPES, Check, Status

_ID = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")
_NODE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_META_KEY = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252}[A-Za-z0-9])?$")
PROTOCOLS = ("http", "tcp")

# A check in the native shape (the API's instances, the agent's service definitions).
CHECK_SHAPE: dict[str, F] = {
    "id": F("str"),
    "name": F("str"),
    "ttl": F("duration"),
    "http": F("str"),
    "method": F("str"),
    "header": F("listmap"),
    "tls_skip_verify": F("bool"),
    "tcp": F("str"),
    "args": F("strlist"),
    "interval": F("duration"),
    "timeout": F("duration"),
    "deregister_critical_after": F("duration"),
    "success_before_passing": F("int"),
    "failures_before_warning": F("int"),
    "failures_before_critical": F("int"),
    "status": F("str"),
    "notes": F("str"),
}


@dataclass(frozen=True)
class CheckRules:
    """Server-wide limits, as in Consul (configurable so tests can run in seconds)."""

    min_interval: float = 1.0
    min_deregister_critical_after: float = 60.0


def service_name(value: str, field: str) -> str:
    if not is_dns_label(value):
        raise InvalidInput(
            f"{field}: {value!r} is not a valid service name: use a DNS label (1-63 lowercase "
            "letters, digits or '-', starting and ending with a letter or digit)",
            field=field,
        )
    return value


def instance_id(value: str, field: str) -> str:
    if not _ID.match(value):
        raise InvalidInput(
            f"{field}: {value!r} is not a valid ID: use 1-128 letters, digits or . _ : @ -",
            field=field,
        )
    return value


def node_name(value: str, field: str) -> str:
    if not _NODE.match(value):
        raise InvalidInput(
            f"{field}: {value!r} is not a valid node name: use 1-128 letters, digits or . _ -",
            field=field,
        )
    return value


def port(value: int, field: str, *, allow_zero: bool = False) -> int:
    if allow_zero and value == 0:
        return 0
    if not 1 <= value <= 65535:
        raise InvalidInput(f"{field}: port {value} is outside 1-65535", field=field)
    return value


def address(value: str, field: str) -> str:
    if value == "":
        return value
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    if not _HOST.match(value):
        raise InvalidInput(
            f"{field}: {value!r} is neither an IP address nor a host name", field=field
        )
    return value


def protocol(value: str, field: str) -> str:
    if value not in PROTOCOLS:
        raise InvalidInput(
            f"{field}: protocol {value!r} is not one of {', '.join(PROTOCOLS)}", field=field
        )
    return value


def tags(values: list[str], field: str) -> tuple[str, ...]:
    if len(values) > 64:
        raise InvalidInput(f"{field}: at most 64 tags, got {len(values)}", field=field)
    for i, tag in enumerate(values):
        if len(tag) > 255 or any(ord(c) < 32 for c in tag):
            raise InvalidInput(
                f"{field}[{i}]: a tag is at most 255 printable characters", field=f"{field}[{i}]"
            )
    return tuple(values)


def meta(values: Mapping[str, str], field: str) -> dict[str, str]:
    if len(values) > 64:
        raise InvalidInput(f"{field}: at most 64 meta pairs, got {len(values)}", field=field)
    for key, value in values.items():
        if not _META_KEY.match(key):
            raise InvalidInput(
                f"{field}.{key}: a meta key is 1-128 letters, digits, '_' or '-'",
                field=f"{field}.{key}",
            )
        if len(value) > 512:
            raise InvalidInput(
                f"{field}.{key}: a meta value is at most 512 characters", field=f"{field}.{key}"
            )
    return dict(values)


def weights(values: Mapping[str, int], field: str) -> tuple[int, int]:
    passing = values.get("passing", values.get("Passing", 1))
    warning = values.get("warning", values.get("Warning", 1))
    for name, value in (("passing", passing), ("warning", warning)):
        if not 0 <= value <= 65535:
            raise InvalidInput(
                f"{field}.{name}: a weight is 0-65535, got {value}", field=f"{field}.{name}"
            )
    if passing < 1:
        raise InvalidInput(f"{field}.passing: must be at least 1", field=f"{field}.passing")
    return passing, warning


def status(value: str, field: str) -> Status:
    try:
        result = Status(value)
    except ValueError:
        result = None
    if result is None or result is Status.MAINTENANCE:
        raise InvalidInput(
            f"{field}: status {value!r} is not one of passing, warning, critical", field=field
        )
    return result


def build_check(
    spec: Mapping[str, Any],
    *,
    field: str,
    check_id: str,
    node: str,
    service: str,
    instance: str,
    runner: str,
    rules: CheckRules,
) -> Check:
    """A Check from a decoded native-shaped dict (Consul input is mapped to that shape first)."""
    instance_id(check_id, f"{field}.id")
    kinds = [k for k in ("ttl", "http", "tcp", "args") if spec.get(k)]
    if len(kinds) != 1:
        raise InvalidInput(
            f"{field}: a check needs exactly one of ttl, http, tcp or args"
            + (f" (got {', '.join(kinds)})" if kinds else ""),
            field=field,
        )
    kind = "exec" if kinds[0] == "args" else kinds[0]
    assert kind in CHECK_TYPES
    if kind == "exec" and runner != "agent":
        raise InvalidInput(
            f"{field}.args: script checks run only on the host's weft agent; declare the "
            "service in the agent's services.d instead of through the API",
            field=f"{field}.args",
        )
    interval = float(spec.get("interval", 0.0))
    if kind in ("http", "tcp", "exec"):
        if not interval:
            raise InvalidInput(
                f"{field}.interval: {kind} checks need an interval", field=f"{field}.interval"
            )
        interval = max(interval, rules.min_interval)
    ttl = float(spec.get("ttl", 0.0))
    if kind == "ttl" and ttl < 1:
        raise InvalidInput(f"{field}.ttl: must be at least 1s", field=f"{field}.ttl")
    if kind == "http":
        url = urlsplit(spec["http"])
        if url.scheme not in ("http", "https") or not url.hostname:
            raise InvalidInput(
                f"{field}.http: {spec['http']!r} is not an http(s) URL", field=f"{field}.http"
            )
    if kind == "tcp":
        host, sep, tcp_port = spec["tcp"].rpartition(":")
        if not sep or not host or not tcp_port.isdigit():
            raise InvalidInput(
                f"{field}.tcp: {spec['tcp']!r} is not host:port", field=f"{field}.tcp"
            )
        port(int(tcp_port), f"{field}.tcp")
    timeout = float(spec.get("timeout", 10.0))
    if timeout <= 0:
        raise InvalidInput(f"{field}.timeout: must be positive", field=f"{field}.timeout")
    dcsa = float(spec.get("deregister_critical_after", 0.0))
    if dcsa:
        dcsa = max(dcsa, rules.min_deregister_critical_after)
    counts: dict[str, Any] = {}
    for name in ("success_before_passing", "failures_before_warning", "failures_before_critical"):
        value = int(spec.get(name, 0))
        if value < 0:
            raise InvalidInput(f"{field}.{name}: must not be negative", field=f"{field}.{name}")
        counts[name] = value
    method = spec.get("method", "GET").upper()
    return Check(
        id=check_id,
        node=node,
        service=service,
        instance=instance,
        name=spec.get("name") or f"{kind} check of {service}",
        type=kind,
        status=status(spec.get("status", "critical"), f"{field}.status"),
        notes=spec.get("notes", ""),
        ttl=ttl,
        http=spec.get("http", ""),
        method=method,
        header=dict(spec.get("header", {})),
        tls_skip_verify=bool(spec.get("tls_skip_verify", False)),
        tcp=spec.get("tcp", ""),
        args=tuple(spec.get("args", ())),
        interval=interval,
        timeout=timeout,
        deregister_critical_after=dcsa,
        runner=runner,
        **counts,
    )
