"""Which headers describe one connection, which may never be treated so, and which the proxy
alone may set. Pure.

RFC 9110 §7.6.1 lets a `Connection` header name further headers that are hop-by-hop, and a
proxy must remove them. Followed blindly that is a smuggling primitive: `Connection:
content-length` made the proxy drop the Content-Length but still forward the body, so the next
hop read the body as a new request. So one rule holds everywhere a head is rewritten:

- the fixed hop-by-hop set (`HOP_BY_HOP`) is always removed;
- further names listed in `Connection` are removed too, unless they are framing-critical
  (`FRAMING_CRITICAL`: Content-Length, Transfer-Encoding, Host); a message whose `Connection`
  names one of those is refused outright (400 for requests, 502 for responses) rather than
  "fixed", since the sender and the next hop would disagree on where it ends or whom it is for;
- framing headers are never in the set of removed names, whatever the caller asks.

Identity headers (`IDENTITY_HEADERS`) are the proxy's to set: on the inbound side whatever the
client sent under those names is stripped, including spellings that frameworks fold into the
same name (`X_Weft_Client_Id` becomes `HTTP_X_WEFT_CLIENT_ID` under WSGI/CGI, exactly like
`X-Weft-Client-Id`), and the proxy adds its own from the verified mTLS identity.
"""

from __future__ import annotations

from ._errors import HttpError

# Headers that describe one connection, never the message (RFC 9110 §7.6.1). Transfer-Encoding
# is one too, but the proxy forwards chunked bodies byte for byte, so the header goes with them.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"upgrade",
    }
)

# Headers that decide where a message ends (Content-Length, Transfer-Encoding) or whom it is
# for (Host). Removing any of them in transit changes how the next hop parses the stream.
FRAMING_CRITICAL = frozenset({b"content-length", b"transfer-encoding", b"host"})

# The header the inbound proxy sets from the caller's verified SPIFFE ID, and the identity
# headers of other meshes that applications ported from them may still trust (Linkerd's
# l5d-client-id, Envoy/Istio's x-forwarded-client-cert). None may come from a client.
CLIENT_ID = b"x-weft-client-id"
IDENTITY_HEADERS = frozenset({CLIENT_ID, b"l5d-client-id", b"x-forwarded-client-cert"})
assert all(b"client" in name for name in IDENTITY_HEADERS)  # strip_identity relies on it
# Every header in this namespace is reserved for the proxy (room for more identity fields).
_IDENTITY_PREFIX = b"x-weft-client-"

_TOKENS: dict[tuple[bytes, ...], frozenset[bytes]] = {}
_DROPPED: dict[frozenset[bytes], frozenset[bytes]] = {}
_CACHE_SIZE = 256


def connection_tokens(values: list[bytes]) -> frozenset[bytes]:
    """The lower-case tokens of a message's Connection headers (the few common values cached)."""
    key = tuple(values)
    found = _TOKENS.get(key)
    if found is not None:
        return found
    out = set()
    for value in values:
        for item in value.split(b","):
            item = item.strip().lower()
            if item:
                out.add(item)
    tokens = frozenset(out)
    if len(_TOKENS) < _CACHE_SIZE:
        _TOKENS[key] = tokens
    return tokens


def check_connection_tokens(tokens: frozenset[bytes], status: int) -> None:
    """Refuse a message whose Connection header names a framing-critical header."""
    named = tokens & FRAMING_CRITICAL
    if named:
        which = ", ".join(sorted(n.decode("latin-1") for n in named))
        raise HttpError(
            status,
            f"the Connection header names {which}: framing headers cannot be hop-by-hop "
            "(request smuggling risk)",
            label="connection_names_framing_header",
        )


def dropped_names(tokens: frozenset[bytes]) -> frozenset[bytes]:
    """The header names to remove when forwarding a message with these Connection tokens."""
    if not tokens:
        return HOP_BY_HOP
    found = _DROPPED.get(tokens)
    if found is None:
        found = (HOP_BY_HOP | tokens) - FRAMING_CRITICAL
        if len(_DROPPED) < _CACHE_SIZE:
            _DROPPED[tokens] = found
    return found


def is_identity_header(lname: bytes) -> bool:
    """Whether a (lower-case) header name is, or folds into, one the proxy alone sets."""
    if b"_" in lname:
        lname = lname.replace(b"_", b"-")
    return lname in IDENTITY_HEADERS or lname.startswith(_IDENTITY_PREFIX)


def strip_identity(headers: list[tuple[bytes, bytes, bytes]]) -> list[tuple[bytes, bytes, bytes]]:
    """`headers` without any identity header a client sent (the same list if there is none)."""
    # Every identity name contains "client": one substring search over the joined names is
    # the common case's whole cost (a quarter of checking each name).
    if b"client" not in b"\n".join([h[0] for h in headers]):
        return headers
    for lname, _, _ in headers:
        if is_identity_header(lname):
            return [h for h in headers if not is_identity_header(h[0])]
    return headers
