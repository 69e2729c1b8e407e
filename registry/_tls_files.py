"""The server's own HTTPS certificate: a complete, checked `ssl.SSLContext` or a reason why not.

A reload (SIGHUP) builds a brand-new context from the files and the server swaps it in only
if this succeeds; loading into the live context instead would leave it half-changed (OpenSSL
drops the old certificate before it finds that the new key does not match), so every later
handshake would fail while the old certificate was thought to be kept.
"""

from __future__ import annotations

import ssl

from ._config import ConfigError


def server_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A TLS server context holding `cert_file`'s chain and its `key_file`.

    Raises ConfigError naming the file and what is wrong with it: missing or unreadable,
    not PEM, or a key that is not the certificate's.
    """
    for field, path in (("tls_cert_file", cert_file), ("tls_key_file", key_file)):
        try:
            with open(path, "rb") as f:
                f.read(1)
        except OSError as exc:
            raise ConfigError(field, f"cannot read {path}: {exc.strerror}") from None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert_file, key_file)
    except ssl.SSLError as exc:
        reason = exc.reason or str(exc)
        if reason == "KEY_VALUES_MISMATCH":
            raise ConfigError(
                "tls_key_file",
                f"the key in {key_file} is not the key of the certificate in {cert_file}",
            ) from None
        if "PEM" in str(exc) or reason in ("NO_START_LINE", "BAD_END_LINE"):
            raise ConfigError(
                "tls_cert_file",
                f"cannot load {cert_file} with {key_file} as PEM certificate and key: {reason}",
            ) from None
        raise ConfigError(
            "tls_cert_file", f"cannot load {cert_file} with {key_file}: {reason}"
        ) from None
    return ctx
