"""Trace context in request headers: strict parsing, the sampling decision, propagation.

Pure: bytes in, a decision out. Understood on the way in, in this order of preference:
W3C `traceparent` (+ `tracestate`), B3 single (`b3`), B3 multi (`X-B3-TraceId`,
`X-B3-SpanId`, `X-B3-Sampled`, `X-B3-Flags`). Anything malformed or oversized counts as no
context at all: a new trace is started (outbound) and the bad headers are dropped, never
passed on, so nothing a client forged is reflected unvalidated. On the way out the proxy
writes `traceparent` (and the `tracestate` it validated) and, when the request came with B3,
the B3 form it came with, each naming the proxy's own span as the parent.
"""

from __future__ import annotations

import os
import random
import re
from dataclasses import dataclass

from ._h1 import Head

TRACEPARENT = b"traceparent"
TRACESTATE = b"tracestate"
B3 = b"b3"
B3_TRACE = b"x-b3-traceid"
B3_SPAN = b"x-b3-spanid"
B3_PARENT = b"x-b3-parentspanid"
B3_SAMPLED = b"x-b3-sampled"
B3_FLAGS = b"x-b3-flags"
# Every header this module reads or writes: dropped from a request it rewrites.
TRACE_HEADERS = frozenset(
    {TRACEPARENT, TRACESTATE, B3, B3_TRACE, B3_SPAN, B3_PARENT, B3_SAMPLED, B3_FLAGS}
)

W3C, B3_SINGLE, B3_MULTI = "w3c", "b3", "b3multi"

_HEX = b"0123456789abcdef"
_TRACEPARENT = re.compile(rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_B3_ID = re.compile(rb"[0-9a-f]{16}|[0-9a-f]{32}")
_SPAN_ID = re.compile(rb"[0-9a-f]{16}")
# tracestate: at most 32 list members of key=value (W3C trace-context level 1, section 3.3);
# 512 bytes is what the spec says a vendor may truncate to, and all a proxy passes on.
_TRACESTATE_MAX = 512
_TS_MEMBER = re.compile(
    rb"[ \t]*([a-z0-9][a-z0-9_\-*/]{0,240}(?:@[a-z][a-z0-9_\-*/]{0,13})?)="
    rb"([\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e])[ \t]*"
)
_ZERO_TRACE = b"0" * 32
_ZERO_SPAN = b"0" * 16

# Ids must be unique, not secret: a PRNG seeded from the OS, not a syscall each.
_ids = random.Random(os.urandom(16))


@dataclass(slots=True)
class Context:
    """A trace context as hex bytes: the trace, the caller's span, whether it is sampled."""

    trace_id: bytes  # 32 lowercase hex digits
    span_id: bytes  # 16 lowercase hex digits: the parent of the span made here
    sampled: bool
    tracestate: bytes = b""
    form: str = W3C  # the header form it came in (B3 forms are answered in kind)


def new_id(digits: int) -> bytes:
    """Random lowercase hex, never all zeros (an invalid id in both W3C and B3)."""
    while True:
        value = _ids.getrandbits(digits * 4)
        if value:
            return b"%0*x" % (digits, value)


def _traceparent(value: bytes) -> Context | None:
    match = _TRACEPARENT.fullmatch(value[:55])
    if match is None:
        return None
    version, trace, span, flags = match.groups()
    if version == b"ff" or trace == _ZERO_TRACE or span == _ZERO_SPAN:
        return None
    # Version 00 is exactly 55 bytes; a later version may append fields after a dash.
    if len(value) != 55 and (version == b"00" or value[55:56] != b"-"):
        return None
    return Context(trace, span, bool(int(flags, 16) & 1))


def _tracestate(values: list[bytes]) -> bytes:
    """The validated tracestate, or b"" (an invalid one is dropped, the trace kept)."""
    joined = b",".join(values)
    if len(joined) > _TRACESTATE_MAX:
        return b""
    members = [m for m in joined.split(b",") if m.strip(b" \t")]
    if len(members) > 32:
        return b""
    out = []
    for member in members:
        match = _TS_MEMBER.fullmatch(member)
        if match is None:
            return b""
        out.append(match.group(1) + b"=" + match.group(2))
    return b",".join(out)


def _b3_sampled(value: bytes | None) -> bool | None:
    if value is None:
        return None
    return {b"1": True, b"true": True, b"d": True, b"0": False, b"false": False}.get(
        value.lower(), False
    )


def _b3_single(value: bytes) -> Context | None:
    parts = value.lower().split(b"-")
    if len(parts) < 2 or len(parts) > 4 or len(value) > 32 + 1 + 16 + 2 + 1 + 16:
        return None
    trace, span = parts[0], parts[1]
    if not _B3_ID.fullmatch(trace) or not _SPAN_ID.fullmatch(span):
        return None
    sampled = True  # B3: a context with no sampling state defers the decision; we record it
    if len(parts) >= 3:
        if parts[2] not in (b"0", b"1", b"d"):
            return None
        sampled = parts[2] != b"0"
    if len(parts) == 4 and not _SPAN_ID.fullmatch(parts[3]):
        return None
    trace = trace.rjust(32, b"0")
    if trace == _ZERO_TRACE or span == _ZERO_SPAN:
        return None
    return Context(trace, span, sampled, form=B3_SINGLE)


def _b3_multi(trace: bytes, span: bytes | None, head: Head) -> Context | None:
    trace = trace.lower()
    if span is None or not _B3_ID.fullmatch(trace) or not _SPAN_ID.fullmatch(span.lower()):
        return None
    trace = trace.rjust(32, b"0")
    if trace == _ZERO_TRACE or span == _ZERO_SPAN:
        return None
    sampled = _b3_sampled(head.get(B3_SAMPLED))
    if head.get(B3_FLAGS) == b"1":
        sampled = True
    return Context(trace, span.lower(), True if sampled is None else sampled, form=B3_MULTI)


def extract(head: Head) -> tuple[Context | None, bool]:
    """(the request's valid context or None, whether it carried any trace header at all)."""
    found: dict[bytes, list[bytes]] = {}
    for name, _, value in head.headers:
        if name in TRACE_HEADERS:
            found.setdefault(name, []).append(value)
    if not found:
        return None, False
    ctx = None
    parents = found.get(TRACEPARENT)
    if parents is not None:
        # Two traceparent fields are ambiguous: W3C says treat that as no context.
        ctx = _traceparent(parents[0]) if len(parents) == 1 else None
        if ctx is not None and TRACESTATE in found:
            ctx.tracestate = _tracestate(found[TRACESTATE])
    elif B3 in found:
        ctx = _b3_single(found[B3][0]) if len(found[B3]) == 1 else None
    elif B3_TRACE in found:
        spans = found.get(B3_SPAN)
        if len(found[B3_TRACE]) == 1 and (spans is None or len(spans) == 1):
            ctx = _b3_multi(found[B3_TRACE][0], spans[0] if spans else None, head)
    return ctx, True


@dataclass(slots=True)
class Decision:
    """What to do with one request: the span to make (if sampled) and the headers to send."""

    trace_id: bytes
    span_id: bytes  # this proxy's span (the parent named downstream)
    parent_id: bytes | None  # the caller's span; None for a trace started here
    sampled: bool
    headers: list[tuple[bytes, bytes]]


def decide(head: Head, *, start: bool, rate: float, rng: random.Random = _ids) -> Decision | None:
    """The context to forward, or None to leave the request's headers as they are.

    `start`: whether this hop may start a trace (outbound); `rate`: the share of new traces
    sampled. A caller's sampled flag is always respected. A request with a valid unsampled
    context passes unchanged and costs nothing more.
    """
    ctx, present = extract(head)
    if ctx is not None and not ctx.sampled:
        return None
    if ctx is None:
        if not start:
            if present:  # malformed: drop it rather than pass it on
                _rewrite(head, [])
            return None
        sampled = rate > 0 and (rate >= 1 or rng.random() < rate)
        decision = Decision(new_id(32), new_id(16), None, sampled, [])
        form = W3C
    else:
        decision = Decision(ctx.trace_id, new_id(16), ctx.span_id, True, [])
        form = ctx.form
    decision.headers = outgoing(decision, ctx.tracestate if ctx else b"", form)
    _rewrite(head, decision.headers)
    return decision


def outgoing(decision: Decision, tracestate: bytes, form: str) -> list[tuple[bytes, bytes]]:
    flag = b"01" if decision.sampled else b"00"
    tid, sid = decision.trace_id, decision.span_id
    headers = [(TRACEPARENT, b"00-%s-%s-%s" % (tid, sid, flag))]
    if tracestate:
        headers.append((TRACESTATE, tracestate))
    if form == B3_SINGLE:
        headers.append((B3, b"%s-%s-%s" % (tid, sid, flag[1:])))
    elif form == B3_MULTI:
        headers += [(B3_TRACE, tid), (B3_SPAN, sid), (B3_SAMPLED, flag[1:])]
        if decision.parent_id is not None:
            headers.append((B3_PARENT, decision.parent_id))
    return headers


def _rewrite(head: Head, add: list[tuple[bytes, bytes]]) -> None:
    """Replace the request's trace headers (the head is forwarded with its header list)."""
    head.headers = [h for h in head.headers if h[0] not in TRACE_HEADERS]
    head.headers.extend((name, name, value) for name, value in add)
