"""The etcd client's values and errors (see `registry.etcd` for the client and the error tree)."""

from __future__ import annotations

import base64
import ssl
from dataclasses import dataclass
from typing import Any, Literal


class EtcdError(Exception):
    """Base of every error this module raises."""


class EtcdUnavailable(EtcdError):
    """No etcd endpoint could serve the request."""


class EtcdCompacted(EtcdError):
    """The requested revision is older than etcd's compaction point."""

    def __init__(self, requested: int, compact_revision: int) -> None:
        super().__init__(
            f"etcd revision {requested} has been compacted (oldest kept: {compact_revision}); "
            "the watcher must re-read the range and watch from the revision it gets"
        )
        self.requested = requested
        self.compact_revision = compact_revision


class EtcdLeaseNotFound(EtcdError):
    """The lease does not exist: it expired or was revoked."""


class EtcdAuthError(EtcdError):
    """etcd rejected the username/password or the token."""


class EtcdRequestError(EtcdError):
    """etcd answered with an error for this request."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"etcd refused the request: {message} (gRPC code {code})")
        self.code = code
        self.message = message


# gRPC status codes etcd uses for "try another member".
_UNAVAILABLE_CODES = {4, 14}  # DEADLINE_EXCEEDED, UNAVAILABLE
_UNAUTHENTICATED = 16


def _b64(data: str | bytes) -> str:
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def prefix_end(prefix: str | bytes) -> bytes:
    """The `range_end` that selects every key starting with `prefix`."""
    raw = bytearray(prefix.encode() if isinstance(prefix, str) else prefix)
    while raw:
        if raw[-1] < 0xFF:
            raw[-1] += 1
            return bytes(raw)
        raw.pop()
    return b"\0"  # every key


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int

    @classmethod
    def from_json(cls, kv: dict[str, Any]) -> KeyValue:
        return cls(
            key=_unb64(kv.get("key")).decode("utf-8", "surrogateescape"),
            value=_unb64(kv.get("value")),
            create_revision=int(kv.get("create_revision", 0)),
            mod_revision=int(kv.get("mod_revision", 0)),
            version=int(kv.get("version", 0)),
            lease=int(kv.get("lease", 0)),
        )


@dataclass(frozen=True, slots=True)
class Event:
    type: Literal["PUT", "DELETE"]
    kv: KeyValue
    prev_kv: KeyValue | None = None


@dataclass(frozen=True, slots=True)
class WatchBatch:
    """Events of one watch response; `revision` is etcd's revision when it was sent.

    An empty `events` list is a progress report: every change up to `revision` was delivered.
    """

    revision: int
    events: list[Event]


@dataclass(frozen=True, slots=True)
class RangeResult:
    kvs: list[KeyValue]
    revision: int
    count: int
    more: bool


@dataclass(frozen=True, slots=True)
class TxnResult:
    succeeded: bool
    revision: int
    responses: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Put:
    key: str
    value: bytes
    lease: int = 0

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"key": _b64(self.key), "value": _b64(self.value)}
        if self.lease:
            body["lease"] = str(self.lease)
        return {"request_put": body}


@dataclass(frozen=True, slots=True)
class Delete:
    key: str
    prefix: bool = False

    def to_json(self) -> dict[str, Any]:
        body = {"key": _b64(self.key)}
        if self.prefix:
            body["range_end"] = _b64(prefix_end(self.key))
        return {"request_delete_range": body}


@dataclass(frozen=True, slots=True)
class Get:
    """A read inside a transaction (its answer is in `TxnResult.responses`, in order)."""

    key: str
    prefix: bool = False

    def to_json(self) -> dict[str, Any]:
        body = {"key": _b64(self.key)}
        if self.prefix:
            body["range_end"] = _b64(prefix_end(self.key))
        return {"request_range": body}


_TARGETS = {
    "version": "VERSION",
    "create": "CREATE",
    "mod": "MOD",
    "value": "VALUE",
    "lease": "LEASE",
}
_RESULTS = {"=": "EQUAL", "!=": "NOT_EQUAL", ">": "GREATER", "<": "LESS"}
_FIELDS = {
    "version": "version",
    "create": "create_revision",
    "mod": "mod_revision",
    "value": "value",
    "lease": "lease",
}


@dataclass(frozen=True, slots=True)
class Compare:
    """One txn guard, e.g. `Compare("mod", key, "=", 42)` or `Compare("version", key, "=", 0)`.

    With `prefix`, the guard must hold for every key under `key` (etcd's compare over a
    range), e.g. "nothing under config/ changed after revision N".
    """

    target: Literal["version", "create", "mod", "value", "lease"]
    key: str
    op: Literal["=", "!=", ">", "<"]
    operand: int | bytes
    prefix: bool = False

    def to_json(self) -> dict[str, Any]:
        operand: str = _b64(self.operand) if isinstance(self.operand, bytes) else str(self.operand)
        out = {
            "key": _b64(self.key),
            "target": _TARGETS[self.target],
            "result": _RESULTS[self.op],
            _FIELDS[self.target]: operand,
        }
        if self.prefix:
            out["range_end"] = _b64(prefix_end(self.key))
        return out


@dataclass
class EtcdTLS:
    """Client-side TLS for etcd: a CA bundle, and a client certificate when etcd requires one."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx


@dataclass
class WatchStatus:
    """What a watch's owner can see of it: whether a stream is established right now, and
    since when it has not been (`trio.current_time()`; 0 while connected)."""

    connected: bool = False
    down_since: float = 0.0
    epoch: int = 0  # how many times a stream has been established
