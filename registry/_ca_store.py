"""The CA's state in etcd (one key, saved with compare-and-swap) and its key-encryption key."""

from __future__ import annotations

import ca
from ca import KeyEncryptionKey, Stored

from ._keys import Keys
from .etcd import Compare, EtcdClient, Put


class EtcdCAStore:
    """`ca.CAStore` on one etcd key: the version is its mod_revision, saves compare it."""

    def __init__(self, etcd: EtcdClient, keys: Keys) -> None:
        self.etcd = etcd
        self.key = keys.ca("state")

    async def load(self) -> Stored | None:
        kv = await self.etcd.get(self.key)
        return None if kv is None else Stored(kv.value, kv.mod_revision)

    async def save(self, data: bytes, expected_version: int | None) -> int:
        guard = (
            Compare("version", self.key, "=", 0)
            if expected_version is None
            else Compare("mod", self.key, "=", expected_version)
        )
        result = await self.etcd.txn([guard], [Put(self.key, data)])
        if not result.succeeded:
            raise ca.StateConflict(
                f"the CA state changed since version {expected_version} was read"
            )
        return result.revision


def read_kek(kek_file: str, kek_text: str) -> KeyEncryptionKey | None:
    """The key-encryption key from the server's settings (a file, or the env variable)."""
    if kek_text:
        return KeyEncryptionKey.from_text(kek_text, source="WEFT_SERVER_CA_KEK")
    if kek_file:
        try:
            with open(kek_file, "rb") as f:
                return KeyEncryptionKey.from_text(f.read(), source=kek_file)
        except OSError as exc:
            raise ca.InvalidKeyEncryptionKey(
                f"cannot read the key-encryption key file {kek_file}: {exc.strerror}"
            ) from exc
    return None
