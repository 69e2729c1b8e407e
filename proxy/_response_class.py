"""Which responses count as failures: a route's response classes. Pure.

Classes are tried in order and the first whose status range holds the status decides
(ServiceProfile's `responseClasses`); with none matching, 5xx is a failure and everything
else a success (Linkerd's default). A class with one bound matches exactly that code (the
docs' promise that Linkerd itself breaks: see the reference notes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ResponseClass:
    low: int
    high: int
    failure: bool


def is_failure(classes: Sequence[ResponseClass], status: int) -> bool:
    for cls in classes:
        if cls.low <= status <= cls.high:
            return cls.failure
    return status >= 500
