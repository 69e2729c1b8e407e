"""What a health probe is pointed at, checked when the check is registered: a URL the HTTP
client can request, a host:port a socket can dial, headers that can be sent, a method, and
argv for an exec check. Anything accepted here the prober can run; what is not is a 400
naming the field (and a stored check that slips past anyway still only turns critical).

    host       an IPv4/IPv6 address, or a DNS name: at most 253 characters, labels of 1-63
               letters, digits, '-' or '_' not starting or ending with '-' (ASCII: an
               internationalised name is given in its xn-- form); one trailing '.' allowed
    http       http:// or https://, at most 2048 visible ASCII characters, a valid host,
               an optional port 1-65535, nothing the HTTP client itself refuses
    tcp        host:port or [v6]:port, port 1-65535 in ASCII digits
    method     an HTTP token of at most 16 characters (GET, HEAD, POST, ...)
    header     at most 32 names (HTTP tokens, at most 256 characters), at most 8 values each,
               each at most 4096 visible ASCII characters, spaces or tabs (no CR, LF, NUL)
    args       1-64 arguments of at most 4096 characters, none containing NUL, the first
               not empty
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

from ._errors import InvalidInput

_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]{0,4096}")
_VISIBLE = re.compile(r"[\x21-\x7e]{1,2048}")
_DIGITS = re.compile(r"[0-9]{1,5}")

MAX_HEADERS = 32
MAX_HEADER_VALUES = 8
MAX_ARGS = 64


def _fail(field: str, message: str) -> InvalidInput:
    return InvalidInput(f"{field}: {message}", field=field)


def _shown(value: str) -> str:
    return repr(value if len(value) <= 80 else value[:77] + "...")


def host(value: str, field: str) -> str:
    """An IP address or a DNS name the resolver will take (IDNA refuses labels over 63)."""
    bare = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    try:
        ipaddress.ip_address(bare)
        return value
    except ValueError:
        if bare is not value:
            raise _fail(field, f"{_shown(value)} is not an IPv6 address") from None
    name = value[:-1] if value.endswith(".") else value
    if not name or len(name) > 253:
        raise _fail(field, f"{_shown(value)}: a host name is 1-253 characters")
    for label in name.split("."):
        if not _LABEL.fullmatch(label):
            raise _fail(
                field,
                f"{_shown(value)}: the label {_shown(label)} is not 1-63 ASCII letters, digits, "
                "'-' or '_' (not starting or ending with '-')",
            )
    return value


def port_text(value: str, field: str, where: str) -> int:
    if not _DIGITS.fullmatch(value) or not 1 <= int(value) <= 65535:
        raise _fail(field, f"{where}: the port {_shown(value)} is not 1-65535")
    return int(value)


def http_url(value: str, field: str) -> str:
    if not _VISIBLE.fullmatch(value):
        raise _fail(
            field,
            f"{_shown(value)} is not a URL of 1-2048 visible ASCII characters (no spaces or "
            "control characters; percent-encode anything else)",
        )
    try:
        url = urlsplit(value)
    except ValueError as exc:  # "Invalid IPv6 URL"
        raise _fail(field, f"{_shown(value)} is not a URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.netloc:
        raise _fail(field, f"{_shown(value)} is not an http:// or https:// URL")
    # urlsplit leaves the port as text and raises only when asked; ask now, not in the prober.
    hostport = url.netloc.rpartition("@")[2]
    if hostport.startswith("["):
        bracket = hostport.find("]")
        host_part, rest = hostport[: bracket + 1], hostport[bracket + 1 :]
    else:
        host_part, _, port_part = hostport.partition(":")
        rest = f":{port_part}" if ":" in hostport else ""
    if rest:
        if not rest.startswith(":"):
            raise _fail(field, f"{_shown(value)}: unexpected {_shown(rest)} after the host")
        port_text(rest[1:], field, _shown(value))
    host(host_part, field)
    # httpx is loaded here, not at import: `weft proxy` parses durations through the
    # registry's validation and must not carry httpx and its CLI (~5 MB) in every sidecar.
    import httpx

    try:
        httpx.URL(value)
    except (httpx.InvalidURL, ValueError, UnicodeError) as exc:
        raise _fail(field, f"{_shown(value)} is not a URL the prober can request: {exc}") from None
    return value


def tcp_address(value: str, field: str) -> str:
    host_part, sep, port_part = value.rpartition(":")
    if not sep or not host_part:
        raise _fail(field, f"{_shown(value)} is not host:port")
    port_text(port_part, field, _shown(value))
    if ":" in host_part and not host_part.startswith("["):
        raise _fail(field, f"{_shown(value)}: write an IPv6 address in brackets, [::1]:80")
    host(host_part, field)
    return value


def method(value: str, field: str) -> str:
    if not _TOKEN.fullmatch(value) or len(value) > 16:
        raise _fail(field, f"{_shown(value)} is not an HTTP method (like GET or HEAD)")
    return value.upper()


def headers(values: Mapping[str, Sequence[str]], field: str) -> dict[str, tuple[str, ...]]:
    if len(values) > MAX_HEADERS:
        raise _fail(field, f"at most {MAX_HEADERS} headers, got {len(values)}")
    out = {}
    for name, items in values.items():
        where = f"{field}.{name}"
        if not _TOKEN.fullmatch(name):
            raise InvalidInput(
                f"{field}: {_shown(name)} is not a header name (letters, digits and "
                "!#$%&'*+.^_`|~-, at most 256)",
                field=field,
            )
        if len(items) > MAX_HEADER_VALUES:
            raise _fail(where, f"at most {MAX_HEADER_VALUES} values, got {len(items)}")
        for item in items:
            if not _HEADER_VALUE.fullmatch(item):
                raise _fail(
                    where,
                    f"{_shown(item)} is not a header value: at most 4096 visible ASCII "
                    "characters, spaces or tabs (no CR, LF, NUL or non-ASCII)",
                )
        out[name] = tuple(items)
    return out


def exec_args(values: Sequence[str], field: str) -> tuple[str, ...]:
    if not values or not values[0]:
        raise _fail(field, "needs a program to run as its first item")
    if len(values) > MAX_ARGS:
        raise _fail(field, f"at most {MAX_ARGS} arguments, got {len(values)}")
    for i, arg in enumerate(values):
        if "\x00" in arg or len(arg) > 4096:
            raise _fail(f"{field}[{i}]", "an argument is at most 4096 characters, without NUL")
    return tuple(values)
