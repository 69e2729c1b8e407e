"""Joining the mesh: the agent's token, this host's address, the CA to trust, the trust domain.

The CA bundle is `ca_file` when given. With `ca_fingerprint` instead, the agent asks the servers
in turn for their roots (unverified, retrying with backoff until one answers), pins them in
`data_dir/ca.pem` only if one matches the fingerprint, and refuses to join (exit 64) a server
whose roots do not. The trust domain is `trust_domain` when set; otherwise, when a service needs
a proxy, the CA's roots name it.
"""

from __future__ import annotations

import logging
import socket
import ssl
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import trio

from ca import fingerprint_sha256
from registry.client import APIError, RegistryClient, ServerUnreachable
from registry.lifecycle import Backoff, write_atomic

from ._config import AgentConfig, normalise_fingerprint
from ._errors import ConfigError
from ._notify import Notifier

log = logging.getLogger("weft.agent")


def read_token(config: AgentConfig) -> str:
    if config.token:
        return config.token
    try:
        token = Path(config.token_file).read_text().strip()
    except OSError as exc:
        raise ConfigError(
            "token_file", f"cannot read {config.token_file}: {exc.strerror}"
        ) from None
    if not token:
        raise ConfigError("token_file", f"{config.token_file} is empty")
    return token


def discover_node_address(server: str) -> str:
    """The local address the kernel would use to reach the first server."""
    url = urlsplit(server)
    host = url.hostname or "127.0.0.1"
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((host, url.port or 80))
            return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"


async def bundle_file(config: AgentConfig, data: Path, notifier: Notifier) -> str | None:
    """The CA bundle to verify the servers with: given, or fetched and pinned."""
    if config.ca_file:
        return config.ca_file
    if not config.ca_fingerprint:
        return None
    pinned = data / "ca.pem"
    want = normalise_fingerprint(config.ca_fingerprint)
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    backoff = Backoff(initial=0.5, maximum=10.0)
    async with httpx.AsyncClient(verify=ctx, timeout=10) as http:
        while True:
            for server in config.servers:
                try:
                    resp = await http.get(server.rstrip("/") + "/v1/ca/roots")
                    roots = resp.json()["roots"] if resp.status_code == 200 else []
                except (httpx.HTTPError, ValueError, KeyError):
                    roots = []
                for root in roots:
                    if normalise_fingerprint(fingerprint_sha256(root["certificate_pem"])) == want:
                        write_atomic(pinned, "".join(r["certificate_pem"] for r in roots).encode())
                        log.info(
                            "joined: the CA root matches the pinned fingerprint",
                            extra={"kv": {"server": server}},
                        )
                        return str(pinned)
                if roots:
                    raise ConfigError(
                        "ca_fingerprint",
                        f"{server} serves a CA whose roots "
                        "do not match the fingerprint; refusing to join",
                    )
            notifier.status("waiting for a server to show its CA")
            await trio.sleep(backoff.next())


async def learn_trust_domain(client: RegistryClient, notifier: Notifier) -> str:
    backoff = Backoff(initial=0.5, maximum=10.0)
    while True:
        try:
            roots, _ = await client.ca_roots()
            return str(roots["trust_domain"])
        except (APIError, ServerUnreachable) as exc:
            notifier.status(f"waiting for the CA: {exc}")
            log.info("waiting for the CA (%s)", exc)
            await trio.sleep(backoff.next())
