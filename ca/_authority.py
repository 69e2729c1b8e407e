"""CertificateAuthority: what `weft server` mounts. State in a CAStore, time from a clock.

Every method that changes the CA reads the stored version, makes a new CAState with the pure
functions of _material/_rotation, and saves it by compare-and-swap; the signer in memory is
rebuilt only when the active signing material changes. Signing itself writes nothing except,
about once per `issued_until_step`, the raised high-water mark of leaf expiry that tells
rotation how long the old root must stay in the bundle.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import partial

from cryptography import x509

from . import _rotation
from ._bundle import TrustBundle
from ._csr import check_csr
from ._errors import (
    AlreadyInitialised,
    NotInitialised,
    RootKeyRequired,
    SigningDenied,
    StateConflict,
)
from ._identity import SpiffeId, check_trust_domain
from ._issuing import IPAddress, Issuer
from ._kek import KeyEncryptionKey
from ._keys import (
    KeyType,
    PrivateKey,
    PublicKey,
    load_private_key,
    load_private_key_der,
    private_key_pem,
    same_public_key,
)
from ._material import (
    CAMaterial,
    generate_material,
    import_material,
    load_certificates,
)
from ._policy import Caller, LeafLifetimes, authorize
from ._rotation import Phase
from ._signer import IssuedCertificate, Signer
from ._state import CAState, root_key_context, signing_key_context
from ._storage import CAStore

Clock = Callable[[], datetime]
_CONFLICT_RETRIES = 8


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class ImportedCA:
    """An existing PKI's material for `weft ca init --root-cert ... --intermediate-key ...`."""

    root_cert_pem: bytes | str
    intermediate_cert_pem: bytes | str  # the signing intermediate first, then any above it
    intermediate_key_pem: bytes | str


@dataclass(frozen=True, slots=True)
class Initialised:
    bundle: TrustBundle
    # Only when the root key is to be kept offline: the one copy, for the operator to keep.
    root_key_pem: bytes | None


@dataclass(frozen=True, slots=True)
class Rotated:
    bundle: TrustBundle
    previous_root_id: str
    # When the previous root leaves the bundle (None: the root did not change).
    previous_root_drop_after: datetime | None
    # Only when the new root key is kept offline: the one copy, for the operator to keep.
    root_key_pem: bytes | None


@dataclass(frozen=True, slots=True)
class CAStatus:
    trust_domain: str
    phase: Phase
    version: int
    bundle: TrustBundle
    intermediate_not_after: datetime
    root_key_offline: bool
    origin: str
    issued_until: datetime
    next_change: datetime | None


@dataclass(frozen=True, slots=True)
class _Loaded:
    version: int
    state: CAState
    signer: Signer
    bundle: TrustBundle


class CertificateAuthority:
    """The mesh CA over a store, a key-encryption key and a clock. No I/O of its own."""

    def __init__(
        self,
        store: CAStore,
        kek: KeyEncryptionKey,
        *,
        clock: Clock = utc_now,
        lifetimes: LeafLifetimes | None = None,
    ) -> None:
        self._store = store
        self._kek = kek
        self._clock = clock
        self.lifetimes = lifetimes or LeafLifetimes()
        # How far ahead of the latest leaf the stored high-water mark is kept: one state write
        # per step at most, and a retiring root outstays its last leaf by at most one step.
        self.issued_until_step = min(
            timedelta(hours=1), max(self.lifetimes.default / 4, timedelta(seconds=30))
        )
        self._loaded: _Loaded | None = None

    # -- loading ---------------------------------------------------------------------------

    async def load(self) -> TrustBundle:
        """Read and open the stored state; what the server does before it serves.

        Raises NotInitialised (no state yet: serve, but answer CA calls with 503 until
        `weft ca init`), WrongKeyEncryptionKey (refuse to start), CorruptState.
        """
        stored = await self._store.load()
        if stored is None:
            raise NotInitialised(
                "the CA has no state yet: run `weft ca init` (or import an existing CA) first"
            )
        return self._install(CAState.from_bytes(stored.data), stored.version).bundle

    async def refresh(self) -> bool:
        """Reload if the stored state changed (call on a watch event); True if it did."""
        stored = await self._store.load()
        if stored is None:
            raise NotInitialised("the CA state was deleted from the store")
        if self._loaded is not None and stored.version == self._loaded.version:
            return False
        self._install(CAState.from_bytes(stored.data), stored.version)
        return True

    @property
    def initialised(self) -> bool:
        return self._loaded is not None

    def bundle(self) -> TrustBundle:
        return self._require().bundle

    @property
    def state(self) -> CAState:
        return self._require().state

    def status(self) -> CAStatus:
        loaded = self._require()
        active = loaded.state.active
        return CAStatus(
            trust_domain=loaded.state.trust_domain,
            phase=_rotation.phase(loaded.state),
            version=loaded.version,
            bundle=loaded.bundle,
            intermediate_not_after=loaded.signer.intermediate.not_valid_after_utc,
            root_key_offline=loaded.state.root_key_offline,
            origin=active.origin.value,
            issued_until=active.issued_until,
            next_change=_rotation.next_change(loaded.state),
        )

    # -- creating --------------------------------------------------------------------------

    async def initialise(
        self,
        trust_domain: str,
        *,
        root_key_type: KeyType = KeyType.EC_P256,
        keep_root_key: bool = True,
    ) -> Initialised:
        """Generate a root and intermediate for `trust_domain`.

        keep_root_key=False: the root key is returned once and not stored; rotation then needs
        it back (`rotate(root_key_pem=...)`).
        """
        check_trust_domain(trust_domain)
        now = self._clock()
        material = generate_material(trust_domain, now, root_key_type)
        state = CAState(
            trust_domain,
            (material.seal(trust_domain, self._kek, now, keep_root_key=keep_root_key),),
        )
        loaded = await self._create(state)
        offline = None if keep_root_key else _pem(material.root_key)
        return Initialised(loaded.bundle, offline)

    async def import_ca(self, trust_domain: str, imported: ImportedCA) -> Initialised:
        """Bring your own CA: sign with an existing PKI's intermediate (its root key unknown)."""
        check_trust_domain(trust_domain)
        now = self._clock()
        material = _import(imported, now)
        state = CAState(
            trust_domain, (material.seal(trust_domain, self._kek, now, keep_root_key=False),)
        )
        return Initialised((await self._create(state)).bundle, None)

    async def _create(self, state: CAState) -> _Loaded:
        try:
            version = await self._store.save(state.to_bytes(), None)
        except StateConflict as exc:
            raise AlreadyInitialised(
                "the CA is already initialised; `weft ca rotate` replaces its root"
            ) from exc
        return self._install(state, version)

    # -- signing ---------------------------------------------------------------------------

    async def sign(
        self,
        csr_pem: bytes | str,
        requested: SpiffeId,
        caller: Caller,
        *,
        lifetime: timedelta | None = None,
    ) -> IssuedCertificate:
        """`POST /v1/ca/sign`: authorize, check the CSR, issue a leaf from its key alone.

        Raises SigningDenied (403), InvalidCSR/IdentityMismatch/UnsupportedKey/InvalidLifetime/
        InvalidIdentity (400), NotInitialised (503).
        """
        decision = authorize(caller, requested)
        if not decision.allowed:
            raise SigningDenied(decision.reason)
        span = self.lifetimes.resolve(lifetime)
        self._require().signer.check_domain(requested)
        checked = check_csr(csr_pem, requested)
        return await self._issue(
            span, lambda signer, now: signer.issue_leaf(checked.public_key, requested, now, span)
        )

    async def issue_server_certificate(
        self,
        public_key: PublicKey,
        dns_names: Sequence[str],
        ip_addresses: Sequence[str | IPAddress] = (),
        *,
        lifetime: timedelta | None = None,
    ) -> IssuedCertificate:
        """A TLS certificate for `weft server` itself (its key made where it runs)."""
        span = self.lifetimes.resolve(lifetime)
        return await self._issue(
            span,
            lambda signer, now: signer.issue_server_certificate(
                public_key, dns_names, ip_addresses, now, span
            ),
        )

    async def _issue(
        self, lifetime: timedelta, make: Callable[[Signer, datetime], IssuedCertificate]
    ) -> IssuedCertificate:
        for _ in range(_CONFLICT_RETRIES):
            loaded = self._require()
            now = self._clock()
            _, not_after = loaded.signer.validity(now, lifetime)
            if not_after <= loaded.state.active.issued_until:
                return make(loaded.signer, now)
            await self._update(partial(_extend, until=not_after + self.issued_until_step))
        raise StateConflict("the CA state kept changing while signing; retry the request")

    # -- rotation --------------------------------------------------------------------------

    async def rotate(
        self,
        *,
        root_key_pem: bytes | str | None = None,
        root_key_type: KeyType | None = None,
        keep_root_key: bool | None = None,
        replacement: ImportedCA | None = None,
    ) -> Rotated:
        """`weft ca rotate`: a new root and intermediate (or `replacement`'s), the new root
        cross-signed by the current one, which stays in the bundle until its leaves expire.

        root_key_pem: the current root's key, needed when it is kept offline.
        keep_root_key: store the new root's key sealed (default: as the current root does);
        False returns it in `Rotated.root_key_pem`, once.
        Not retried on conflict: if the CA changed meanwhile, StateConflict says so.
        """
        await self.refresh()
        loaded = self._require()
        state, now = loaded.state, self._clock()
        keep = (not state.root_key_offline) if keep_root_key is None else keep_root_key
        if replacement is not None:
            material = _import(replacement, now)
        else:
            key_type = root_key_type or _key_type_of(loaded.bundle)
            material = generate_material(state.trust_domain, now, key_type)
        old_root = None
        if material.root_id != state.active.id:
            old_root = Issuer.of(
                _active_root_cert(state), self._active_root_key(state, root_key_pem)
            )
        new_state = _rotation.rotate(state, material, old_root, self._kek, now, keep_root_key=keep)
        new = await self._save_once(loaded, new_state, "rotated")
        previous = new_state.roots[1] if old_root is not None else None
        return Rotated(
            bundle=new.bundle,
            previous_root_id=state.active.id,
            previous_root_drop_after=previous.drop_after if previous else None,
            root_key_pem=None if keep or material.root_key is None else _pem(material.root_key),
        )

    async def tick(self) -> bool:
        """Drop retiring roots whose leaves have all expired; True if the bundle changed.
        Call it from a timer (at `status().next_change`) on any server: CAS makes it safe."""
        before = self._require().state.roots
        after = await self._update(_rotation.tick)
        return [r.id for r in after.roots] != [r.id for r in before]

    async def export_root_key(self) -> bytes:
        """Take the active root's key offline: return it (the one copy) and remove it from
        the stored state. Rotation then needs it supplied."""
        await self.refresh()
        loaded = self._require()
        state = loaded.state
        if state.root_key_offline:
            raise RootKeyRequired(
                "the active root's key is not in the state; it is already offline"
            )
        key = self._active_root_key(state, None)
        new_state = state.with_active(replace(state.active, root_key=None))
        await self._save_once(loaded, new_state, "exported")
        return _pem(key)

    async def rewrap(self, new_kek: KeyEncryptionKey) -> None:
        """Re-seal the stored keys under `new_kek` (rotating the key-encryption key)."""
        await self.refresh()
        loaded = self._require()
        state = loaded.state
        active, td = state.active, state.trust_domain
        assert active.signing_key is not None
        signing = self._kek.unseal(active.signing_key, signing_key_context(td, active.id))
        record = replace(
            active, signing_key=new_kek.seal(signing, signing_key_context(td, active.id))
        )
        if active.root_key is not None:
            root = self._kek.unseal(active.root_key, root_key_context(td, active.id))
            record = replace(record, root_key=new_kek.seal(root, root_key_context(td, active.id)))
        new_state = state.with_active(record)
        await self._save_once(loaded, new_state, "re-sealed", new_kek=new_kek)

    # -- internals -------------------------------------------------------------------------

    def _require(self) -> _Loaded:
        if self._loaded is None:
            raise NotInitialised(
                "the CA is not loaded: it has no state yet (run `weft ca init`) or `load()` "
                "was not called"
            )
        return self._loaded

    def _install(self, state: CAState, version: int) -> _Loaded:
        previous = self._loaded
        if (
            previous is not None
            and previous.state.active.id == state.active.id
            and previous.state.active.signing_key == state.active.signing_key
            and previous.state.active.chain_pem == state.active.chain_pem
        ):
            signer = previous.signer  # only the high-water mark moved: keep the unsealed key
        else:
            signer = Signer.from_record(state.trust_domain, state.active, self._kek)
        bundle = (
            previous.bundle
            if previous is not None and previous.state.roots == state.roots
            else TrustBundle.of(state)
        )
        self._loaded = _Loaded(version, state, signer, bundle)
        return self._loaded

    async def _save_once(
        self,
        loaded: _Loaded,
        new_state: CAState,
        done: str,
        *,
        new_kek: KeyEncryptionKey | None = None,
    ) -> _Loaded:
        """Save an operator's change by CAS, without retrying: if another server wrote the state
        since it was read, the change was decided on stale facts, so say so and store nothing."""
        try:
            version = await self._store.save(new_state.to_bytes(), loaded.version)
        except StateConflict as exc:
            await self.refresh()
            raise StateConflict(
                f"the CA state changed while this request ran, so nothing was {done}; "
                "check `weft ca status` and try again"
            ) from exc
        if new_kek is not None:
            self._kek = new_kek
        return self._install(new_state, version)

    async def _update(self, change: Callable[[CAState, datetime], CAState]) -> CAState:
        """Apply `change` and save it by CAS, reloading and re-applying on conflict."""
        for _ in range(_CONFLICT_RETRIES):
            loaded = self._require()
            new_state = change(loaded.state, self._clock())
            if new_state is loaded.state:
                return new_state
            try:
                version = await self._store.save(new_state.to_bytes(), loaded.version)
            except StateConflict:
                await self.refresh()
                continue
            return self._install(new_state, version).state
        raise StateConflict("the CA state kept changing under this server; try again")

    def _active_root_key(self, state: CAState, supplied: bytes | str | None) -> PrivateKey:
        active = state.active
        root_cert = _active_root_cert(state)
        if supplied is not None:
            key = load_private_key(supplied, "the root key")
            if not same_public_key(key.public_key(), root_cert.public_key()):
                raise RootKeyRequired(
                    "the root key given does not match the active root certificate "
                    f"({active.id[:16]}); give the key of the active root"
                )
            return key
        if active.root_key is None:
            raise RootKeyRequired(
                "the active root's key is kept offline (or the root was imported): supply it "
                "to rotate, e.g. `weft ca rotate --root-key FILE`; it is used to cross-sign the "
                "new root and is not stored"
            )
        der = self._kek.unseal(active.root_key, root_key_context(state.trust_domain, active.id))
        return load_private_key_der(der, "the sealed root key")


def _extend(state: CAState, now: datetime, *, until: datetime) -> CAState:
    del now
    return _rotation.extend_issued_until(state, until)


def _import(imported: ImportedCA, now: datetime) -> CAMaterial:
    return import_material(
        imported.root_cert_pem,
        imported.intermediate_cert_pem,
        imported.intermediate_key_pem,
        now,
    )


def _active_root_cert(state: CAState) -> x509.Certificate:
    return load_certificates(state.active.certificate_pem, "the stored root")[0]


def _key_type_of(bundle: TrustBundle) -> KeyType:
    active = bundle.active
    if active.key_type == "rsa" and active.key_bits in (2048, 3072):
        return KeyType.RSA_2048 if active.key_bits == 2048 else KeyType.RSA_3072
    return KeyType.EC_P256


def _pem(key: PrivateKey | None) -> bytes:
    assert key is not None
    return private_key_pem(key)
