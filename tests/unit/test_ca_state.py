"""The stored CA state: sealed keys, the key-encryption key, the document's format."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from ca import (
    CAState,
    CorruptState,
    InvalidKeyEncryptionKey,
    KeyEncryptionKey,
    KeyType,
    WrongKeyEncryptionKey,
    generate_material,
)
from ca._keys import private_key_der, private_key_pem

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def _state(kek: KeyEncryptionKey, root_key_type: KeyType = KeyType.EC_P256):
    material = generate_material("weft.local", NOW, root_key_type)
    record = material.seal("weft.local", kek, NOW, keep_root_key=True)
    return material, CAState("weft.local", (record,))


def test_a_kek_reads_back_from_base64_and_hex_text() -> None:
    kek = KeyEncryptionKey.generate()
    assert KeyEncryptionKey.from_text(kek.to_text()).id == kek.id
    raw = base64.b64decode(kek.to_text())
    assert KeyEncryptionKey.from_text(raw.hex() + "\n").id == kek.id
    assert KeyEncryptionKey.from_text(base64.urlsafe_b64encode(raw)).id == kek.id


@pytest.mark.parametrize("text", ["", "short", "x" * 44, base64.b64encode(b"k" * 16).decode()])
def test_a_malformed_kek_is_refused_saying_what_a_kek_looks_like(text: str) -> None:
    with pytest.raises(InvalidKeyEncryptionKey, match=r"32 random bytes .* base64 .* or hex") as e:
        KeyEncryptionKey.from_text(text, source="WEFT_SERVER_CA_KEK")
    assert "WEFT_SERVER_CA_KEK" in str(e.value)


def test_a_kek_never_shows_itself_in_repr() -> None:
    kek = KeyEncryptionKey.generate()
    assert kek.to_text() not in repr(kek) and kek.id in repr(kek)


def test_sealed_secrets_open_only_with_their_kek_and_context() -> None:
    kek = KeyEncryptionKey.generate()
    sealed = kek.seal(b"secret", "weft-ca-state/1|td|root|signing-key")
    assert kek.unseal(sealed, "weft-ca-state/1|td|root|signing-key") == b"secret"
    with pytest.raises(WrongKeyEncryptionKey, match="sealed with key-encryption key"):
        KeyEncryptionKey.generate().unseal(sealed, "weft-ca-state/1|td|root|signing-key")
    with pytest.raises(CorruptState, match="altered or damaged"):
        kek.unseal(sealed, "weft-ca-state/1|td|root|root-key")  # moved to another slot
    flipped = replace(sealed, ciphertext=bytes([sealed.ciphertext[0] ^ 1]) + sealed.ciphertext[1:])
    with pytest.raises(CorruptState):
        kek.unseal(flipped, "weft-ca-state/1|td|root|signing-key")


@pytest.mark.parametrize("root_key_type", [KeyType.EC_P256, KeyType.RSA_2048])
def test_the_serialised_state_holds_no_private_key_in_the_clear(root_key_type: KeyType) -> None:
    kek = KeyEncryptionKey.generate()
    material, state = _state(kek, root_key_type)
    data = state.to_bytes()
    assert b"PRIVATE KEY" not in data
    for key in (material.signing_key, material.root_key):
        assert key is not None
        der = private_key_der(key)
        pem_body = b"".join(private_key_pem(key).splitlines()[1:-1])
        assert der not in data and base64.b64encode(der) not in data
        assert pem_body[:40] not in data.replace(b"\\n", b"")
    assert kek.to_text().encode() not in data
    # ... while the certificates, which are public, are there in the clear
    assert b"-----BEGIN CERTIFICATE-----" in data


def test_the_state_round_trips_through_its_bytes() -> None:
    _, state = _state(KeyEncryptionKey.generate())
    again = CAState.from_bytes(state.to_bytes())
    assert again == state
    doc = json.loads(state.to_bytes())
    assert doc["format"] == "weft-ca-state/1" and doc["roots"][0]["status"] == "active"


@pytest.mark.parametrize(
    ("data", "complaint"),
    [
        (b"not json", "not JSON"),
        (b"[]", "has format 'list'"),
        (b'{"format": "weft-ca-state/9"}', "this version reads 'weft-ca-state/1'"),
        (b'{"format": "weft-ca-state/1", "trust_domain": "x"}', "malformed"),
        (b'{"format": "weft-ca-state/1", "trust_domain": "x", "roots": []}', "one active root"),
    ],
)
def test_a_corrupt_state_document_is_refused_saying_why(data: bytes, complaint: str) -> None:
    with pytest.raises(CorruptState, match=complaint):
        CAState.from_bytes(data)
