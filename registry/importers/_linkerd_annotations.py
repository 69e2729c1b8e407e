"""Linkerd's retry and timeout annotations on an HTTPRoute (`retry.linkerd.io/*`,
`timeout.linkerd.io/*`, Linkerd 2.16+), as the rule fields they stand for. Pure.

Linkerd's semantics kept: the annotations apply to every rule of the route and win over the
route's own `timeouts` and `retry`; `retry.linkerd.io/limit` is 1 unless set; a request that
times out per try (`retry.linkerd.io/timeout`) is retried. The route's author asked for the
retries, so they apply to any method, as in Linkerd (bodies over 64 KiB are never retried).
"""

from __future__ import annotations

import re
from typing import Any

from ._notes import Notes

_RANGE = re.compile(r"^(\d{3})(?:-(\d{3}))?$")
_MOST_CONDITIONS = 16  # Weft's most per rule


def _codes(text: str, where: str, notes: Notes) -> list[Any]:
    out: list[Any] = []
    for token in (t.strip() for t in text.split(",")):
        if token in ("5xx", "gateway-error"):
            out.append(token)
            continue
        m = _RANGE.match(token)
        if m is None:
            notes.ignored(where, f"value {token!r} is not a status, a range, 5xx or gateway-error")
            continue
        low, high = int(m[1]), int(m[2] or m[1])
        if (low, high) == (500, 599):
            out.append("5xx")
        else:
            out.extend(range(low, high + 1))
    unique = list(dict.fromkeys(out))
    if len(unique) > _MOST_CONDITIONS:
        notes.ignored(where, f"lists {len(unique)} statuses: only the first 16 are retried")
    return unique[:_MOST_CONDITIONS]


def rule_policy(annotations: Any, notes: Notes) -> dict[str, Any]:
    """The rule fields the route's Linkerd annotations set (empty if it has none)."""
    if not isinstance(annotations, dict):
        return {}
    out: dict[str, Any] = {}
    where = "metadata.annotations"
    for key, value in annotations.items():
        if not str(key).startswith(("retry.linkerd.io/", "timeout.linkerd.io/")):
            continue
        name = str(key).split("/", 1)[1]
        if key.startswith("timeout.") and name == "request":
            out["timeout"] = str(value)
        elif key.startswith("timeout.") and name == "response":
            out["perTryTimeout"] = str(value)
        elif key.startswith("retry.") and name in ("http", "limit", "timeout"):
            continue  # below, together
        else:
            notes.ignored(f"{where}.{key}")
    http = annotations.get("retry.linkerd.io/http")
    per_try = annotations.get("retry.linkerd.io/timeout")
    if http is not None or per_try is not None:
        retry_on = _codes(str(http), f"{where}.retry.linkerd.io/http", notes) if http else []
        if per_try is not None:
            out["perTryTimeout"] = str(per_try)  # a retry's own limit, and retried after it
            retry_on.append("timeout")
        try:
            limit = int(str(annotations.get("retry.linkerd.io/limit", "1")))
        except ValueError:
            notes.problem(f"{where}.retry.linkerd.io/limit", "is not a whole number")
            limit = 1
        if retry_on:
            out["retries"] = {
                "attempts": max(0, min(limit, 10)),
                "retryOn": retry_on,
                "nonIdempotent": True,
            }
    elif "retry.linkerd.io/limit" in annotations:
        notes.ignored(
            f"{where}.retry.linkerd.io/limit", "is ignored: no retry.linkerd.io/http says what"
        )
    return out
