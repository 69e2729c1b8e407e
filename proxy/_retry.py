"""When a request that failed on one endpoint may be sent to another. Pure, and the only place.

    failure                                    retried on another endpoint when
    connect: refused, timeout, DNS             always: nothing was sent
    tls: handshake or certificate refused      always: no application saw the request
    no_response: closed or reset before any    the method is idempotent (or the request carries
      response byte                            an Idempotency-Key) and the proxy still holds
                                               the whole request to send again
    anything after a response byte arrived,    never
      timeouts, 5xx answers

At most `MAX_ATTEMPTS` attempts in all, each to an endpoint not tried before for this request.
(An idle pooled connection the endpoint has closed is found before a request is written to it
and is never counted as a failure: see `Stream.stale`.)
"""

from __future__ import annotations

MAX_ATTEMPTS = 3

CONNECT = "connect"
TLS = "tls"
NO_RESPONSE = "no_response"


def may_retry(kind: str, *, attempt: int, idempotent: bool, replayable: bool) -> bool:
    """`attempt` is the number of attempts made so far (1 after the first failure)."""
    if attempt >= MAX_ATTEMPTS:
        return False
    if kind in (CONNECT, TLS):
        return True
    if kind == NO_RESPONSE:
        return idempotent and replayable
    return False
