"""Checkers for traffic resource fields, and the match tree. Pure.

A checker takes `(value, path, problems)` and adds `path: message` for whatever is wrong,
so one pass over a document finds every problem (`_resources` composes them into kinds).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._decode import parse_duration
from ._validate import is_dns_label

MAX_RULES = 64
MAX_MATCHES = 16
MAX_FIELDS = 16  # headers or query parameters per match entry
MAX_DEPTH = 4  # nested all/any/not
MAX_BACKENDS = 16
MAX_WEIGHT = 10_000
MAX_REGEX = 1024
MAX_TIMEOUT = 3600.0
MAX_ATTEMPTS = 10

NAME = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$")
SOURCE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}(/[a-z0-9][a-z0-9._-]{0,62})?$")  # k8s/prod
RULE_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$")
_METHOD = re.compile(r"^[A-Z]{1,20}$")
PROTECTED_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "host",
    }
)
RETRY_CONDITIONS = (
    "5xx",
    "gateway-error",
    "timeout",
    "reset",
    # gRPC calls: the grpc-status of an answer with no response message
    "cancelled",
    "deadline-exceeded",
    "resource-exhausted",
    "internal",
    "unavailable",
)


@dataclass
class Problems:
    """Problems found so far, each `path: message`."""

    items: list[str] = field(default_factory=list)

    def add(self, path: str, message: str) -> None:
        self.items.append(f"{path}: {message}")


Checker = Callable[[Any, str, Problems], object]


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def check_object(
    value: Any,
    path: str,
    out: Problems,
    fields: Mapping[str, Checker],
    required: Sequence[str] = (),
) -> bool:
    if not isinstance(value, dict):
        out.add(path, f"expected an object, got {type_name(value)}")
        return False
    for name in required:
        if name not in value:
            out.add(f"{path}.{name}", "is required")
    for name, item in value.items():
        if name not in fields:
            known = ", ".join(sorted(fields))
            out.add(f"{path}.{name}", f"unknown field (known fields: {known})")
            continue
        fields[name](item, f"{path}.{name}", out)
    return True


def check_string(pattern: re.Pattern[str] | None = None, what: str = "") -> Checker:
    def check(value: Any, path: str, out: Problems) -> None:
        if not isinstance(value, str):
            out.add(path, f"expected a string, got {type_name(value)}")
        elif pattern is not None and not pattern.match(value):
            out.add(path, f"{value[:80]!r} is not {what}")

    return check


def check_service(value: Any, path: str, out: Problems) -> None:
    if not isinstance(value, str) or not is_dns_label(value):
        out.add(path, f"{value!r} is not a service name (a DNS label: 1-63 of a-z, 0-9, '-')")


def check_number(low: float, high: float, *, integer: bool = False) -> Checker:
    def check(value: Any, path: str, out: Problems) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            out.add(path, f"expected a number, got {type_name(value)}")
        elif isinstance(value, float) and not math.isfinite(value):
            out.add(path, f"{value} is not a finite number")
        elif integer and not float(value).is_integer():
            out.add(path, f"expected a whole number, got {value}")
        elif not low <= value <= high:
            out.add(path, f"{value} is outside {low:g}..{high:g}")

    return check


def check_boolean(value: Any, path: str, out: Problems) -> None:
    if not isinstance(value, bool):
        out.add(path, f"expected true or false, got {type_name(value)}")


def check_duration(value: Any, path: str, out: Problems) -> None:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        out.add(path, f"expected a duration such as '300ms' or '10s', got {type_name(value)}")
        return
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        out.add(path, str(exc))
        return
    if not 0.001 <= seconds <= MAX_TIMEOUT:
        out.add(path, f"{value!r} is outside 1ms..1h")


def check_regex(value: Any, path: str, out: Problems) -> None:
    if not isinstance(value, str):
        out.add(path, f"expected a string, got {type_name(value)}")
        return
    if len(value) > MAX_REGEX:
        out.add(path, f"a regex may have at most {MAX_REGEX} characters")
        return
    try:
        re.compile(value)
    except re.error as exc:
        out.add(path, f"{value!r} is not a valid regex: {exc}")


def check_list(item: Checker, most: int, *, least: int = 0) -> Checker:
    def check(value: Any, path: str, out: Problems) -> None:
        if not isinstance(value, list):
            out.add(path, f"expected a list, got {type_name(value)}")
            return
        if len(value) > most:
            out.add(path, f"at most {most} items, not {len(value)}")
        if len(value) < least:
            out.add(path, f"needs at least {least} item{'s' if least > 1 else ''}")
        for i, v in enumerate(value):
            item(v, f"{path}[{i}]", out)

    return check


def check_one_of(value: dict[str, Any], path: str, out: Problems, operators: Sequence[str]) -> None:
    given = [op for op in operators if op in value]
    if len(given) != 1:
        out.add(path, f"needs exactly one of {', '.join(operators)} (got {len(given)})")


# -- matches --------------------------------------------------------------------------------

_PATH_OPS = ("exact", "prefix", "segmentPrefix", "regex")
_VALUE_OPS = ("exact", "prefix", "regex", "present", "absent")


def _path(value: Any, path: str, out: Problems) -> None:
    def starts_with_slash(v: Any, p: str, o: Problems) -> None:
        if not isinstance(v, str) or not v.startswith("/"):
            o.add(p, f"{v!r} must be a string starting with '/'")

    fields = {
        "exact": starts_with_slash,
        "prefix": starts_with_slash,
        "segmentPrefix": starts_with_slash,
        "regex": check_regex,
    }
    if check_object(value, path, out, fields):
        check_one_of(value, path, out, _PATH_OPS)


def _value_match(header: bool) -> Checker:
    def check(value: Any, path: str, out: Problems) -> None:
        name_check = check_string(TOKEN, "a header name") if header else check_string()
        fields = {
            "name": name_check,
            "exact": check_string(),
            "prefix": check_string(),
            "regex": check_regex,
            "present": check_boolean,
            "absent": check_boolean,
        }
        if check_object(value, path, out, fields, required=("name",)):
            check_one_of(value, path, out, _VALUE_OPS)
            for flag in ("present", "absent"):
                if value.get(flag) is False:
                    out.add(f"{path}.{flag}", "only 'true' is meaningful here")

    return check


def _method(value: Any, path: str, out: Problems) -> None:
    methods = [value] if isinstance(value, str) else value
    if not isinstance(methods, list) or not methods:
        out.add(path, "expected a method such as 'GET' or a list of them")
        return
    for i, m in enumerate(methods):
        if not isinstance(m, str) or not _METHOD.match(m):
            where = path if isinstance(value, str) else f"{path}[{i}]"
            out.add(where, f"{m!r} is not an HTTP method (upper case, such as GET)")


def check_match(depth: int) -> Checker:
    def check(value: Any, path: str, out: Problems) -> None:
        if depth > MAX_DEPTH:
            out.add(path, f"matches nest at most {MAX_DEPTH} deep")
            return
        nested = check_match(depth + 1)
        fields: dict[str, Checker] = {
            "method": _method,
            "path": _path,
            "headers": check_list(_value_match(True), MAX_FIELDS),
            "query": check_list(_value_match(False), MAX_FIELDS),
            "all": check_list(nested, MAX_MATCHES, least=1),
            "any": check_list(nested, MAX_MATCHES, least=1),
            "not": nested,
        }
        check_object(value, path, out, fields)

    return check
