"""What an agent pushes to `POST /v1/metrics/push`, checked before anything is stored.

An agent reads its proxies' `/metrics` every few seconds and pushes their cumulative counters
as one compact document per node:

    {"lease": "<the agent's lease, hex>",
     "proxies": [{"service": "api", "instance": "api-1", "identity": "spiffe://...",
                  "admin": "127.0.0.1:15000", "started": 1733390000.1,
                  "le": [0.0001, ..., 10.0],
                  "http": [[direction, peer, route, status_class, sum_seconds,
                            [cumulative bucket counts, one per `le` and one for +Inf]]],
                  "open": [[direction, open connections now]],
                  "peer_ids": [[direction, peer, spiffe id]]}]}

Everything is bounded here (proxies per node, series per proxy, bucket count, string
lengths, the encoded size), numbers must be finite non-negative integers (sums finite
non-negative floats) and bucket counts must not decrease, so an agent sending garbage gets a
400 naming the field and cannot grow what servers store or hold. Pure: no I/O.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from ._errors import InvalidInput, PayloadTooLarge
from ._validate import identity as check_identity
from ._validate import instance_id, service_name

MAX_PROXIES = 64
MAX_SERIES = 512
MAX_BUCKETS = 32
MAX_COUNT = 2**53  # exact in a float, which is what JSON readers elsewhere may use
DIRECTIONS = ("inbound", "outbound")
CLASSES = ("error", "1xx", "2xx", "3xx", "4xx", "5xx")
_LABEL = re.compile(r"[A-Za-z0-9._:@/-]{1,128}")
_ADDRESS = re.compile(r"[A-Za-z0-9.:\[\]-]{1,64}")


@dataclass(frozen=True)
class PushLimits:
    sample_bytes: int = 64 << 10  # the stored document, encoded


def _fail(field: str, message: str) -> InvalidInput:
    return InvalidInput(f"{field}: {message}", field=field)


def _obj(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(field, "expected an object")
    return value


def _list(value: Any, field: str, limit: int) -> list[Any]:
    if not isinstance(value, list):
        raise _fail(field, "expected a list")
    if len(value) > limit:
        raise _fail(field, f"at most {limit} entries, got {len(value)}")
    return value


def _count(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise _fail(field, f"expected a whole number from 0 to 2^53, got {value!r:.40}")
    return value


def _seconds(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(field, f"expected a number, got {value!r:.40}")
    number = float(value)
    if not math.isfinite(number) or not 0 <= number <= MAX_COUNT:
        raise _fail(field, f"expected a number from 0 to 2^53, got {value!r:.40}")
    return number


def _label(value: Any, field: str) -> str:
    if not isinstance(value, str) or not _LABEL.fullmatch(value):
        raise _fail(field, f"expected 1-128 of [A-Za-z0-9._:@/-], got {value!r:.60}")
    return value


def _choice(value: Any, field: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise _fail(field, f"expected one of {', '.join(choices)}, got {value!r:.40}")
    return str(value)


def _bounds(value: Any, field: str) -> list[float]:
    bounds = [_seconds(v, f"{field}[{i}]") for i, v in enumerate(_list(value, field, MAX_BUCKETS))]
    if any(b <= a for a, b in itertools.pairwise(bounds)) or (bounds and bounds[0] <= 0):
        raise _fail(field, "bucket bounds must be positive and strictly increasing")
    return bounds


def _series(value: Any, field: str, buckets: int) -> list[Any]:
    row = _list(value, field, 6)
    if len(row) != 6:
        raise _fail(field, "expected [direction, peer, route, status_class, sum, buckets]")
    counts = _list(row[5], f"{field}[5]", MAX_BUCKETS + 1)
    if len(counts) != buckets:
        raise _fail(f"{field}[5]", f"expected {buckets} cumulative counts (le and +Inf)")
    cumulative = [_count(c, f"{field}[5][{i}]") for i, c in enumerate(counts)]
    if any(b < a for a, b in itertools.pairwise(cumulative)):
        raise _fail(f"{field}[5]", "cumulative bucket counts must not decrease")
    return [
        _choice(row[0], f"{field}[0]", DIRECTIONS),
        _label(row[1], f"{field}[1]"),
        _label(row[2], f"{field}[2]"),
        _choice(row[3], f"{field}[3]", CLASSES),
        _seconds(row[4], f"{field}[4]"),
        cumulative,
    ]


def _proxy(value: Any, field: str) -> dict[str, Any]:
    raw = _obj(value, field)
    unknown = set(raw) - {
        "service",
        "instance",
        "identity",
        "admin",
        "started",
        "le",
        "http",
        "open",
        "peer_ids",
    }
    if unknown:
        name = sorted(unknown)[0]
        raise _fail(f"{field}.{name}", "unknown field")
    le = _bounds(raw.get("le"), f"{field}.le")
    proxy: dict[str, Any] = {
        "service": service_name(_str(raw.get("service"), f"{field}.service"), f"{field}.service"),
        "instance": instance_id(
            _str(raw.get("instance"), f"{field}.instance"), f"{field}.instance"
        ),
        "started": _seconds(raw.get("started", 0), f"{field}.started"),
        "le": le,
    }
    if raw.get("identity"):
        proxy["identity"] = check_identity(
            _str(raw["identity"], f"{field}.identity"), f"{field}.identity"
        )
    if raw.get("admin"):
        admin = _str(raw["admin"], f"{field}.admin")
        if not _ADDRESS.fullmatch(admin):
            raise _fail(f"{field}.admin", f"expected host:port, got {admin!r:.60}")
        proxy["admin"] = admin
    series = _list(raw.get("http", []), f"{field}.http", MAX_SERIES)
    proxy["http"] = [_series(s, f"{field}.http[{i}]", len(le) + 1) for i, s in enumerate(series)]
    if proxy["http"] and not le:
        raise _fail(f"{field}.le", "expected the histogram's bucket bounds")
    opened = []
    for i, row in enumerate(_list(raw.get("open", []), f"{field}.open", 2)):
        pair = _list(row, f"{field}.open[{i}]", 2)
        if len(pair) != 2:
            raise _fail(f"{field}.open[{i}]", "expected [direction, count]")
        opened.append(
            [
                _choice(pair[0], f"{field}.open[{i}][0]", DIRECTIONS),
                _count(pair[1], f"{field}.open[{i}][1]"),
            ]
        )
    proxy["open"] = opened
    ids = []
    for i, row in enumerate(_list(raw.get("peer_ids", []), f"{field}.peer_ids", MAX_SERIES)):
        triple = _list(row, f"{field}.peer_ids[{i}]", 3)
        if len(triple) != 3:
            raise _fail(f"{field}.peer_ids[{i}]", "expected [direction, peer, identity]")
        ids.append(
            [
                _choice(triple[0], f"{field}.peer_ids[{i}][0]", DIRECTIONS),
                _label(triple[1], f"{field}.peer_ids[{i}][1]"),
                check_identity(
                    _str(triple[2], f"{field}.peer_ids[{i}][2]"), f"{field}.peer_ids[{i}][2]"
                ),
            ]
        )
    proxy["peer_ids"] = ids
    return proxy


def _str(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise _fail(field, "expected a string")
    return value


def decode_push(body: Any, limits: PushLimits) -> tuple[str, list[dict[str, Any]]]:
    """(lease hex, proxies) from a push body, every field checked; InvalidInput names the
    first field that is wrong."""
    raw = _obj(body, "body")
    unknown = set(raw) - {"lease", "proxies"}
    if unknown:
        name = sorted(unknown)[0]
        raise _fail(name, "unknown field")
    lease = raw.get("lease")
    if not isinstance(lease, str) or not re.fullmatch(r"[0-9a-f]{1,16}", lease):
        raise _fail("lease", "expected the agent's lease ID in hex")
    proxies = [
        _proxy(p, f"proxies[{i}]")
        for i, p in enumerate(_list(raw.get("proxies"), "proxies", MAX_PROXIES))
    ]
    seen: set[tuple[str, str]] = set()
    for i, p in enumerate(proxies):
        key = (p["service"], p["instance"])
        if key in seen:
            raise _fail(f"proxies[{i}].instance", f"{key[1]!r} of {key[0]!r} is listed twice")
        seen.add(key)
    return lease, proxies


def encode_sample(ts: float, proxies: list[dict[str, Any]], limits: PushLimits) -> bytes:
    """The stored document: the server's receive time and the checked proxies."""
    value = json.dumps({"ts": round(ts, 3), "proxies": proxies}, separators=(",", ":")).encode()
    if len(value) > limits.sample_bytes:
        raise PayloadTooLarge(
            f"proxies: the sample is {len(value)} bytes encoded, more than the server's "
            f"metrics_sample_bytes ({limits.sample_bytes})",
            field="proxies",
        )
    return value
