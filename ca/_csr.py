"""Certificate signing requests: checking one that arrives, and making one on a host.

The CA reads exactly two things from a CSR: its public key, and (if present) the SPIFFE ID it
asks for, which must be the identity the request names. Everything else a CSR may carry (subject,
extra SANs, basic constraints with CA:true, key usages, any other extension) is ignored: the
leaf is built from the public key and the identity alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from ._errors import IdentityMismatch, InvalidCSR, InvalidIdentity
from ._identity import SpiffeId
from ._keys import KeyType, PrivateKey, PublicKey, check_public_key, private_key_pem

# A CSR is a few hundred bytes to a few KB; refuse megabytes before handing them to a parser.
MAX_CSR_BYTES = 16 * 1024
_PEM_HEADER = b"-----BEGIN CERTIFICATE REQUEST-----"


@dataclass(frozen=True, slots=True)
class CheckedCSR:
    """What the CA takes from a CSR that passed every check."""

    public_key: PublicKey
    identity: SpiffeId


def check_csr(pem: bytes | str, requested: SpiffeId) -> CheckedCSR:
    """Parse and check a PEM CSR for `requested`; raise InvalidCSR/UnsupportedKey saying why not."""
    data = pem.encode() if isinstance(pem, str) else pem
    if len(data) > MAX_CSR_BYTES:
        raise InvalidCSR(f"the CSR is {len(data)} bytes; a CSR is at most {MAX_CSR_BYTES} bytes")
    if _PEM_HEADER not in data:
        raise InvalidCSR(
            "the CSR is not PEM: expected a '-----BEGIN CERTIFICATE REQUEST-----' block "
            "(make one with `openssl req -new` or ca.make_key_and_csr)"
        )
    try:
        csr = x509.load_pem_x509_csr(data)
    except ValueError as exc:
        raise InvalidCSR(f"the CSR could not be parsed as PKCS#10: {exc}") from exc
    try:
        signed = csr.is_signature_valid
    except (UnsupportedAlgorithm, ValueError) as exc:
        raise InvalidCSR(f"the CSR's signature could not be checked: {exc}") from exc
    if not signed:
        raise InvalidCSR(
            "the CSR's signature does not verify: it must be signed by the private key "
            "matching the public key it carries"
        )
    try:
        key = csr.public_key()
    except (UnsupportedAlgorithm, ValueError) as exc:
        raise InvalidCSR(f"the CSR's public key could not be read: {exc}") from exc
    public_key = check_public_key(key, "the CSR's key")
    _check_requested_identity(csr, requested)
    return CheckedCSR(public_key, requested)


def _check_requested_identity(csr: x509.CertificateSigningRequest, requested: SpiffeId) -> None:
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        raise InvalidCSR(f"the CSR's extensions could not be parsed: {exc}") from exc
    for uri in san.value.get_values_for_type(x509.UniformResourceIdentifier):
        if not uri.lower().startswith("spiffe:"):
            continue  # some other URI SAN: ignored like every other extra name
        try:
            asked = SpiffeId.parse(uri)
        except InvalidIdentity as exc:
            raise IdentityMismatch(f"the CSR carries a malformed SPIFFE ID: {exc}") from exc
        if asked != requested:
            raise IdentityMismatch(
                f"the CSR asks for {asked.uri} but the request is for {requested.uri}; "
                "make the CSR for the identity you request (or leave the SPIFFE ID out)"
            )


@dataclass(frozen=True, slots=True)
class KeyAndCSR:
    """A private key made on this host and the CSR for it; the key never leaves the host."""

    key_pem: bytes
    csr_pem: bytes


def make_csr(key: PrivateKey, identity: SpiffeId) -> bytes:
    """A PEM CSR for `identity`, signed by `key`, carrying the SPIFFE ID as its URI SAN."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity.service)]))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity.uri)]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def make_key_and_csr(identity: SpiffeId, key_type: KeyType = KeyType.EC_P256) -> KeyAndCSR:
    """Generate a key of `key_type` and a CSR for `identity` (what `weft ca issue` and the agent
    do before asking the server to sign)."""
    key = key_type.generate()
    return KeyAndCSR(private_key_pem(key), make_csr(key, identity))
