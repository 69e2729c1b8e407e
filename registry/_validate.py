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

from ca import is_dns_label

from . import _probe_targets as _targets
from ._decode import F
from ._errors import InvalidInput
from ._model import CHECK_TYPES, Check, Status
from ._numbers import parse_duration, parse_number

# Every pattern is used with fullmatch: `$` would also match before a trailing newline.
_ID = re.compile(r"[A-Za-z0-9._:@-]{1,128}")
_NODE = re.compile(r"[A-Za-z0-9._-]{1,128}")
_META_KEY = re.compile(r"[A-Za-z0-9_-]{1,128}")
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252}[A-Za-z0-9])?")
# Who registered an instance: `api`, `agent`, or an adapter's `k8s/<cluster>`.
_SOURCE = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}(/[a-z0-9][a-z0-9._-]{0,62})?")
# Consul's service kinds ("" is a plain service); Weft stores them and does nothing else.
KINDS = (
    "",
    "connect-proxy",
    "mesh-gateway",
    "terminating-gateway",
    "ingress-gateway",
    "api-gateway",
)
_IDENTITY = re.compile(r"spiffe://[a-z0-9._-]{1,255}/ns/[a-z0-9-]{1,63}/svc/[a-z0-9-]{1,63}")
MAX_TEXT = 4096
MAX_COUNT = 2**31 - 1  # SuccessBeforePassing and friends are Go ints in Consul
PROTOCOLS = ("http", "http2", "grpc", "tcp")  # http2/grpc: HTTP/2 through the sidecars

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
    if not _ID.fullmatch(value):
        raise InvalidInput(
            f"{field}: {value!r} is not a valid ID: use 1-128 letters, digits or . _ : @ -",
            field=field,
        )
    return value


def node_name(value: str, field: str) -> str:
    if not _NODE.fullmatch(value):
        raise InvalidInput(
            f"{field}: {value!r} is not a valid node name: use 1-128 letters, digits or . _ -",
            field=field,
        )
    return value


def namespace(value: str, field: str) -> str:
    if value != "default" and not is_dns_label(value):
        raise InvalidInput(
            f"{field}: {value!r} is not a valid namespace: use a DNS label (1-63 lowercase "
            "letters, digits or '-', starting and ending with a letter or digit)",
            field=field,
        )
    return value


def source(value: str, field: str) -> str:
    if not _SOURCE.fullmatch(value):
        raise InvalidInput(
            f"{field}: {value!r} is not a valid source: use 1-63 lowercase letters, digits or "
            "'.', '_', '-', optionally followed by '/' and another such name (like k8s/prod)",
            field=field,
        )
    return value


def kind(value: str, field: str) -> str:
    if value not in KINDS:
        raise InvalidInput(
            f"{field}: {value!r} is not a service kind: use one of "
            + ", ".join(repr(k) for k in KINDS),
            field=field,
        )
    return value


def identity(value: str, field: str) -> str:
    if value and not _IDENTITY.fullmatch(value):
        raise InvalidInput(
            f"{field}: {value!r} is not a SPIFFE ID like spiffe://<trust-domain>/ns/<ns>/svc/<name>",
            field=field,
        )
    return value


def text(value: str, field: str, *, limit: int = MAX_TEXT) -> str:
    """Free text (check names, notes, outputs): bounded, no NUL or other C0 control except
    tab and newline."""
    if len(value) > limit or any(c < " " and c not in "\t\n" for c in value) or "\x7f" in value:
        raise InvalidInput(
            f"{field}: at most {limit} characters, without control characters other than tab "
            "and newline",
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
    if not _HOST.fullmatch(value):
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
        if not _META_KEY.fullmatch(key):
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
    # Decoded values are already parsed; parse again so a caller that skipped `decode`
    # (or a stored spec) still meets the same bounds.
    interval = parse_duration(spec.get("interval", 0.0), f"{field}.interval")
    if kind in ("http", "tcp", "exec"):
        if not interval:
            raise InvalidInput(
                f"{field}.interval: {kind} checks need an interval", field=f"{field}.interval"
            )
        interval = max(interval, rules.min_interval)
    ttl = parse_duration(spec.get("ttl", 0.0), f"{field}.ttl")
    if kind == "ttl" and ttl < 1:
        raise InvalidInput(f"{field}.ttl: must be at least 1s", field=f"{field}.ttl")
    if kind == "http":
        _targets.http_url(spec["http"], f"{field}.http")
    if kind == "tcp":
        _targets.tcp_address(spec["tcp"], f"{field}.tcp")
    args = _targets.exec_args(spec["args"], f"{field}.args") if kind == "exec" else ()
    timeout = parse_duration(spec.get("timeout", 10.0), f"{field}.timeout")
    if timeout <= 0:
        raise InvalidInput(f"{field}.timeout: must be positive", field=f"{field}.timeout")
    dcsa = parse_duration(
        spec.get("deregister_critical_after", 0.0), f"{field}.deregister_critical_after"
    )
    if dcsa:
        dcsa = max(dcsa, rules.min_deregister_critical_after)
    counts: dict[str, Any] = {}
    for name in ("success_before_passing", "failures_before_warning", "failures_before_critical"):
        counts[name] = parse_number(
            spec.get(name, 0), f"{field}.{name}", integer=True, maximum=MAX_COUNT, text=False
        )
    method = _targets.method(spec.get("method", "GET"), f"{field}.method")
    header = _targets.headers(spec.get("header", {}), f"{field}.header")
    return Check(
        id=check_id,
        node=node,
        service=service,
        instance=instance,
        name=text(spec.get("name", ""), f"{field}.name", limit=256) or f"{kind} check of {service}",
        type=kind,
        status=status(spec.get("status", "critical"), f"{field}.status"),
        notes=text(spec.get("notes", ""), f"{field}.notes"),
        ttl=ttl,
        http=spec.get("http", ""),
        method=method,
        header=header,
        tls_skip_verify=bool(spec.get("tls_skip_verify", False)),
        tcp=spec.get("tcp", ""),
        args=args,
        interval=interval,
        timeout=timeout,
        deregister_critical_after=dcsa,
        runner=runner,
        **counts,
    )
