"""CertificateAuthority over an in-memory store and a fake clock: the server's view of the CA."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from ca import (
    AlreadyInitialised,
    CertificateAuthority,
    IdentityMismatch,
    InvalidIdentity,
    InvalidLifetime,
    KeyEncryptionKey,
    LeafLifetimes,
    MemoryCAStore,
    NodeAgent,
    NotInitialised,
    Operator,
    Phase,
    RootKeyRequired,
    ServiceRef,
    SigningDenied,
    SpiffeId,
    StateConflict,
    WrongKeyEncryptionKey,
    load_private_key,
    make_key_and_csr,
)
from tests.harness import FakeClock

TD = "weft.local"
WEB = SpiffeId(TD, "default", "web")
DB = SpiffeId(TD, "default", "db")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store() -> MemoryCAStore:
    return MemoryCAStore()


@pytest.fixture
def kek() -> KeyEncryptionKey:
    return KeyEncryptionKey.generate()


@pytest.fixture
async def authority(
    store: MemoryCAStore, kek: KeyEncryptionKey, clock: FakeClock
) -> CertificateAuthority:
    ca = CertificateAuthority(store, kek, clock=clock)
    await ca.initialise(TD)
    return ca


async def test_a_second_server_with_the_same_kek_loads_the_same_ca(
    authority: CertificateAuthority, store: MemoryCAStore, kek: KeyEncryptionKey, clock: FakeClock
) -> None:
    other = CertificateAuthority(store, KeyEncryptionKey.from_text(kek.to_text()), clock=clock)
    bundle = await other.load()
    assert bundle == authority.bundle()
    issued = await other.sign(make_key_and_csr(WEB).csr_pem, WEB, Operator())
    assert issued.root_id == bundle.active.id


async def test_a_server_with_the_wrong_kek_refuses_to_start_saying_why(
    authority: CertificateAuthority, store: MemoryCAStore, kek: KeyEncryptionKey
) -> None:
    wrong = CertificateAuthority(store, KeyEncryptionKey.generate())
    with pytest.raises(WrongKeyEncryptionKey, match=f"sealed with key-encryption key {kek.id}"):
        await wrong.load()
    assert not wrong.initialised


async def test_an_empty_store_means_not_initialised(kek: KeyEncryptionKey) -> None:
    ca = CertificateAuthority(MemoryCAStore(), kek)
    with pytest.raises(NotInitialised, match="weft ca init"):
        await ca.load()
    with pytest.raises(NotInitialised):
        await ca.sign(make_key_and_csr(WEB).csr_pem, WEB, Operator())


async def test_initialising_twice_is_refused(authority: CertificateAuthority) -> None:
    with pytest.raises(AlreadyInitialised, match="weft ca rotate"):
        await authority.initialise(TD)


async def test_an_agent_gets_a_leaf_for_its_nodes_service(
    authority: CertificateAuthority, clock: FakeClock
) -> None:
    agent = NodeAgent("node-a", frozenset({ServiceRef("default", "web")}))
    issued = await authority.sign(make_key_and_csr(WEB).csr_pem, WEB, agent)
    assert issued.identity == WEB
    assert issued.not_after - clock() == timedelta(hours=24)
    leaf = x509.load_pem_x509_certificate(issued.certificate_pem.encode())
    leaf.verify_directly_issued_by(x509.load_pem_x509_certificate(issued.chain_pem[0].encode()))


async def test_a_denied_request_issues_nothing_and_writes_nothing(
    authority: CertificateAuthority, store: MemoryCAStore
) -> None:
    saves = store.saves
    agent = NodeAgent("node-a", frozenset({ServiceRef("default", "web")}))
    with pytest.raises(SigningDenied, match="node 'node-a'"):
        await authority.sign(make_key_and_csr(DB).csr_pem, DB, agent)
    assert store.saves == saves


async def test_requests_outside_the_policy_are_refused_before_signing(
    authority: CertificateAuthority,
) -> None:
    csr = make_key_and_csr(WEB).csr_pem
    with pytest.raises(InvalidLifetime):
        await authority.sign(csr, WEB, Operator(), lifetime=timedelta(days=90))
    other = SpiffeId("elsewhere.example", "default", "web")
    with pytest.raises(InvalidIdentity, match=r"only for 'weft\.local'"):
        await authority.sign(make_key_and_csr(other).csr_pem, other, Operator())
    with pytest.raises(IdentityMismatch):
        await authority.sign(csr, DB, Operator())


async def test_signing_writes_the_state_about_once_per_step_not_per_leaf(
    authority: CertificateAuthority, store: MemoryCAStore, clock: FakeClock
) -> None:
    csr = make_key_and_csr(WEB).csr_pem
    saves = store.saves
    latest = clock()
    for _ in range(200):  # 200 leaves over 100 minutes
        clock.advance(seconds=30)
        latest = (await authority.sign(csr, WEB, Operator())).not_after
    assert store.saves - saves <= 3
    assert authority.state.active.issued_until >= latest
    assert authority.state.active.issued_until <= latest + authority.issued_until_step


async def test_servers_sharing_a_store_keep_the_high_water_mark_above_every_leaf(
    authority: CertificateAuthority, store: MemoryCAStore, kek: KeyEncryptionKey, clock: FakeClock
) -> None:
    other = CertificateAuthority(store, kek, clock=clock)
    await other.load()
    csr = make_key_and_csr(WEB).csr_pem
    leaves = []
    for step in range(10):
        clock.advance(minutes=45)
        server = authority if step % 2 else other  # each is stale after the other's write
        leaves.append(await server.sign(csr, WEB, Operator()))
    await authority.refresh()
    assert authority.state.active.issued_until >= max(leaf.not_after for leaf in leaves)


async def test_a_stale_server_signing_after_a_rotation_cannot_outlast_the_old_root(
    authority: CertificateAuthority, store: MemoryCAStore, kek: KeyEncryptionKey, clock: FakeClock
) -> None:
    stale = CertificateAuthority(store, kek, clock=clock)
    await stale.load()
    csr = make_key_and_csr(WEB).csr_pem
    await authority.sign(csr, WEB, Operator())
    await stale.refresh()
    rotated = await authority.rotate()
    old = next(r for r in authority.bundle().roots if not r.active)
    # `stale` has not seen the rotation: it still signs under the old root...
    late = await stale.sign(csr, WEB, Operator())
    assert late.root_id == rotated.previous_root_id
    # ... but only within the mark the old root's retirement was computed from.
    assert old.drop_after is not None and late.not_after <= old.drop_after
    clock.advance(hours=2)  # past the mark: the stale server must write, loses, and catches up
    newer = await stale.sign(csr, WEB, Operator())
    assert newer.root_id == authority.bundle().active.id


async def test_server_certificates_count_towards_the_high_water_mark(
    authority: CertificateAuthority,
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    issued = await authority.issue_server_certificate(
        key.public_key(), ["weft.local"], ["127.0.0.1"], lifetime=timedelta(days=7)
    )
    assert authority.state.active.issued_until >= issued.not_after


async def test_short_lifetimes_work_when_switched_on_for_tests(
    store: MemoryCAStore, kek: KeyEncryptionKey, clock: FakeClock
) -> None:
    lifetimes = LeafLifetimes(default=timedelta(minutes=2), allow_short_for_testing=True)
    ca = CertificateAuthority(store, kek, clock=clock, lifetimes=lifetimes)
    await ca.initialise(TD)
    issued = await ca.sign(make_key_and_csr(WEB).csr_pem, WEB, Operator())
    assert issued.not_after - issued.not_before == timedelta(minutes=3)  # 1 min skew + 2 min
    assert ca.issued_until_step == timedelta(seconds=30)


async def test_rotation_overlaps_until_the_old_roots_last_leaf_expires(
    authority: CertificateAuthority, clock: FakeClock
) -> None:
    csr = make_key_and_csr(WEB).csr_pem
    old_leaf = await authority.sign(csr, WEB, Operator())
    old_root = authority.bundle().active
    clock.advance(hours=1)
    rotated = await authority.rotate()
    assert authority.status().phase is Phase.OVERLAP
    assert [r.id for r in rotated.bundle.roots] == [rotated.bundle.active.id, old_root.id]
    drop = rotated.previous_root_drop_after
    assert drop is not None and old_leaf.not_after <= drop
    assert authority.status().next_change == drop
    new_leaf = await authority.sign(csr, WEB, Operator())
    assert new_leaf.root_id != old_root.id
    assert len(new_leaf.chain_pem) == 2  # the new intermediate and the cross-signed new root
    clock.now = drop - timedelta(seconds=1)
    assert not await authority.tick()
    clock.now = drop
    assert await authority.tick()
    assert [r.id for r in authority.bundle().roots] == [rotated.bundle.active.id]
    assert authority.status().phase is Phase.STEADY
    assert len((await authority.sign(csr, WEB, Operator())).chain_pem) == 1


async def test_an_offline_root_key_is_handed_out_once_and_needed_to_rotate(
    store: MemoryCAStore, kek: KeyEncryptionKey, clock: FakeClock
) -> None:
    ca = CertificateAuthority(store, kek, clock=clock)
    init = await ca.initialise(TD, keep_root_key=False)
    assert init.root_key_pem is not None
    assert ca.status().root_key_offline
    assert b'"root_key": null' in (store.raw or b"")
    with pytest.raises(RootKeyRequired, match="kept offline"):
        await ca.rotate()
    wrong = make_key_and_csr(WEB).key_pem
    with pytest.raises(RootKeyRequired, match="does not match the active root"):
        await ca.rotate(root_key_pem=wrong)
    rotated = await ca.rotate(root_key_pem=init.root_key_pem)
    assert rotated.root_key_pem is not None  # the new root's key stays offline too
    assert ca.status().root_key_offline
    new_root = x509.load_pem_x509_certificate(rotated.bundle.active.certificate_pem.encode())
    new_key = load_private_key(rotated.root_key_pem, "new root key")
    assert new_key.public_key().public_numbers() == new_root.public_key().public_numbers()  # type: ignore[union-attr]


async def test_a_kept_root_key_can_be_taken_offline(
    authority: CertificateAuthority, store: MemoryCAStore
) -> None:
    pem = await authority.export_root_key()
    assert authority.status().root_key_offline and b"PRIVATE KEY" not in (store.raw or b"")
    root = x509.load_pem_x509_certificate(authority.bundle().active.certificate_pem.encode())
    key = load_private_key(pem, "exported")
    assert key.public_key().public_numbers() == root.public_key().public_numbers()  # type: ignore[union-attr]
    with pytest.raises(RootKeyRequired, match="already offline"):
        await authority.export_root_key()
    await authority.rotate(root_key_pem=pem)


async def test_rewrapping_moves_the_state_to_a_new_kek(
    authority: CertificateAuthority, store: MemoryCAStore, kek: KeyEncryptionKey
) -> None:
    new_kek = KeyEncryptionKey.generate()
    await authority.rewrap(new_kek)
    with pytest.raises(WrongKeyEncryptionKey):
        await CertificateAuthority(store, kek).load()
    reloaded = CertificateAuthority(store, new_kek)
    await reloaded.load()
    await reloaded.rotate()  # the root key was re-sealed too


async def test_status_reports_what_an_operator_needs(authority: CertificateAuthority) -> None:
    status = authority.status()
    assert status.trust_domain == TD and status.phase is Phase.STEADY
    assert status.origin == "generated" and not status.root_key_offline
    assert status.intermediate_not_after > status.bundle.active.not_before
    assert status.next_change is None


class RacingStore(MemoryCAStore):
    """A store where another server's write lands just before the next save."""

    def __init__(self) -> None:
        super().__init__()
        self.race: Callable[[], Awaitable[object]] | None = None

    async def save(self, data: bytes, expected_version: int | None) -> int:
        if self.race is not None:
            race, self.race = self.race, None
            await race()
        return await super().save(data, expected_version)


async def test_a_rotation_that_loses_a_race_rotates_nothing_and_says_so(
    kek: KeyEncryptionKey, clock: FakeClock
) -> None:
    store = RacingStore()
    mine = CertificateAuthority(store, kek, clock=clock)
    await mine.initialise(TD)
    theirs = CertificateAuthority(store, kek, clock=clock)
    await theirs.load()
    store.race = theirs.rotate
    with pytest.raises(StateConflict, match="nothing was rotated"):
        await mine.rotate()
    assert len(mine.bundle().roots) == 2  # their rotation, seen after the conflict; not a third
    assert mine.bundle() == theirs.bundle()


async def test_a_tick_that_loses_a_race_retries_and_reports_no_change_when_none_was_due(
    kek: KeyEncryptionKey, clock: FakeClock
) -> None:
    store = RacingStore()
    mine = CertificateAuthority(store, kek, clock=clock)
    await mine.initialise(TD)
    await mine.rotate()
    theirs = CertificateAuthority(store, kek, clock=clock)
    await theirs.load()
    csr = make_key_and_csr(WEB).csr_pem
    clock.advance(days=2)
    store.race = lambda: theirs.sign(csr, WEB, Operator())  # a high-water-mark write
    assert await mine.tick()  # conflict, reload, re-apply: the old root goes
    assert len(mine.bundle().roots) == 1
    assert not await mine.tick()
