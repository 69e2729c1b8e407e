"""The key-encryption key (KEK) and sealing secrets with it (AES-256-GCM).

The KEK is 32 random bytes the operator keeps in a file or an environment variable; the server
hands it to the CA and it is never written anywhere by the CA. Every sealed secret records the
KEK's identifier (a hash of the key, which reveals nothing usable about it) so that a wrong KEK
is reported as exactly that, and is bound by AES-GCM's associated data to where it belongs
(trust domain, root, purpose), so a sealed blob moved to another slot fails to open.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ._errors import CorruptState, InvalidKeyEncryptionKey, WrongKeyEncryptionKey

KEK_BYTES = 32
_NONCE_BYTES = 12


@dataclass(frozen=True, slots=True)
class Sealed:
    """A secret encrypted under a KEK: safe to store anywhere."""

    kek_id: str
    nonce: bytes
    ciphertext: bytes

    def to_json(self) -> dict[str, str]:
        return {
            "kek_id": self.kek_id,
            "nonce": base64.b64encode(self.nonce).decode(),
            "ciphertext": base64.b64encode(self.ciphertext).decode(),
        }

    @classmethod
    def from_json(cls, data: object) -> Sealed:
        try:
            assert isinstance(data, dict)
            return cls(
                str(data["kek_id"]),
                base64.b64decode(data["nonce"], validate=True),
                base64.b64decode(data["ciphertext"], validate=True),
            )
        except (AssertionError, KeyError, TypeError, ValueError) as exc:
            raise CorruptState(f"a sealed secret in the CA state is malformed: {exc!r}") from exc


class KeyEncryptionKey:
    """32 secret bytes. `repr` shows only the identifier, so logs never carry the key."""

    __slots__ = ("_aead", "_key", "id")

    def __init__(self, key: bytes) -> None:
        if len(key) != KEK_BYTES:
            raise InvalidKeyEncryptionKey(
                f"a key-encryption key is {KEK_BYTES} bytes; got {len(key)}"
            )
        self._key = key
        self._aead = AESGCM(key)
        self.id = hashlib.sha256(b"weft-ca-kek-id\0" + key).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"KeyEncryptionKey(id={self.id})"

    @classmethod
    def generate(cls) -> KeyEncryptionKey:
        return cls(os.urandom(KEK_BYTES))

    @classmethod
    def from_text(
        cls, text: str | bytes, source: str = "the key-encryption key"
    ) -> KeyEncryptionKey:
        """Read a KEK as written by `to_text` (base64) or as 64 hex digits; whitespace ignored.

        `source` names where it came from (a file path, an environment variable) for messages.
        """
        raw = text.decode("ascii", "replace") if isinstance(text, bytes) else text
        compact = "".join(raw.split())
        key: bytes | None = None
        if len(compact) == 2 * KEK_BYTES:
            try:
                key = bytes.fromhex(compact)
            except ValueError:
                key = None
        for altchars in (None, b"-_"):
            if key is not None:
                break
            try:
                key = base64.b64decode(compact, altchars=altchars, validate=True)
            except (binascii.Error, ValueError):
                key = None
        if key is None or len(key) != KEK_BYTES:
            raise InvalidKeyEncryptionKey(
                f"{source} is not a key-encryption key: expected {KEK_BYTES} random bytes written "
                f"as base64 (44 characters) or hex (64 digits), got {len(compact)} characters; "
                "make one with `head -c 32 /dev/urandom | base64`"
            )
        return cls(key)

    def to_text(self) -> str:
        return base64.b64encode(self._key).decode()

    def seal(self, secret: bytes, context: str) -> Sealed:
        nonce = os.urandom(_NONCE_BYTES)
        return Sealed(self.id, nonce, self._aead.encrypt(nonce, secret, context.encode()))

    def unseal(self, sealed: Sealed, context: str) -> bytes:
        if sealed.kek_id != self.id:
            raise WrongKeyEncryptionKey(
                f"the CA state was sealed with key-encryption key {sealed.kek_id}, but the key "
                f"given is {self.id}; start with the key-encryption key used when the CA was "
                "initialised (it is never stored with the state)"
            )
        try:
            return self._aead.decrypt(sealed.nonce, sealed.ciphertext, context.encode())
        except InvalidTag as exc:
            raise CorruptState(
                f"the sealed {context} does not decrypt although the key-encryption key "
                "matches: the stored CA state was altered or damaged; restore it from a backup"
            ) from exc
