"""A route's path rewrite: the request target the upstream is sent. Pure.

Two forms, as the anchors write them. `prefix`: the path prefix the request matched is
replaced (Istio's `rewrite.uri`, Gateway API's `ReplacePrefixMatch`); a match entry with no
path prefix has the whole path replaced (Istio). A segment prefix (Gateway API's PathPrefix)
joins with exactly one `/` between the replacement and the rest (`/foo` -> `/xyz`:
`/foo/bar` -> `/xyz/bar`; `/` -> `/xyz`: `/bar` -> `/xyz/bar`). `full`: the whole path is
replaced (`ReplaceFullPath`). The query string is always kept.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rewrite:
    replacement: bytes
    full: bool = False
    matched: bytes = b""  # the path prefix of the match entry that took the request
    segments: bool = False  # `matched` is a segment prefix (join with one "/")

    def apply(self, target: bytes) -> bytes:
        path, sep, query = target.partition(b"?")
        if self.full or not self.matched or not path.startswith(self.matched):
            new = self.replacement
        elif self.segments:
            rest = path[len(self.matched) :].lstrip(b"/")
            base = self.replacement.rstrip(b"/")
            new = base + b"/" + rest if rest else (base or b"/")
        else:
            new = self.replacement + path[len(self.matched) :]
        return new + sep + query


def entry_prefix(entry: dict[str, object]) -> tuple[bytes, bool]:
    """The path prefix a snapshot match entry tests (and whether it is by segment)."""
    path = entry.get("path")
    if isinstance(path, dict):
        if isinstance(path.get("prefix"), str):
            return str(path["prefix"]).encode(), False
        if isinstance(path.get("segment_prefix"), str):
            return str(path["segment_prefix"]).encode(), True
    return b"", False
