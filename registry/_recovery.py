"""`weft server --recover-operator`: a new operator token when none is left.

What it needs, exactly: the server's own etcd settings (endpoints, client certificate, user),
because it reads and writes the prefix directly and binds no port, and the CA's
key-encryption key, which must open the CA state stored under that prefix. Neither is
something a client of the HTTP API has: no request can mint an operator token without
already holding one. (A cluster whose CA was never initialised has no state to check the key
against; there etcd write access, which already controls everything, is the requirement.)

It mints a token only when the prefix was bootstrapped and holds no operator token; the write
is one transaction guarded on the `bootstrapped` marker, so two recoveries racing mint one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import ca

from ._acl import Role, Token, new_token
from ._ca_api import EtcdCAStore, read_kek
from ._config import ServerConfig
from ._keys import Keys
from .etcd import Compare, EtcdClient, EtcdError, Put

log = logging.getLogger("weft.server.recovery")


class RecoveryRefused(Exception):
    """Recovery did not mint a token; the message says why and what to do instead."""


async def recover_operator(
    etcd: EtcdClient,
    keys: Keys,
    kek: ca.KeyEncryptionKey | None,
    *,
    now: Callable[[], float] = time.time,
) -> tuple[str, Token]:
    """Mint an operator token if none is left; raises RecoveryRefused otherwise."""
    marker = keys.prefix + "bootstrapped"
    try:
        bootstrapped = await etcd.get(marker)
        tokens = await etcd.range_all(keys.token())
    except EtcdError as exc:
        raise RecoveryRefused(f"cannot read etcd: {exc}") from exc
    if bootstrapped is None:
        raise RecoveryRefused(
            f"nothing to recover: prefix {keys.prefix} was never bootstrapped; "
            "start one server with --bootstrap instead"
        )
    operators = []
    for kv in tokens.kvs:
        try:
            token = Token.from_json(kv.value)
        except (ValueError, TypeError, KeyError):
            continue
        if token.role is Role.OPERATOR:
            operators.append(token)
    if operators:
        accessors = ", ".join(t.accessor for t in operators)
        raise RecoveryRefused(
            f"not needed: {len(operators)} operator token(s) exist (accessor {accessors}); "
            "create another with `weft token create --role operator` using one of them"
        )
    await _check_kek(etcd, keys, kek)
    secret, token = new_token(
        Role.OPERATOR,
        description=f"recovered {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(now()))}",
        now=now(),
    )
    result = await etcd.txn(
        [Compare("mod", marker, "=", bootstrapped.mod_revision)],
        [Put(keys.token(token.secret_hash), token.to_json()), Put(marker, token.accessor.encode())],
    )
    if not result.succeeded:
        raise RecoveryRefused(
            "another recovery or bootstrap changed the cluster at the same moment; "
            "run `weft server --recover-operator` again to see where things stand"
        )
    return secret, token


async def _check_kek(etcd: EtcdClient, keys: Keys, kek: ca.KeyEncryptionKey | None) -> None:
    store = EtcdCAStore(etcd, keys)
    if await store.load() is None:
        log.warning("the CA is not initialised: recovery relies on etcd access alone")
        return
    if kek is None:
        raise RecoveryRefused(
            "recovery needs the CA's key-encryption key (--ca-kek-file or WEFT_SERVER_CA_KEK): "
            "it proves this host holds the cluster's server secrets"
        )
    try:
        await ca.CertificateAuthority(store, kek).load()
    except (ca.WrongKeyEncryptionKey, ca.CorruptState) as exc:
        raise RecoveryRefused(f"the key-encryption key does not open the stored CA: {exc}") from exc


def recover_command(config: ServerConfig, out: Callable[[str], None] = print) -> int:
    """The `--recover-operator` mode of `weft server`: exit 0 with a token minted, else 1."""
    import trio

    from .server import _etcd_client, write_private

    kek = read_kek(config.ca_kek_file, config.ca_kek)

    async def main() -> tuple[str, Token]:
        async with _etcd_client(config) as etcd:
            return await recover_operator(etcd, Keys(config.etcd_prefix), kek)

    try:
        secret, token = trio.run(main)
    except RecoveryRefused as exc:
        log.error("recovery refused: %s", exc)
        return 1
    if config.bootstrap_token_file:
        write_private(config.bootstrap_token_file, secret + "\n")
        log.info(
            "recovered operator token written",
            extra={"kv": {"file": config.bootstrap_token_file, "accessor": token.accessor}},
        )
    else:
        out(f"recovered operator token (shown once; keep it safe): {secret}")
    log.warning(
        "minted a new operator token by --recover-operator",
        extra={"kv": {"accessor": token.accessor}},
    )
    return 0
