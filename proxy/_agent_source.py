"""Snapshots streamed from the host's agent, each one acknowledged back.

    GET {url}/snapshot?index=N&wait=60s   the agent answers when it has a version above N
    PUT {url}/ack                         the ApplyResult of what was delivered

A long-poll over a tiny HTTP/1.1 client (trio + httptools: the proxy keeps its memory small
and has no use for a general client). When the agent is away the proxy keeps its last good
snapshot and asks again with backoff; when the agent returns it resumes from the version it has.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httptools
import trio

from ._source import Apply, ApplyResult

log = logging.getLogger("weft.proxy")


class AgentUnavailable(Exception):
    pass


@dataclass
class _Answer:
    status: int = 0
    headers: dict[bytes, bytes] = field(default_factory=dict)
    body: list[bytes] = field(default_factory=list)
    done: bool = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.done = True


async def _request(
    host: str, port: int, method: str, target: str, body: bytes = b"", timeout: float = 10.0
) -> tuple[int, dict[bytes, bytes], bytes]:
    head = (
        f"{method} {target} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    try:
        with trio.fail_after(timeout):
            stream = await trio.open_tcp_stream(host, port)
            async with stream:
                await stream.send_all(head + body)
                answer = _Answer()
                parser = httptools.HttpResponseParser(answer)
                while not answer.done:
                    data = await stream.receive_some(65536)
                    if not data:
                        break
                    parser.feed_data(data)
    except (OSError, trio.TooSlowError, trio.BrokenResourceError, httptools.HttpParserError) as exc:
        raise AgentUnavailable(f"{method} {target}: {exc or type(exc).__name__}") from exc
    if not answer.done:
        raise AgentUnavailable(f"{method} {target}: the agent closed the connection early")
    return parser.get_status_code(), answer.headers, b"".join(answer.body)


class AgentSource:
    """`SnapshotSource` over the agent's local API (`--snapshot-url`)."""

    def __init__(self, url: str, *, wait: float = 60.0) -> None:
        parts = urlsplit(url.rstrip("/"))
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"{url!r} is not an http:// URL of the agent's proxy endpoint")
        self.host, self.port = parts.hostname, parts.port or 80
        self.path = parts.path
        self.name = f"agent:{url}"
        self.wait = wait
        self.version = 0

    def reload(self) -> None:
        pass  # the agent pushes; a SIGHUP has nothing to re-read

    async def _next(self) -> bytes:
        """The next document: newer than the one we have, waiting as long as it takes."""
        backoff = 0.2
        while True:
            target = f"{self.path}/snapshot?index={self.version}&wait={int(self.wait)}s"
            try:
                status, headers, body = await _request(
                    self.host, self.port, "GET", target, timeout=self.wait + 15
                )
            except AgentUnavailable as exc:
                log.debug("agent unavailable (%s); keeping the last good snapshot", exc)
                status, body = 0, b""
            if status == 200:
                index = headers.get(b"x-weft-index", b"")
                if index.isdigit() and int(index) > self.version:
                    return body
                continue  # the wait ran out with nothing new
            if status not in (0, 404):
                log.warning("agent answered %d for the snapshot: %s", status, body[:200])
            await trio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _ack(self, result: ApplyResult) -> None:
        try:
            await _request(
                self.host,
                self.port,
                "PUT",
                f"{self.path}/ack",
                json.dumps(result.as_dict()).encode(),
            )
        except AgentUnavailable as exc:
            log.debug("could not acknowledge version %s: %s", result.version, exc)

    async def _deliver(self, apply: Apply) -> ApplyResult:
        raw = await self._next()
        result = await apply(raw, self.name)
        try:
            version = json.loads(raw).get("version")
        except (ValueError, AttributeError):
            version = None
        # Refused or not, this version was seen: ask for the next one, not the same again.
        if isinstance(version, int) and version > self.version:
            self.version = version
        await self._ack(result)
        return result

    async def run(
        self, apply: Apply, *, task_status: trio.TaskStatus[ApplyResult] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started(await self._deliver(apply))
        while True:
            await self._deliver(apply)
