"""The one parser of numbers and durations: request bodies, query parameters, configuration
files, environment variables and flags all come through here.

    parse_number(value, field)     a finite number; integer=True for whole numbers
    parse_duration(value, field)   seconds from '1m30s', '500ms', '10' or a JSON number
    parse_index(raw, field)        a blocking query's `index` (ASCII digits, int64)
    parse_wait(raw, field, ...)    a blocking query's `wait` (a duration, capped)

Refused, with an InvalidNumber naming the field: NaN and infinities (in any spelling, and
`1e999`, which a float parser turns into infinity), values outside the range the caller
gives (negative by default), booleans where a number is meant (JSON `true` is not 1),
strings where a JSON number is meant, objects and lists, and text that is not plain ASCII
decimal (`int()` alone would take '١٢', '+5', ' 5' and '1_000').
"""

from __future__ import annotations

import math
import re
from typing import Any

from ._errors import InvalidNumber

# Go's time.Duration is an int64 of nanoseconds: about 292 years. Consul refuses longer ones.
MAX_DURATION = (2**63 - 1) / 1e9
MAX_INT = 2**63 - 1
_MAX_TEXT = 64  # longer number text is refused before any regex or float() sees it

_INTEGER = re.compile(r"-?[0-9]{1,20}\Z")
_DECIMAL = re.compile(r"-?[0-9]{1,20}(\.[0-9]{1,20})?([eE][-+]?[0-9]{1,4})?\Z")
_PART = re.compile(r"([0-9]{1,20}(?:\.[0-9]{1,20})?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _fail(field: str, message: str) -> InvalidNumber:
    return InvalidNumber(f"{field}: {message}" if field else message, field=field or None)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _what(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return type(value).__name__


def parse_number(
    value: Any,
    field: str = "",
    *,
    integer: bool = False,
    minimum: float | None = 0,
    maximum: float | None = None,
    text: bool = True,
) -> Any:
    """A finite number from a JSON/TOML number or (with `text`) plain decimal text."""
    kind = "a whole number" if integer else "a number"
    if isinstance(value, str) and text:
        if len(value) > _MAX_TEXT or not (_INTEGER if integer else _DECIMAL).match(value):
            raise _fail(field, f"{_shown(value)} is not {kind}")
        number: float | int = int(value) if integer else float(value)
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(field, f"expected a number, got {_what(value)}")
    else:
        number = value
    if isinstance(number, float):
        if not math.isfinite(number):
            raise _fail(field, f"{_shown(value)} is not a finite number")
        if integer:
            if not number.is_integer():
                raise _fail(field, f"expected a whole number, got {number}")
            number = int(number)
    if minimum is not None and number < minimum:
        if minimum == 0:
            raise _fail(field, f"{_shown(value)} is negative; it must be 0 or more")
        raise _fail(field, f"{_shown(value)} is below the minimum of {minimum:g}")
    if maximum is not None and number > maximum:
        raise _fail(field, f"{_shown(value)} is above the maximum of {maximum:g}")
    if integer and abs(number) > MAX_INT:
        raise _fail(field, f"{_shown(value)} does not fit in 64 bits")
    return number


def parse_duration(value: Any, field: str = "", *, maximum: float = MAX_DURATION) -> float:
    """Seconds from a Go-style duration ('1m30s', '500ms', '10s'), bare decimal text ('10')
    or a JSON/TOML number of seconds; never negative, never past `maximum`."""
    if isinstance(value, str):
        if not value or len(value) > _MAX_TEXT:
            raise _fail(field, f"{_shown(value)} is not a duration (examples: '10s', '1m30s')")
        if value.startswith("-"):
            raise _fail(field, f"{_shown(value)} is a negative duration")
        if _DECIMAL.match(value):
            seconds = float(value)
        else:
            pos, seconds = 0, 0.0
            for match in _PART.finditer(value):
                if match.start() != pos:
                    break
                seconds += float(match.group(1)) * _UNITS[match.group(2)]
                pos = match.end()
            if pos != len(value):
                raise _fail(
                    field,
                    f"{_shown(value)} is not a duration (examples: '10s', '1m30s', '500ms')",
                )
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(
            field, f"expected a duration ('10s') or a number of seconds, got {_what(value)}"
        )
    else:
        try:
            seconds = float(value)
        except OverflowError:  # an int past 1e308
            raise _fail(
                field, f"{_shown(value)} is longer than the maximum of {maximum:g}s"
            ) from None
    if not math.isfinite(seconds):
        raise _fail(field, f"{_shown(value)} is not a finite duration")
    if seconds < 0:
        raise _fail(field, f"{_shown(value)} is a negative duration")
    if seconds > maximum:
        raise _fail(field, f"{_shown(value)} is longer than the maximum of {maximum:g}s")
    return seconds


def parse_index(raw: str, field: str = "index") -> int:
    """A blocking query's index (an etcd revision): ASCII digits, 0 to 2**63-1."""
    if len(raw) > 19 or not raw.isascii() or not raw.isdigit():
        raise _fail(field, f"{_shown(raw)} is not a non-negative integer")
    return int(parse_number(raw, field, integer=True, maximum=MAX_INT))


def parse_wait(raw: str | None, field: str = "wait", *, default: float, maximum: float) -> float:
    """A blocking query's wait: a duration; longer ones are cut to `maximum` (as Consul does)."""
    if raw is None or raw == "":
        return default
    return min(parse_duration(raw, field), maximum)
