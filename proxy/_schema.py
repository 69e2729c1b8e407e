"""A JSON Schema validator for the keywords the snapshot schema uses. Pure.

`jsonschema` would cost the proxy about 8 MB of memory (a sidecar's budget is 40 MB), so the
proxy checks `snapshot.schema.json` with this small validator instead. It implements exactly
the keywords the schema uses and refuses a schema with any other, so the schema cannot
silently outgrow it; a unit test checks it agrees with `jsonschema` on valid and broken
documents. Problems come back as `path: message` strings, e.g. `upstreams[0].port: ...`.
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from typing import Any

from ._errors import Bug

_ANNOTATIONS = frozenset({"$schema", "$id", "title", "description", "default", "$comment"})
_KEYWORDS = frozenset(
    {
        "$ref",
        "$defs",
        "type",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "enum",
        "const",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "pattern",
        "minItems",
        "maxItems",
    }
)
_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool))
        or (isinstance(v, float) and v.is_integer())
    ),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


class UnsupportedSchema(Bug):
    """The schema uses a keyword this validator does not implement."""


def _check_schema(schema: Any, where: str = "#") -> None:
    if not isinstance(schema, dict):
        raise UnsupportedSchema(f"{where}: a schema must be an object")
    for key, value in schema.items():
        if key in _ANNOTATIONS:
            continue
        if key not in _KEYWORDS:
            raise UnsupportedSchema(f"{where}: keyword {key!r} is not supported")
        if key in ("properties", "$defs"):
            for name, sub in value.items():
                _check_schema(sub, f"{where}/{key}/{name}")
        elif key == "items" or (key == "additionalProperties" and isinstance(value, dict)):
            _check_schema(value, f"{where}/{key}")
        elif key == "$ref" and not value.startswith("#/$defs/"):
            raise UnsupportedSchema(f"{where}: only local '#/$defs/...' references are supported")


class Validator:
    def __init__(self, schema: dict[str, Any]) -> None:
        _check_schema(schema)
        self._root = schema

    def errors(self, doc: Any) -> list[str]:
        out: list[str] = []
        self._validate(doc, self._root, "", out)
        return out

    def _validate(self, value: Any, schema: dict[str, Any], path: str, out: list[str]) -> None:
        where = path or "(document)"
        ref = schema.get("$ref")
        if ref is not None:
            self._validate(value, self._root["$defs"][ref[len("#/$defs/") :]], path, out)
        if "const" in schema and value != schema["const"]:
            out.append(f"{where}: must be {json.dumps(schema['const'])}")
            return
        if "enum" in schema and value not in schema["enum"]:
            choices = ", ".join(json.dumps(c) for c in schema["enum"])
            out.append(f"{where}: {json.dumps(value)} is not one of {choices}")
            return
        kind = schema.get("type")
        if kind is not None:
            kinds = kind if isinstance(kind, list) else [kind]
            if not any(_TYPES[k](value) for k in kinds):
                out.append(f"{where}: must be {' or '.join(kinds)}, not {_type_name(value)}")
                return
        if isinstance(value, bool):
            return
        if isinstance(value, int | float):
            if "minimum" in schema and value < schema["minimum"]:
                out.append(f"{where}: {value} is less than the minimum {schema['minimum']}")
            if "maximum" in schema and value > schema["maximum"]:
                out.append(f"{where}: {value} is more than the maximum {schema['maximum']}")
        elif isinstance(value, str):
            if "minLength" in schema and len(value) < schema["minLength"]:
                out.append(f"{where}: must have at least {schema['minLength']} characters")
            if "maxLength" in schema and len(value) > schema["maxLength"]:
                out.append(f"{where}: must have at most {schema['maxLength']} characters")
            if "pattern" in schema and not _pattern(schema["pattern"]).search(value):
                out.append(f"{where}: {value[:80]!r} does not match {schema['pattern']}")
        elif isinstance(value, list):
            if "minItems" in schema and len(value) < schema["minItems"]:
                out.append(f"{where}: must have at least {schema['minItems']} items")
            if "maxItems" in schema and len(value) > schema["maxItems"]:
                out.append(f"{where}: must have at most {schema['maxItems']} items")
            items = schema.get("items")
            if items is not None:
                for i, item in enumerate(value):
                    self._validate(item, items, f"{path}[{i}]", out)
        elif isinstance(value, dict):
            for name in schema.get("required", ()):
                if name not in value:
                    out.append(f"{_join(path, name)}: is required")
            props = schema.get("properties", {})
            extra = schema.get("additionalProperties", True)
            for name, item in value.items():
                if name in props:
                    self._validate(item, props[name], _join(path, name), out)
                elif extra is False:
                    known = ", ".join(sorted(props))
                    out.append(f"{_join(path, name)}: unknown field (known: {known})")
                elif isinstance(extra, dict):
                    self._validate(item, extra, _join(path, name), out)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


@cache
def _pattern(text: str) -> re.Pattern[str]:
    return re.compile(text)


@cache
def snapshot_schema() -> dict[str, Any]:
    """The snapshot's JSON Schema, shipped as package data (`proxy/snapshot.schema.json`)."""
    text = resources.files("proxy").joinpath("snapshot.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def snapshot_validator() -> Validator:
    return Validator(snapshot_schema())
