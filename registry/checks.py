"""Health-check probes: HTTP, TCP and exec, classified as Consul does.

    HTTP    2xx passing, 429 warning, anything else (or no answer) critical
    TCP     connection accepted: passing; refused or timed out: critical
    exec    exit 0 passing, 1 warning, anything else critical

Used by the registry server (for services registered straight through the API) and by the
agent (for its host's services), with the status table (`next_status`, thresholds) they share.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping, Sequence

import httpx
import trio

from ._health import Streak as Streak
from ._health import next_status as next_status
from ._model import Check as Check
from ._model import Status as Status

MAX_OUTPUT = 4096


def classify_http(status_code: int) -> Status:
    if 200 <= status_code < 300:
        return Status.PASSING
    if status_code == 429:
        return Status.WARNING
    return Status.CRITICAL


def classify_exit(code: int) -> Status:
    if code == 0:
        return Status.PASSING
    if code == 1:
        return Status.WARNING
    return Status.CRITICAL


async def probe_http(
    client: httpx.AsyncClient,
    url: str,
    *,
    method: str = "GET",
    headers: Mapping[str, Sequence[str]] | None = None,
    timeout: float = 10.0,
    tls_skip_verify: bool = False,
) -> tuple[Status, str]:
    flat = [(k, v) for k, values in (headers or {}).items() for v in values]
    try:
        with trio.fail_after(timeout):
            if tls_skip_verify and url.startswith("https"):
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                async with httpx.AsyncClient(verify=ctx) as insecure:
                    resp = await insecure.request(method, url, headers=flat, timeout=timeout)
            else:
                resp = await client.request(method, url, headers=flat, timeout=timeout)
    except trio.TooSlowError:
        return Status.CRITICAL, f"HTTP {method} {url}: timed out after {timeout:g}s"
    except httpx.HTTPError as exc:
        return Status.CRITICAL, f"HTTP {method} {url}: {exc or type(exc).__name__}"
    body = resp.text[:MAX_OUTPUT]
    return (
        classify_http(resp.status_code),
        f"HTTP {method} {url}: {resp.status_code} {resp.reason_phrase} Output: {body}",
    )


async def probe_tcp(address: str, *, timeout: float = 10.0) -> tuple[Status, str]:
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    try:
        with trio.fail_after(timeout):
            stream = await trio.open_tcp_stream(host, int(port))
        await stream.aclose()
    except trio.TooSlowError:
        return Status.CRITICAL, f"TCP connect {address}: timed out after {timeout:g}s"
    except OSError as exc:
        return Status.CRITICAL, f"TCP connect {address}: {exc.strerror or exc}"
    return Status.PASSING, f"TCP connect {address}: Success"


async def probe_exec(args: Sequence[str], *, timeout: float = 10.0) -> tuple[Status, str]:
    try:
        with trio.fail_after(timeout):
            result = await trio.run_process(
                list(args), capture_stdout=True, capture_stderr=True, check=False
            )
    except trio.TooSlowError:
        return Status.CRITICAL, f"{args[0]}: timed out after {timeout:g}s"
    except OSError as exc:
        return Status.CRITICAL, f"{args[0]}: could not run: {exc.strerror or exc}"
    output = (result.stdout + result.stderr).decode(errors="replace")[:MAX_OUTPUT]
    return classify_exit(result.returncode), output
