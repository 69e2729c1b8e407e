"""Root rotation: the CA state's lifecycle, as pure transitions of CAState.

Timeline of one rotation (R1 the old root, R2 the new one):

    t0  rotate   R2 and its intermediate I2 become active; I2 signs from now on.
                 R2 is cross-signed by R1 (R2x), and leaves signed by I2 present I2 + R2x.
                 R1 is retiring: its keys are dropped, it stays in the bundle until
                 R1.issued_until, the latest NotAfter of anything signed under it.
    ...          overlap: the bundle is [R2, R1]. A peer that trusts only R1 (its bundle is not
                 refreshed yet) verifies new leaves through I2 -> R2x -> R1; a peer with both
                 roots verifies old leaves through R1 and new ones through R2.
    t1  tick     once t1 >= R1.issued_until every leaf under R1 has expired: R1 leaves the
                 bundle, and R2x leaves the chain new leaves present.

Why the new root, not the new intermediate, is what R1 cross-signs: OpenSSL (and so Python's
ssl) takes the first matching issuer among the certificates a peer presents and does not
backtrack to another. With a cross-signed intermediate (I2 by R2 and I2x by R1, same subject
and key) a leaf presenting I2 first fails for a peer that trusts only R1, and presenting I2x
first fails after R1 is dropped. With I2 + R2x, OpenSSL's trusted-first lookup ends the chain at
R2 whenever R2 is trusted and otherwise follows R2x to R1, so both kinds of peer verify at every
point of the rotation (tests/integration/test_ca_rotation_tls.py shows all three bundles).

`issued_until` is a high-water mark kept slightly ahead of the truth so that signing does not
write the state per certificate: the CA raises it in steps (see CertificateAuthority) and only
signs a certificate that ends before it. A retiring root therefore stays at most one step
longer than strictly needed, never shorter, even with several servers signing at once.
"""

from __future__ import annotations

import enum
from dataclasses import replace
from datetime import datetime

from cryptography import x509

from ._errors import CAError, RootKeyRequired
from ._issuing import Issuer, cross_sign
from ._kek import KeyEncryptionKey
from ._material import CAMaterial, load_certificates
from ._state import CAState, RootStatus


class Phase(enum.Enum):
    STEADY = "steady"  # one root in the bundle
    OVERLAP = "overlap"  # the active root and one or more retiring roots


class Event(enum.Enum):
    ROTATE = "rotate"  # a new root becomes active
    SWAP_INTERMEDIATE = "swap-intermediate"  # a new intermediate under the same root
    RETIRED_ROOTS_EXPIRE = "retired-roots-expire"  # a tick found retiring roots past due


# (phase, event) -> phase after; the second rotation during an overlap keeps every older root
# with its own deadline. A tick with nothing due is no event at all.
TRANSITIONS: dict[tuple[Phase, Event], Phase | None] = {
    (Phase.STEADY, Event.ROTATE): Phase.OVERLAP,
    (Phase.OVERLAP, Event.ROTATE): Phase.OVERLAP,
    (Phase.STEADY, Event.SWAP_INTERMEDIATE): Phase.STEADY,
    (Phase.OVERLAP, Event.SWAP_INTERMEDIATE): Phase.OVERLAP,
    # None: STEADY if every retiring root went, else still OVERLAP
    (Phase.OVERLAP, Event.RETIRED_ROOTS_EXPIRE): None,
}


def phase(state: CAState) -> Phase:
    return Phase.OVERLAP if state.retiring else Phase.STEADY


def _after(state: CAState, event: Event, new_state: CAState) -> CAState:
    key = (phase(state), event)
    if key not in TRANSITIONS:  # pragma: no cover - guarded by the callers
        raise CAError(f"{event.value} is not a transition from {phase(state).value}")
    expected = TRANSITIONS[key]
    assert expected is None or phase(new_state) is expected, (key, phase(new_state))
    return new_state


def rotate(
    state: CAState,
    material: CAMaterial,
    old_root: Issuer | None,
    kek: KeyEncryptionKey,
    now: datetime,
    *,
    keep_root_key: bool,
) -> CAState:
    """Make `material` the active CA.

    Same root as the active one (an imported PKI issuing a new intermediate): only the signing
    intermediate changes, the bundle does not. A new root: `old_root` (the active root with its
    key) cross-signs it and the active root starts retiring.
    """
    current = state.active
    if material.root_id == current.id:
        # Keep the cross-signatures of this root by older roots that are still retiring.
        crossed_by_older = tuple(
            cert
            for pem in current.chain_pem
            for cert in load_certificates(pem, "a stored chain certificate")
            if cert.subject == material.root.subject and cert.issuer != cert.subject
        )
        record = material.seal(
            state.trust_domain,
            kek,
            current.issued_until,
            keep_root_key=keep_root_key,
            extra_chain=crossed_by_older,
        )
        if record.root_key is None:
            record = replace(record, root_key=current.root_key)
        return _after(state, Event.SWAP_INTERMEDIATE, state.with_active(record))
    if old_root is None:
        raise RootKeyRequired("rotating to a new root needs the active root's key to cross-sign it")
    crossed = cross_sign(material.root, old_root, now)
    record = material.seal(
        state.trust_domain, kek, now, keep_root_key=keep_root_key, extra_chain=(crossed,)
    )
    retired = replace(
        current,
        status=RootStatus.RETIRING,
        signing_key=None,
        root_key=None,
        retired_at=now,
    )
    new_state = CAState(state.trust_domain, (record, retired, *state.retiring))
    return _after(state, Event.ROTATE, new_state)


def tick(state: CAState, now: datetime) -> CAState:
    """Drop retiring roots whose every leaf has expired, and the cross-signatures by them that
    new leaves no longer need. Returns `state` itself when nothing is due."""
    due = [r for r in state.retiring if r.issued_until <= now]
    if not due:
        return state
    gone_subjects = {load_certificates(r.certificate_pem, "a stored root")[0].subject for r in due}
    chain = tuple(pem for pem in state.active.chain_pem if _issuer_of(pem) not in gone_subjects)
    kept = tuple(r for r in state.retiring if r not in due)
    new_state = CAState(state.trust_domain, (replace(state.active, chain_pem=chain), *kept))
    return _after(state, Event.RETIRED_ROOTS_EXPIRE, new_state)


def next_change(state: CAState) -> datetime | None:
    """When `tick` will next have something to do (the server can sleep until then)."""
    return min((r.issued_until for r in state.retiring), default=None)


def extend_issued_until(state: CAState, until: datetime) -> CAState:
    """Raise the active root's high-water mark of leaf expiry to `until` (never lower it)."""
    if until <= state.active.issued_until:
        return state
    return state.with_active(replace(state.active, issued_until=until))


def _issuer_of(pem: str) -> x509.Name:
    return load_certificates(pem, "a stored chain certificate")[0].issuer
