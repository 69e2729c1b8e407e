"""Mesh certificates for the host's services: keys made here, CSRs sent, renewals on time.

Per service with a sidecar: `<data_dir>/certs/<service>.key` (0600, never sent anywhere),
`<service>.crt` (leaf + chain) and the shared `bundle.pem`, each written atomically (a temp
file renamed over the old one) so a proxy never reads half a file. Renewal happens at a random
point between 60% and 90% of the certificate's life; while the CA is away the agent retries
with backoff and the proxies keep the certificate they have.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import trio
from cryptography import x509

from ca import CertificateLifecycle, SpiffeId, make_key_and_csr
from registry.client import APIError, RegistryClient, ServerUnreachable

log = logging.getLogger("weft.agent.certs")


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)
    tmp.replace(path)


@dataclass(frozen=True)
class CertFiles:
    cert: Path
    key: Path
    bundle: Path


@dataclass
class Held:
    identity: SpiffeId
    lifecycle: CertificateLifecycle
    not_after: datetime | None = None
    renew_at: datetime | None = None
    serial: str = ""
    renewals: int = 0


class CertManager:
    def __init__(
        self,
        client: RegistryClient,
        directory: Path,
        *,
        lifetime: float = 0.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.client = client
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        self.lifetime = lifetime
        self.clock = clock
        self.rng = rng
        self.held: dict[str, Held] = {}
        self.changed = trio.Event()  # set when any file was rewritten
        self.bundle_pem = ""
        self._wake = trio.Event()

    def files(self, service: str) -> CertFiles:
        return CertFiles(
            self.dir / f"{service}.crt", self.dir / f"{service}.key", self.dir / "bundle.pem"
        )

    def retry_now(self) -> None:
        """The servers answer again: retry every pending renewal at once, not after backoff."""
        for held in self.held.values():
            held.lifecycle.retry_now()
        self._wake.set()

    def ready(self, service: str) -> bool:
        held = self.held.get(service)
        return held is not None and held.not_after is not None

    def set_identities(self, identities: dict[str, SpiffeId]) -> None:
        """Hold certificates for exactly these services (name -> identity)."""
        for name in list(self.held):
            if name not in identities or self.held[name].identity != identities[name]:
                del self.held[name]
        for name, identity in identities.items():
            if name not in self.held:
                held = Held(identity, CertificateLifecycle(self.rng))
                self._adopt_existing(name, held)
                self.held[name] = held
        self._wake.set()

    def _adopt_existing(self, name: str, held: Held) -> None:
        """A restarted agent reuses a valid certificate on disk instead of asking again."""
        files = self.files(name)
        try:
            cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
            files.key.stat()
        except (OSError, ValueError):
            return
        uris = []
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            uris = san.get_values_for_type(x509.UniformResourceIdentifier)
        except x509.ExtensionNotFound:
            pass
        if held.identity.uri not in uris or cert.not_valid_after_utc <= self.clock():
            return
        held.renew_at = held.lifecycle.installed(
            cert.not_valid_before_utc, cert.not_valid_after_utc
        )
        held.not_after = cert.not_valid_after_utc
        held.serial = format(cert.serial_number, "x")

    async def renew(self, name: str) -> None:
        held = self.held[name]
        made = make_key_and_csr(held.identity)
        lifetime = f"{int(self.lifetime)}s" if self.lifetime else None
        signed = await self.client.ca_sign(
            made.csr_pem.decode(),
            held.identity.service,
            namespace=held.identity.namespace,
            lifetime=lifetime,
        )
        files = self.files(name)
        # Key first, then the certificate: a proxy that reloads between the two writes
        # fails to pair them and keeps its previous pair, never a mismatched one for long.
        write_atomic(files.key, made.key_pem, 0o600)
        write_atomic(files.cert, signed["full_chain_pem"].encode())
        self._write_bundle(signed["bundle_pem"])
        cert = x509.load_pem_x509_certificate(signed["certificate_pem"].encode())
        renew_at = held.lifecycle.installed(cert.not_valid_before_utc, cert.not_valid_after_utc)
        held.not_after, held.renew_at = cert.not_valid_after_utc, renew_at
        held.serial = signed["serial"]
        held.renewals += 1
        log.info(
            "certificate issued",
            extra={
                "kv": {
                    "identity": held.identity.uri,
                    "serial": held.serial,
                    "not_after": held.not_after.isoformat(),
                    "renew_at": renew_at.isoformat(),
                }
            },
        )
        self._signal()

    def _write_bundle(self, pem: str) -> None:
        if pem and pem != self.bundle_pem:
            write_atomic(self.dir / "bundle.pem", pem.encode())
            self.bundle_pem = pem
            self._signal()

    def _signal(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._follow_bundle)
            while True:
                now = self.clock()
                wake = now + timedelta(seconds=60)
                for name, held in list(self.held.items()):
                    if held.lifecycle.should_renew(now):
                        try:
                            await self.renew(name)
                        except (APIError, ServerUnreachable, OSError) as exc:
                            retry = held.lifecycle.renewal_failed(self.clock())
                            log.warning(
                                "certificate for %s not renewed (%s); retrying at %s",
                                held.identity.uri,
                                exc,
                                retry.isoformat(),
                            )
                    if name in self.held:
                        wake = min(wake, held.lifecycle.next_wakeup(self.clock()))
                seconds = max(0.05, (wake - self.clock()).total_seconds())
                with trio.move_on_after(seconds):
                    await self._wake.wait()
                self._wake = trio.Event()

    async def _follow_bundle(self) -> None:
        """Keep bundle.pem equal to the CA's roots (a rotation adds, then drops, a root)."""
        index = None
        while True:
            try:
                roots, index = await self.client.ca_roots(index=index, wait="5m")
                self._write_bundle(roots["bundle_pem"])
            except (APIError, ServerUnreachable, OSError) as exc:
                log.debug("trust bundle not refreshed: %s", exc)
                index = None
                await trio.sleep(2)
