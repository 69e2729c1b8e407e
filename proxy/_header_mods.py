"""Request and response header changes a route asks for: set, add, remove. Pure.

`set` replaces every field of that name, `add` appends one more, `remove` drops them. Names
are compared case-insensitively; hop-by-hop headers and the proxy's own `x-weft-*` headers
cannot be touched (the registry refuses them too), so a route cannot break framing or forge
an identity.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PROTECTED = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "host",
    }
)


def check_header_name(name: str) -> None:
    lowered = name.lower()
    if lowered in PROTECTED or lowered.startswith("x-weft-"):
        raise ValueError(f"header {name!r} is managed by the proxy and cannot be changed")


@dataclass(frozen=True, slots=True)
class HeaderMods:
    set: tuple[tuple[bytes, bytes], ...] = ()
    add: tuple[tuple[bytes, bytes], ...] = ()
    remove: frozenset[bytes] = field(default_factory=frozenset)

    @property
    def empty(self) -> bool:
        return not (self.set or self.add or self.remove)

    @property
    def dropped(self) -> frozenset[bytes]:
        """Lower-case names whose existing fields go (removed, or replaced by `set`)."""
        return self.remove | frozenset(n.lower() for n, _ in self.set)

    @property
    def added(self) -> list[tuple[bytes, bytes]]:
        return [*self.set, *self.add]


def build_mods(doc: dict[str, object] | None) -> HeaderMods:
    """From `{"set": {name: value}, "add": {name: value}, "remove": [name]}`; ValueError if bad."""
    if not doc:
        return HeaderMods()
    out: dict[str, list[tuple[bytes, bytes]]] = {"set": [], "add": []}
    for kind in ("set", "add"):
        values = doc.get(kind) or {}
        assert isinstance(values, dict)
        for name, value in values.items():
            check_header_name(name)
            out[kind].append((name.encode("latin-1"), str(value).encode("latin-1")))
    removed = doc.get("remove") or []
    assert isinstance(removed, list)
    for name in removed:
        check_header_name(name)
    return HeaderMods(
        tuple(out["set"]),
        tuple(out["add"]),
        frozenset(n.lower().encode("latin-1") for n in removed),
    )


def apply_to(
    headers: list[tuple[bytes, bytes, bytes]], mods: HeaderMods
) -> list[tuple[bytes, bytes, bytes]]:
    """A head's (lower name, name, value) list with the changes made."""
    if mods.empty:
        return headers
    dropped = mods.dropped
    kept = [h for h in headers if h[0] not in dropped]
    kept.extend((n.lower(), n, v) for n, v in mods.added)
    return kept


def apply_to_pairs(
    headers: list[tuple[bytes, bytes]], mods: HeaderMods
) -> list[tuple[bytes, bytes]]:
    """An HTTP/2 header list's (lower name, value) pairs with the changes made; pseudo-headers
    (`:status`) are never dropped and stay first."""
    if mods.empty:
        return headers
    dropped = mods.dropped
    kept = [h for h in headers if h[0][:1] == b":" or h[0] not in dropped]
    kept.extend((n.lower(), v) for n, v in mods.added)
    return kept
