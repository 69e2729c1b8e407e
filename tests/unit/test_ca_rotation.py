"""The rotation state machine as pure transitions of the CA state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509

from ca import (
    CAState,
    KeyEncryptionKey,
    Phase,
    RootKeyRequired,
    generate_material,
    import_material,
)
from ca._issuing import Issuer, make_intermediate
from ca._keys import KeyType, private_key_pem
from ca._material import CAMaterial, certificate_pem
from ca._rotation import TRANSITIONS, Event, extend_issued_until, next_change, phase, rotate, tick
from ca._state import RootStatus

T0 = datetime(2030, 1, 1, tzinfo=UTC)
TD = "weft.local"
KEK = KeyEncryptionKey.generate()


def _start() -> tuple[CAMaterial, CAState]:
    material = generate_material(TD, T0)
    return material, CAState(TD, (material.seal(TD, KEK, T0, keep_root_key=True),))


def _root_issuer(material: CAMaterial) -> Issuer:
    issuer = material.root_issuer()
    assert issuer is not None
    return issuer


def _certs(state: CAState) -> list[x509.Certificate]:
    return [x509.load_pem_x509_certificate(p.encode()) for p in state.active.chain_pem]


def test_rotation_makes_the_new_root_active_and_the_old_one_retiring() -> None:
    old, state = _start()
    state = extend_issued_until(state, T0 + timedelta(hours=25))
    new = generate_material(TD, T0 + timedelta(hours=1))
    rotated = rotate(
        state, new, _root_issuer(old), KEK, T0 + timedelta(hours=1), keep_root_key=True
    )
    assert phase(state) is Phase.STEADY and phase(rotated) is Phase.OVERLAP
    assert rotated.active.id == new.root_id and rotated.active.issued_until == T0 + timedelta(
        hours=1
    )
    retired = rotated.retiring[0]
    assert retired.id == old.root_id and retired.status is RootStatus.RETIRING
    assert retired.signing_key is None and retired.root_key is None  # nothing left to steal
    assert retired.drop_after == T0 + timedelta(hours=25)
    assert next_change(rotated) == retired.drop_after


def test_the_new_root_is_cross_signed_by_the_old_one_and_presented_after_the_intermediate() -> None:
    old, state = _start()
    new = generate_material(TD, T0)
    rotated = rotate(state, new, _root_issuer(old), KEK, T0, keep_root_key=True)
    intermediate, crossed = _certs(rotated)
    assert intermediate.subject == new.chain[0].subject
    assert crossed.subject == new.root.subject and crossed.issuer == old.root.subject
    assert crossed.public_key() == new.root.public_key()
    crossed.verify_directly_issued_by(old.root)
    intermediate.verify_directly_issued_by(crossed)  # same subject and key as the new root
    assert crossed.not_valid_after_utc <= old.root.not_valid_after_utc


def test_tick_drops_a_retiring_root_only_once_its_last_leaf_has_expired() -> None:
    old, state = _start()
    state = extend_issued_until(state, T0 + timedelta(hours=24))
    rotated = rotate(
        state, generate_material(TD, T0), _root_issuer(old), KEK, T0, keep_root_key=True
    )
    assert tick(rotated, T0 + timedelta(hours=23, minutes=59)) is rotated
    after = tick(rotated, T0 + timedelta(hours=24))
    assert [r.id for r in after.roots] == [rotated.active.id]
    assert phase(after) is Phase.STEADY
    assert len(after.active.chain_pem) == 1  # the cross-signature went with the old root
    assert next_change(after) is None


def test_a_second_rotation_during_an_overlap_keeps_each_old_root_until_its_own_deadline() -> None:
    first, state = _start()
    state = extend_issued_until(state, T0 + timedelta(hours=24))
    second = generate_material(TD, T0)
    state = rotate(state, second, _root_issuer(first), KEK, T0, keep_root_key=True)
    state = extend_issued_until(state, T0 + timedelta(hours=30))
    third = generate_material(TD, T0 + timedelta(hours=6))
    t6 = T0 + timedelta(hours=6)
    state = rotate(state, third, _root_issuer(second), KEK, t6, keep_root_key=True)
    assert [r.id for r in state.roots] == [third.root_id, second.root_id, first.root_id]
    state = tick(state, T0 + timedelta(hours=24))
    assert [r.id for r in state.roots] == [third.root_id, second.root_id]
    state = tick(state, T0 + timedelta(hours=30))
    assert [r.id for r in state.roots] == [third.root_id]


def test_a_new_intermediate_under_the_same_root_changes_no_root() -> None:
    external = generate_material("corp.example", T0)  # stands in for a company PKI
    root_pem = certificate_pem(external.root)
    issuer = _root_issuer(external)

    def intermediate() -> tuple[str, bytes]:
        key = KeyType.EC_P256.generate()
        cert = make_intermediate(key.public_key(), issuer, "corp.example", T0)
        return certificate_pem(cert), private_key_pem(key)

    first = import_material(root_pem, *intermediate(), T0)
    state = CAState(TD, (first.seal(TD, KEK, T0 + timedelta(hours=5), keep_root_key=False),))
    second = import_material(root_pem, *intermediate(), T0)
    swapped = rotate(state, second, None, KEK, T0, keep_root_key=False)
    assert phase(swapped) is Phase.STEADY
    assert swapped.active.id == state.active.id
    assert swapped.active.chain_pem != state.active.chain_pem
    assert swapped.active.issued_until == T0 + timedelta(hours=5)  # earlier leaves still count


def test_rotating_to_a_new_root_without_the_old_roots_key_is_refused() -> None:
    _, state = _start()
    with pytest.raises(RootKeyRequired, match="active root's key"):
        rotate(state, generate_material(TD, T0), None, KEK, T0, keep_root_key=True)


def test_the_high_water_mark_never_goes_down() -> None:
    _, state = _start()
    higher = extend_issued_until(state, T0 + timedelta(hours=2))
    assert extend_issued_until(higher, T0 + timedelta(hours=1)) is higher


def test_the_transition_table_covers_rotation_in_both_phases() -> None:
    assert TRANSITIONS[(Phase.STEADY, Event.ROTATE)] is Phase.OVERLAP
    assert TRANSITIONS[(Phase.OVERLAP, Event.ROTATE)] is Phase.OVERLAP
    assert (Phase.STEADY, Event.RETIRED_ROOTS_EXPIRE) not in TRANSITIONS
