"""Mesh certificates for the host's services: keys made here, CSRs sent, renewals on time.

Per service with a sidecar: `<data_dir>/certs/<service>.pem`, the key (made here, never sent
anywhere) and its certificate chain in one file (0600), and the shared `bundle.pem`, each
replaced by one rename (`_cert_bundle` says why key and certificate share a file), so a proxy
never reads half a file nor a key that is not its certificate's. A certificate on disk is
reused at start only if it passes `reuse_problem` against the last trust bundle known, and is
checked again when the CA's bundle arrives. Renewal happens at a random point between 60% and
90% of the certificate's life; while the CA is away the agent retries with backoff and the
proxies keep the certificate they have.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import trio
from cryptography import x509

from ca import CertificateLifecycle, SpiffeId, make_key_and_csr
from registry.client import APIError, RegistryClient, ServerUnreachable
from registry.lifecycle import Backoff, write_atomic

from ._cert_bundle import Pair, reuse_problem

log = logging.getLogger("weft.agent.certs")


def store_pair(path: Path, pair: Pair) -> None:
    """Key and chain in one rename: whatever happens, `path` holds a matching pair."""
    write_atomic(path, pair.combined(), 0o600)


@dataclass(frozen=True)
class CertFiles:
    cert: Path  # the same file as `key`: key, then chain
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
        self.dir.chmod(0o700)
        for leftover in self.dir.glob(".*.tmp"):  # from a write cut short by a crash
            leftover.unlink(missing_ok=True)
        self.lifetime = lifetime
        self.clock = clock
        self.rng = rng
        self.held: dict[str, Held] = {}
        self.changed = trio.Event()  # set when any file was rewritten
        try:  # the last bundle known: what a restart without any server can check against
            self.bundle_pem = (self.dir / "bundle.pem").read_text()
        except (OSError, UnicodeDecodeError):
            self.bundle_pem = ""
        self._wake = trio.Event()

    def files(self, service: str) -> CertFiles:
        pem = self.dir / f"{service}.pem"
        return CertFiles(pem, pem, self.dir / "bundle.pem")

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
        """A restarted agent reuses a certificate on disk instead of asking again, but only
        one that matches its key, is valid now, is for this identity and chains to the
        trust bundle; anything else is replaced by a new key and certificate."""
        path = self.files(name).cert
        problem = reuse_problem(path, held.identity, self.bundle_pem, self.clock())
        if problem is not None:
            if path.exists():
                log.info(
                    "not reusing the certificate on disk: %s",
                    problem,
                    extra={"kv": {"identity": held.identity.uri, "file": str(path)}},
                )
            return
        cert = x509.load_pem_x509_certificate(Pair.parse(path.read_bytes()).chain_pem)
        held.renew_at = held.lifecycle.installed(
            cert.not_valid_before_utc, cert.not_valid_after_utc
        )
        held.not_after = cert.not_valid_after_utc
        held.serial = format(cert.serial_number, "x")

    def _recheck(self) -> None:
        """The trust bundle changed: a held certificate that no longer chains to it (the CA
        was replaced while the agent was away) is renewed now, not at its renewal time."""
        for name, held in self.held.items():
            if held.not_after is None:
                continue
            problem = reuse_problem(
                self.files(name).cert, held.identity, self.bundle_pem, self.clock()
            )
            if problem is not None:
                log.warning("renewing the certificate for %s now: %s", held.identity.uri, problem)
                self.held[name] = Held(
                    held.identity,
                    CertificateLifecycle(self.rng),
                    not_after=held.not_after,
                    serial=held.serial,
                    renewals=held.renewals,
                )
                self._wake.set()

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
        store_pair(files.cert, Pair(made.key_pem, signed["full_chain_pem"].encode()))
        for legacy in (f"{name}.crt", f"{name}.key"):  # the two-file layout of older agents
            (self.dir / legacy).unlink(missing_ok=True)
        cert = x509.load_pem_x509_certificate(signed["certificate_pem"].encode())
        renew_at = held.lifecycle.installed(cert.not_valid_before_utc, cert.not_valid_after_utc)
        held.not_after, held.renew_at = cert.not_valid_after_utc, renew_at
        held.serial = signed["serial"]
        held.renewals += 1
        # After the new pair is recorded, so a bundle change rechecks it, not the old one.
        self._write_bundle(signed["bundle_pem"])
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
            self._recheck()
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
        backoff = Backoff(initial=0.5, maximum=10.0)
        while True:
            try:
                roots, index = await self.client.ca_roots(index=index, wait="5m")
                self._write_bundle(roots["bundle_pem"])
                backoff.reset()
            except (APIError, ServerUnreachable, OSError) as exc:
                log.debug("trust bundle not refreshed: %s", exc)
                index = None
                await trio.sleep(backoff.next())
