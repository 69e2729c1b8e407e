"""Errors of the `proxy` package.

ProxyError
├── StartupError         the proxy cannot start (its first snapshot, or the admin listener);
│                        `status` is the exit status
├── SnapshotError        a snapshot document was refused as a whole (`problems` lists why)
├── TlsSetupError        certificate, key or trust bundle files cannot be loaded
├── ListenerError        a listener address cannot be bound
├── HttpError            a message breaks HTTP/1.1 rules or a limit; carries the status to answer
├── StreamClosed         a socket or TLS stream broke or ended where more was expected
│   ├── TlsRefused            a TLS handshake (or record) failed; `reason` is a metric label
│   ├── SourceClosed          the stream a body was being read from broke
│   └── SinkClosed            the stream a body was being written to broke
├── ClientGone           the downstream went away: nothing more can be said to it (not a
│                        StreamClosed, so that handlers of upstream failures never catch it)
├── UpstreamError        an upstream could not serve a request; `reason` is a metric label
│   ├── ConnectFailed         connecting or the TLS handshake to an endpoint failed
│   └── NoEndpoint            every endpoint of the upstream is ejected, or there are none
└── Bug                  the proxy broke its own rules (an impossible state transition, a
                         schema using a keyword the validator lacks); never expected

Socket, `ssl` and JSON errors are turned into these where they enter (`raise ... from exc`).
Messages name what was wrong and, where it helps, what would be right.
"""

from __future__ import annotations

from collections.abc import Sequence


class ProxyError(Exception):
    """Base of every error the proxy package raises."""


class StartupError(ProxyError):
    """The proxy cannot start; `status` is the exit status the command line uses."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class SnapshotError(ProxyError):
    """A snapshot failed validation; nothing of it was applied."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems) or ["invalid snapshot"]
        shown = "; ".join(self.problems[:5])
        more = f" (and {len(self.problems) - 5} more)" if len(self.problems) > 5 else ""
        super().__init__(f"snapshot refused: {shown}{more}")


class TlsSetupError(ProxyError):
    """The certificate, key or trust bundle named by the snapshot cannot be used."""


class ListenerError(ProxyError):
    """A listener could not be bound (address in use, bad address, no permission)."""


class HttpError(ProxyError):
    """A message breaks HTTP/1.1 framing rules or a configured limit.

    `status` is what the proxy answers (400, 431, 501, ...) when it still can, `reason` is
    the short text that goes in the response body and the log, and `label` is a stable metric
    label for why (`weft_proxy_http_refused_total{reason=...}`).
    """

    def __init__(self, status: int, reason: str, *, label: str = "") -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason
        self.label = label or _DEFAULT_LABELS.get(status, "malformed")


_DEFAULT_LABELS = {
    408: "head_timeout",
    413: "too_large",
    417: "expectation",
    431: "head_too_large",
    501: "unsupported_coding",
    505: "http_version",
}


class StreamClosed(ProxyError):
    """The peer closed or reset a stream, or a TLS record failed."""


class TlsRefused(StreamClosed):
    """A TLS handshake failed; `reason` is a metric label such as `unknown_ca`."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class SourceClosed(StreamClosed):
    """The stream a body was read from ended early or broke."""


class SinkClosed(StreamClosed):
    """The stream a body was written to broke."""


class ClientGone(ProxyError):
    """The downstream went away; nothing more can be said to it."""


class UpstreamError(ProxyError):
    """An upstream could not serve the request.

    `status` is what the downstream gets (502, 503, 504); `reason` is a short label for
    metrics (`connect_refused`, `tls_wrong_identity`, `timeout`, ...); the message says which
    upstream and endpoint failed and why, and goes in the response body.
    """

    status = 502

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class ConnectFailed(UpstreamError):
    """Connecting, or the TLS handshake, to an endpoint failed: nothing was sent."""


class NoEndpoint(UpstreamError):
    """No endpoint of the upstream can take a request now."""

    status = 503


class Bug(ProxyError, RuntimeError):
    """The proxy broke one of its own rules: a programming error, never user input."""
