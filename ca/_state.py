"""The CA's stored state: one JSON document, certificates in the clear, private keys sealed.

Layout (format "weft-ca-state/1"):

    {"format": "weft-ca-state/1",
     "trust_domain": "weft.example.com",
     "roots": [                                  # the active root first, then retiring ones
       {"id": "<sha256 of the root certificate, hex>",
        "status": "active" | "retiring",
        "origin": "generated" | "imported",
        "certificate": "<root PEM>",
        "chain": ["<signing intermediate PEM>", ...],   # what a leaf presents after itself
        "signing_key": {"kek_id", "nonce", "ciphertext"} | null,   # the intermediate's key
        "root_key": {"kek_id", "nonce", "ciphertext"} | null,      # null: offline or imported
        "issued_until": "<RFC 3339>",            # no certificate under this root expires later
        "retired_at": "<RFC 3339>" | null}]}

A retiring root keeps only what verifying needs: its signing and root keys are dropped at
rotation, and the root itself when `issued_until` has passed (see _rotation.py).
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from ._errors import CorruptState
from ._identity import check_trust_domain
from ._kek import Sealed

FORMAT = "weft-ca-state/1"


class RootStatus(enum.Enum):
    ACTIVE = "active"
    RETIRING = "retiring"


class Origin(enum.Enum):
    GENERATED = "generated"
    IMPORTED = "imported"


def signing_key_context(trust_domain: str, root_id: str) -> str:
    return f"{FORMAT}|{trust_domain}|{root_id}|signing-key"


def root_key_context(trust_domain: str, root_id: str) -> str:
    return f"{FORMAT}|{trust_domain}|{root_id}|root-key"


@dataclass(frozen=True, slots=True)
class RootRecord:
    id: str
    status: RootStatus
    origin: Origin
    certificate_pem: str
    chain_pem: tuple[str, ...]
    signing_key: Sealed | None
    root_key: Sealed | None
    issued_until: datetime
    retired_at: datetime | None = None

    @property
    def drop_after(self) -> datetime | None:
        """When a retiring root may leave the bundle: once every leaf under it has expired."""
        return self.issued_until if self.status is RootStatus.RETIRING else None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status.value,
            "origin": self.origin.value,
            "certificate": self.certificate_pem,
            "chain": list(self.chain_pem),
            "signing_key": self.signing_key.to_json() if self.signing_key else None,
            "root_key": self.root_key.to_json() if self.root_key else None,
            "issued_until": _time_text(self.issued_until),
            "retired_at": _time_text(self.retired_at) if self.retired_at else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RootRecord:
        return cls(
            id=str(data["id"]),
            status=RootStatus(data["status"]),
            origin=Origin(data["origin"]),
            certificate_pem=str(data["certificate"]),
            chain_pem=tuple(str(c) for c in data["chain"]),
            signing_key=Sealed.from_json(data["signing_key"]) if data["signing_key"] else None,
            root_key=Sealed.from_json(data["root_key"]) if data["root_key"] else None,
            issued_until=_parse_time(data["issued_until"]),
            retired_at=_parse_time(data["retired_at"]) if data.get("retired_at") else None,
        )


@dataclass(frozen=True, slots=True)
class CAState:
    """Everything the CA keeps. Immutable: every change makes a new state, saved by CAS."""

    trust_domain: str
    roots: tuple[RootRecord, ...]

    def __post_init__(self) -> None:
        active = [r for r in self.roots if r.status is RootStatus.ACTIVE]
        if len(active) != 1 or self.roots[0] is not active[0]:
            raise CorruptState(
                f"the CA state must have exactly one active root, listed first; it has "
                f"{len(active)} active of {len(self.roots)}"
            )
        if len({r.id for r in self.roots}) != len(self.roots):
            raise CorruptState("the CA state lists the same root twice")

    @property
    def active(self) -> RootRecord:
        return self.roots[0]

    @property
    def retiring(self) -> tuple[RootRecord, ...]:
        return self.roots[1:]

    @property
    def root_key_offline(self) -> bool:
        return self.active.root_key is None

    def with_active(self, active: RootRecord) -> CAState:
        return replace(self, roots=(active, *self.retiring))

    def to_bytes(self) -> bytes:
        doc = {
            "format": FORMAT,
            "trust_domain": self.trust_domain,
            "roots": [r.to_json() for r in self.roots],
        }
        return json.dumps(doc, indent=1, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> CAState:
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CorruptState(f"the stored CA state is not JSON: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
            raise CorruptState(
                f"the stored CA state has format {found!r}; this version reads {FORMAT!r}"
            )
        try:
            trust_domain = check_trust_domain(str(doc["trust_domain"]))
            roots = tuple(RootRecord.from_json(r) for r in doc["roots"])
        except CorruptState:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptState(f"the stored CA state is malformed: {exc!r}") from exc
        return cls(trust_domain, roots)


def _time_text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_time(text: object) -> datetime:
    if not isinstance(text, str):
        raise ValueError(f"expected an RFC 3339 time, got {text!r}")
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"time {text!r} has no time zone")
    return moment
