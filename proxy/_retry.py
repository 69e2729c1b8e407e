"""When a failed attempt is tried again. Pure, and the only place that decides.

Two kinds of retry, both here:

Transport retries, always on (nothing reached an application, or nothing came back):

    failure                                    retried on another endpoint when
    connect: refused, timeout, DNS             always: nothing was sent
    tls: handshake or certificate refused      always: no application saw the request
    no_response: closed or reset before any    the method is idempotent (or the request carries
      response byte                            an Idempotency-Key) and the proxy still holds
                                               the whole request to send again

Route retries, when a route (or its service's defaults) has a `retry` policy: the answer's
status (`5xx`, `gateway-error` = 502/503/504, or listed codes) or a per-try timeout
(`timeout`) lets the proxy try again, up to `attempts` more times, only for idempotent
methods unless the policy says `non_idempotent`, only with a body of at most
`MAX_REPLAY_BYTES` held whole, and only while the upstream's retry budget
(`_retry_budget`) has room. An answer whose response has started streaming is never retried.

Transport retries make at most `MAX_ATTEMPTS` attempts, each to an endpoint not tried before
for this request. (An idle pooled connection the endpoint has closed is found before a request
is written to it and is never counted as a failure: see `Stream.stale`.)
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_ATTEMPTS = 3
MAX_REPLAY_BYTES = 64 * 1024  # Linkerd's MAX_BUFFERED_BYTES

CONNECT = "connect"
TLS = "tls"
NO_RESPONSE = "no_response"
# HTTP/2 (`_h2_exchange`): the peer refused the stream or left it unprocessed under GOAWAY
# (nothing was processed: safe like a failed connect, if the proxy holds the whole request);
# a gRPC UNAVAILABLE with no message (paid from the retry budget).
REFUSED = "refused_stream"
GOAWAY = "goaway"
UNAVAILABLE = "grpc_unavailable"

# Route retry conditions.
ON_5XX = "5xx"
ON_GATEWAY_ERROR = "gateway-error"
ON_TIMEOUT = "timeout"
ON_RESET = "reset"  # no response at all (closed or reset), beyond the transport rule above
# gRPC conditions (Istio's and Envoy's `retry-on` gRPC tokens): the call's grpc-status, for
# an answer that carried no response message (Trailers-Only, or trailers straight after the
# head). HTTP/1.1 requests never meet them.
GRPC_CONDITIONS = {
    "cancelled": 1,
    "deadline-exceeded": 4,
    "resource-exhausted": 8,
    "internal": 13,
    "unavailable": 14,
}
_GRPC_NAMES = {code: name for name, code in GRPC_CONDITIONS.items()}
CONDITIONS = frozenset({ON_5XX, ON_GATEWAY_ERROR, ON_TIMEOUT, ON_RESET, *GRPC_CONDITIONS})
GATEWAY_ERRORS = frozenset({502, 503, 504})


def may_retry(kind: str, *, attempt: int, idempotent: bool, replayable: bool) -> bool:
    """Transport retries. `attempt` is the number of attempts made so far."""
    if attempt >= MAX_ATTEMPTS:
        return False
    if kind in (CONNECT, TLS):
        return True
    if kind == NO_RESPONSE:
        return idempotent and replayable
    return False


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 2  # retries after the first try
    on: frozenset[str] = frozenset({ON_GATEWAY_ERROR})
    codes: frozenset[int] = frozenset()
    non_idempotent: bool = False  # retry POST and other unsafe methods too (only if asked)


def eligible(policy: RetryPolicy | None, *, idempotent: bool, body_bytes: int | None) -> bool:
    """May this request be retried at all? `body_bytes` None: the body is not held whole."""
    if policy is None or policy.attempts <= 0:
        return False
    if not idempotent and not policy.non_idempotent:
        return False
    return body_bytes is not None and body_bytes <= MAX_REPLAY_BYTES


def retry_reason(
    policy: RetryPolicy, *, status: int = 0, timed_out: bool = False, grpc_status: int = 0
) -> str:
    """The metric reason if this outcome is one the policy retries, else ''."""
    if grpc_status:
        name = _GRPC_NAMES.get(grpc_status, "")
        return name if name in policy.on else ""
    if timed_out:
        return "timeout" if ON_TIMEOUT in policy.on else ""
    if status == 0:
        return "reset" if ON_RESET in policy.on else ""
    if (
        status in policy.codes
        or (ON_5XX in policy.on and 500 <= status <= 599)
        or (ON_GATEWAY_ERROR in policy.on and status in GATEWAY_ERRORS)
    ):
        return str(status)
    return ""
