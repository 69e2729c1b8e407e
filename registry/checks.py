"""Health-check probes: HTTP, TCP and exec, classified as Consul does.

    HTTP    2xx passing, 429 warning, anything else (or no answer) critical
    TCP     connection accepted: passing; refused or timed out: critical
    exec    exit 0 passing, 1 warning, anything else critical

Used by the registry server (for services registered straight through the API) and by the
agent (for its host's services), with the status table (`next_status`, thresholds) they share.

A probe never raises (cancellation aside): whatever goes wrong running it, including a check
that should not have been accepted (a URL the client cannot parse, a header it cannot encode,
a NaN timeout read back from etcd), is a `critical` result whose output says why. One bad
check must not take down the prober that runs everybody else's.
"""

from __future__ import annotations

import logging
import math
import ssl
from collections.abc import Mapping, Sequence

import httpx
import trio

from ._health import Streak as Streak
from ._health import next_status as next_status
from ._model import Check as Check
from ._model import Status as Status

MAX_OUTPUT = 4096
DEFAULT_TIMEOUT = 10.0

log = logging.getLogger("weft.checks")


def _timeout(value: float) -> float:
    # A stored NaN or negative timeout would make trio.fail_after raise; fall back instead.
    if isinstance(value, int | float) and math.isfinite(value) and value > 0:
        return value
    return DEFAULT_TIMEOUT


def _broken(what: str, exc: BaseException) -> tuple[Status, str]:
    log.warning("%s could not run: %s: %s", what, type(exc).__name__, exc)
    output = f"{what}: check could not run: {type(exc).__name__}: {exc}"
    return Status.CRITICAL, output[:MAX_OUTPUT]


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
    connect_to: str | None = None,
) -> tuple[Status, str]:
    """`connect_to`: the IP address to connect to instead of resolving the URL's host again
    (the server checked that address; the Host header and TLS name stay the URL's)."""
    timeout = _timeout(timeout)
    try:
        flat = [(k, v) for k, values in (headers or {}).items() for v in values]
        target: httpx.URL | str = url
        extensions: dict[str, str] = {}
        if connect_to is not None:
            parsed = httpx.URL(url)
            if not any(k.lower() == "host" for k, _ in flat):
                flat.append(("Host", parsed.netloc.decode("ascii")))
            target = parsed.copy_with(host=connect_to)
            if parsed.scheme == "https":
                extensions["sni_hostname"] = parsed.host
        with trio.fail_after(timeout):
            if tls_skip_verify and url.startswith("https"):
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                async with httpx.AsyncClient(verify=ctx) as insecure:
                    resp = await insecure.request(
                        method, target, headers=flat, timeout=timeout, extensions=extensions
                    )
            else:
                resp = await client.request(
                    method, target, headers=flat, timeout=timeout, extensions=extensions
                )
    except trio.TooSlowError:
        return Status.CRITICAL, f"HTTP {method} {url}: timed out after {timeout:g}s"
    except httpx.HTTPError as exc:
        return Status.CRITICAL, f"HTTP {method} {url}: {exc or type(exc).__name__}"
    except Exception as exc:  # InvalidURL, UnicodeEncodeError, idna's label errors, ...
        return _broken(f"HTTP {method} {url}", exc)
    try:
        body = resp.text[:MAX_OUTPUT]
    except Exception as exc:  # an undecodable body
        body = f"(body not readable: {exc})"
    return (
        classify_http(resp.status_code),
        f"HTTP {method} {url}: {resp.status_code} {resp.reason_phrase} Output: {body}",
    )


async def probe_tcp(address: str, *, timeout: float = 10.0) -> tuple[Status, str]:
    timeout = _timeout(timeout)
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
    except Exception as exc:  # a bad port, a label IDNA refuses, ...
        return _broken(f"TCP connect {address}", exc)
    return Status.PASSING, f"TCP connect {address}: Success"


async def probe_exec(args: Sequence[str], *, timeout: float = 10.0) -> tuple[Status, str]:
    timeout = _timeout(timeout)
    if not args:
        return Status.CRITICAL, "exec check: no program to run"
    try:
        with trio.fail_after(timeout):
            result = await trio.run_process(
                list(args), capture_stdout=True, capture_stderr=True, check=False
            )
    except trio.TooSlowError:
        return Status.CRITICAL, f"{args[0]}: timed out after {timeout:g}s"
    except OSError as exc:
        return Status.CRITICAL, f"{args[0]}: could not run: {exc.strerror or exc}"
    except Exception as exc:  # an argument with NUL, a non-string, ...
        return _broken(str(args[0]), exc)
    output = (result.stdout + result.stderr).decode(errors="replace")[:MAX_OUTPUT]
    return classify_exit(result.returncode), output


async def probe(
    check: Check, http: httpx.AsyncClient, *, connect_to: str | None = None
) -> tuple[Status, str]:
    """Run `check` once by its type; never raises (see the module docstring).

    `connect_to`: the address an HTTP or TCP check connects to (the server's probes pass the
    one they checked against `check_allow_networks`)."""
    try:
        if check.type == "http":
            return await probe_http(
                http,
                check.http,
                method=check.method,
                headers=check.header,
                timeout=check.timeout,
                tls_skip_verify=check.tls_skip_verify,
                connect_to=connect_to,
            )
        if check.type == "tcp":
            if connect_to is not None:
                _, _, port = check.tcp.rpartition(":")
                host = f"[{connect_to}]" if ":" in connect_to else connect_to
                status, output = await probe_tcp(f"{host}:{port}", timeout=check.timeout)
                return status, output.replace(f"{host}:{port}", check.tcp, 1)
            return await probe_tcp(check.tcp, timeout=check.timeout)
        if check.type == "exec":
            return await probe_exec(check.args, timeout=check.timeout)
    except Exception as exc:  # the probes catch their own; this is the last line
        return _broken(f"{check.type} check {check.id}", exc)
    return Status.CRITICAL, f"check {check.id}: a {check.type} check is not probed"
