"""Decoding request bodies against a declared shape, with errors that name the field.

Consul matches JSON keys case-insensitively (py-consul sends `name`, the Go client `Name`), so
the decoder can fold case; Weft's native API is exact. Unknown fields are errors: a typo like
`Prot` must not silently register a service without its port.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._errors import InvalidInput
from ._numbers import parse_duration as parse_duration
from ._numbers import parse_number


@dataclass(frozen=True)
class F:
    """One field: its kind, a nested shape for objects, and whether Weft ignores it."""

    kind: str  # str int bool float duration strlist strmap listmap anymap obj objlist any
    shape: Mapping[str, F] | None = None
    ignored: bool = False


_TYPE_NAMES = {
    bool: "a boolean",
    int: "a number",
    float: "a number",
    str: "a string",
    list: "a list",
    dict: "an object",
    type(None): "null",
}


def _type_name(value: Any) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _fail(path: str, message: str) -> InvalidInput:
    return InvalidInput(f"{path}: {message}", field=path)


def decode(
    data: Any, shape: Mapping[str, F], *, path: str = "", fold_case: bool = False
) -> dict[str, Any]:
    """Check `data` against `shape`; return {canonical name: converted value} of what is set."""
    where = path or "body"
    if not isinstance(data, dict):
        raise _fail(where, f"expected a JSON object, got {_type_name(data)}")
    by_folded = {name.lower(): name for name in shape} if fold_case else None
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = (
            by_folded.get(key.lower()) if by_folded is not None else (key if key in shape else None)
        )
        field_path = f"{path}.{name or key}" if path else (name or key)
        if name is None:
            known = ", ".join(sorted(shape))
            raise _fail(field_path, f"unknown field; known fields are: {known}")
        if name in out:
            raise _fail(field_path, "given twice (keys are matched without regard to case)")
        spec = shape[name]
        if value is None or spec.ignored:
            continue
        out[name] = _convert(value, spec, field_path, fold_case)
    return out


def _convert(value: Any, spec: F, path: str, fold_case: bool) -> Any:
    kind = spec.kind
    if kind == "any":
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise _fail(path, f"expected a string, got {_type_name(value)}")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise _fail(path, f"expected true or false, got {_type_name(value)}")
        return value
    if kind in ("int", "float"):
        return parse_number(value, path, integer=kind == "int", text=False)
    if kind == "duration":
        return parse_duration(value, path)
    if kind == "strlist":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _fail(path, "expected a list of strings")
        return list(value)
    if kind == "strmap":
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise _fail(path, "expected an object of string values")
        return dict(value)
    if kind == "listmap":  # HTTP headers: {"Name": ["v1", "v2"]}
        if not isinstance(value, dict) or not all(
            isinstance(v, list) and all(isinstance(i, str) for i in v) for v in value.values()
        ):
            raise _fail(path, 'expected an object of string lists, like {"X-A": ["1"]}')
        return {k: tuple(v) for k, v in value.items()}
    if kind == "anymap":
        if not isinstance(value, dict):
            raise _fail(path, f"expected an object, got {_type_name(value)}")
        return dict(value)
    if kind == "obj":
        assert spec.shape is not None
        return decode(value, spec.shape, path=path, fold_case=fold_case)
    if kind == "objlist":
        assert spec.shape is not None
        if not isinstance(value, list):
            raise _fail(path, f"expected a list, got {_type_name(value)}")
        return [
            decode(v, spec.shape, path=f"{path}[{i}]", fold_case=fold_case)
            for i, v in enumerate(value)
        ]
    raise AssertionError(f"unknown field kind {kind}")
