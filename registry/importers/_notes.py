"""What an importer says about a document: warnings (a field not honoured, refused under
`--strict`), notes (a faithful translation whose behaviour differs on purpose, e.g. Istio's
implicit retries made explicit and safe) and problems (the document cannot be imported).
It also carries how the document's names resolve (its namespace and the caller's naming),
since it is the one object every importer function is handed for a document."""

from __future__ import annotations

from dataclasses import dataclass, field

from ._names import Naming, service_of


@dataclass
class Notes:
    who: str  # "VirtualService reviews"
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    namespace: str | None = None  # the document's metadata.namespace
    naming: Naming | None = None

    def service(self, host: object, namespace: str | None = None) -> str | None:
        """The registry service `host` names, read in `namespace` or the document's."""
        return service_of(host, namespace or self.namespace, self.naming)

    def ignored(self, path: str, why: str = "is not supported and is ignored") -> None:
        self.warnings.append(f"{self.who}: {path} {why}")

    def note(self, path: str, text: str) -> None:
        self.notes.append(f"{self.who}: {path}: {text}")

    def problem(self, path: str, text: str) -> None:
        self.problems.append(f"{self.who}: {path}: {text}")

    def unknown(self, value: object, path: str, known: set[str]) -> None:
        """Warn once per field of `value` that the importer does not read."""
        if isinstance(value, dict):
            for key in value:
                if key not in known:
                    self.ignored(f"{path}.{key}" if path else str(key))
