"""Strict JSON for request bodies: the document a client sends is data, never a way in.

Refused, naming the place in the document where it could be named:
- nesting deeper than MAX_DEPTH arrays/objects (checked before parsing, so a body of a
  million `[` costs one C-speed scan, not a RecursionError and a 500);
- `NaN`, `Infinity`, `-Infinity` (Python's json takes them, JSON does not) and numbers a
  float cannot hold (`1e999` would silently become infinity);
- integers longer than MAX_INT_DIGITS (Python refuses past 4300 digits with a ValueError
  that would otherwise escape as a 500);
- text that is not UTF-8.
"""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate
from typing import Any

MAX_DEPTH = 32
MAX_INT_DIGITS = 40

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = [0] * 256
for _open in b"[{":
    _STEP[_open] = 1
for _close in b"]}":
    _STEP[_close] = -1


class JSONRejected(ValueError):
    """The body is not a JSON document Weft takes; `field` is where, if it can be told."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class _Bad:
    """A number the document spelled but JSON (or a float) cannot carry; found after parsing."""

    __slots__ = ("problem",)

    def __init__(self, problem: str) -> None:
        self.problem = problem


def nesting_depth(body: bytes) -> int:
    """The deepest array/object nesting in `body` (brackets inside strings do not count)."""
    brackets = _STRING.sub(b"", body).translate(None, _NOT_BRACKET)
    if len(brackets) <= 2 * MAX_DEPTH:
        return _small_depth(brackets)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def _small_depth(brackets: bytes) -> int:
    depth = deepest = 0
    for b in brackets:
        depth += _STEP[b]
        deepest = max(deepest, depth)
    return deepest


def _float(text: str) -> Any:
    value = float(text)
    return value if math.isfinite(value) else _Bad(f"{text[:24]} is too large to be a number")


def _int(text: str) -> Any:
    if len(text) <= MAX_INT_DIGITS:
        return int(text)
    return _Bad(f"an integer of {len(text)} digits is too long (at most {MAX_INT_DIGITS})")


def loads(body: bytes) -> Any:
    """The document in `body`, or JSONRejected saying what is wrong and where."""
    try:
        # json.loads(bytes) would also guess UTF-16 and UTF-32; JSON on the wire is UTF-8.
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise JSONRejected("request body is not UTF-8 text") from None
    if nesting_depth(body) > MAX_DEPTH:
        raise JSONRejected(f"request body nests arrays/objects deeper than {MAX_DEPTH} levels")
    found: list[_Bad] = []

    def bad(text: str) -> _Bad:
        marker = _Bad(f"{text} is not a number JSON allows (use a finite number)")
        found.append(marker)
        return marker

    def number(parse: Any) -> Any:
        def hook(text: str) -> Any:
            value = parse(text)
            if isinstance(value, _Bad):
                found.append(value)
            return value

        return hook

    try:
        doc = json.loads(
            text, parse_constant=bad, parse_float=number(_float), parse_int=number(_int)
        )
    except json.JSONDecodeError as exc:
        raise JSONRejected(
            f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:  # unreachable past the depth check; kept so it can never be a 500
        raise JSONRejected(f"request body nests deeper than {MAX_DEPTH} levels") from None
    if found:
        # A refused number may have been overwritten by a repeated key: then name no field.
        path, marker = _find(doc) or ("", found[0])
        raise JSONRejected(
            f"{path or 'body'}: {marker.problem}",
            field=path or None,
        )
    return doc


def _find(doc: Any, path: str = "") -> tuple[str, _Bad] | None:
    """Where the first refused number is (the document is at most MAX_DEPTH deep)."""
    if isinstance(doc, _Bad):
        return path, doc
    items: Any = ()
    if isinstance(doc, dict):
        items = ((f"{path}.{k}" if path else str(k), v) for k, v in doc.items())
    elif isinstance(doc, list):
        items = ((f"{path}[{i}]", v) for i, v in enumerate(doc))
    for where, value in items:
        if isinstance(value, _Bad | dict | list):
            hit = _find(value, where)
            if hit is not None:
                return hit
    return None
