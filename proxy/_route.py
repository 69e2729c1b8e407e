"""Which upstream a forward-proxy request is for. Pure.

An application that honours `HTTP_PROXY` sends `GET http://billing/path HTTP/1.1` (absolute
form) to the forward-proxy listener, or `CONNECT billing:443` for a tunnel; a plain request
with `Host: billing` works too. The host names the upstream (a port, if given, is ignored: the
mesh routes by service name), and the request goes on with an origin-form target.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._errors import HttpError
from ._h1 import Head


@dataclass(frozen=True, slots=True)
class ForwardRoute:
    upstream: str
    target: bytes  # origin-form target to send on (b"" for CONNECT)
    connect: bool = False


def _host_name(authority: bytes) -> str:
    host = authority
    if host.startswith(b"["):
        end = host.find(b"]")
        if end < 0:
            raise HttpError(400, f"malformed authority {authority[:80]!r}")
        host = host[1:end]
    else:
        host = host.rpartition(b":")[0] if b":" in host else host
        if b"@" in host:
            raise HttpError(400, "user information in the request target is not allowed")
    try:
        name = host.decode("ascii").lower().rstrip(".")
    except UnicodeDecodeError:
        raise HttpError(400, f"non-ASCII host {authority[:80]!r}") from None
    if not name:
        raise HttpError(400, "the request names no host")
    return name


def route_forward(head: Head) -> ForwardRoute:
    """The upstream name and origin-form target of a request to the forward-proxy listener."""
    target = head.target
    if head.method == b"CONNECT":
        if b"/" in target or not target:
            raise HttpError(400, "CONNECT needs an authority target such as 'billing:443'")
        return ForwardRoute(_host_name(target), b"", connect=True)
    lowered = target[:8].lower()
    if lowered.startswith(b"http://"):
        rest = target[7:]
        cut = len(rest)
        for sep in (b"/", b"?", b"#"):
            i = rest.find(sep)
            if 0 <= i < cut:
                cut = i
        authority, path = rest[:cut], rest[cut:]
        if not path.startswith(b"/"):
            path = b"/" + path
        return ForwardRoute(_host_name(authority), path)
    if lowered.startswith(b"https://"):
        raise HttpError(400, "an https:// target must be tunnelled with CONNECT")
    if target.startswith(b"/") or target == b"*":
        if not head.host:
            raise HttpError(400, "the request names no host (no absolute target, no Host)")
        return ForwardRoute(_host_name(head.host), target)
    raise HttpError(400, f"malformed request target {target[:80]!r}")
