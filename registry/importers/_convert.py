"""Which importer reads a document, and the result of reading a batch. Pure."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import _gateway_api, _istio, _istio_destination, _linkerd
from ._notes import Notes

Importer = Callable[[dict[str, Any], Notes], list[dict[str, Any]]]

_IMPORTERS: dict[tuple[str, str], Importer] = {
    ("linkerd.io/v1alpha2", "ServiceProfile"): _linkerd.convert,
    **{
        (f"networking.istio.io/{v}", "VirtualService"): _istio.convert_virtual_service
        for v in ("v1", "v1beta1", "v1alpha3")
    },
    **{
        (f"networking.istio.io/{v}", "DestinationRule"): _istio_destination.convert_destination_rule
        for v in ("v1", "v1beta1", "v1alpha3")
    },
    **{
        (f"gateway.networking.k8s.io/{v}", "HTTPRoute"): _gateway_api.convert_http_route
        for v in ("v1", "v1beta1")
    },
    **{
        (f"split.smi-spec.io/{v}", "TrafficSplit"): _gateway_api.convert_traffic_split
        for v in ("v1alpha4", "v1alpha3", "v1alpha2", "v1alpha1")
    },
}

KINDS = sorted({kind for _, kind in _IMPORTERS})


def is_foreign(doc: Any) -> bool:
    """A document of a kind some importer reads (a weft.dev/v1 one is not)."""
    return isinstance(doc, dict) and (doc.get("apiVersion"), doc.get("kind")) in _IMPORTERS


@dataclass
class Imported:
    docs: list[Any] = field(default_factory=list)  # Weft documents, in order
    sources: list[int] = field(default_factory=list)  # the input index each came from
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def convert(docs: Sequence[Any]) -> Imported:
    """Every foreign document as Weft documents; weft.dev/v1 documents pass unchanged."""
    result = Imported()
    for i, doc in enumerate(docs):
        if not is_foreign(doc):
            result.docs.append(doc)
            result.sources.append(i)
            continue
        name = (doc.get("metadata") or {}).get("name", "?")
        notes = Notes(f"{doc['kind']} {name}")
        try:
            made = _IMPORTERS[(doc["apiVersion"], doc["kind"])](doc, notes)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            # A malformed anchor document (a list where an object belongs...) is refused, named.
            notes.problem("(document)", f"cannot be read: {type(exc).__name__}: {exc}")
            made = []
        result.docs.extend(made)
        result.sources.extend([i] * len(made))
        result.warnings.extend(notes.warnings)
        result.notes.extend(notes.notes)
        result.problems.extend(notes.problems)
    return result
