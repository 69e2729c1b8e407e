"""The server's HTTPS certificate from Weft's own CA, run on the server host with the installed
build's Python (/opt/weft/bin/python: `cryptography` is there).

    weft_server_tls.py prepare DIR --name NAME ...
    weft_server_tls.py check DIR --url URL --name NAME ... [--lifetime 720h] [--renew-before 240h]

DIR holds `server.key` (made here, never sent anywhere), `server.pem` (certificate and chain)
and `ca.pem` (what verifies `server.pem`: the role's local calls and the agents use it).

prepare: make the key if there is none; if there is no certificate for it yet, write a
self-signed one for NAMEs (the server needs a certificate to start, and the CA that will issue
the real one runs inside the server). check: ask the local server for its CA's roots (checking
it presents what this role put in place, so nothing else answers) and say whether `server.pem`
must be renewed: it does not chain to them, lacks a NAME, or expires within --renew-before. If
so, the output carries the body for `POST /v1/ca/server-certificate`: a CSR for the same key
(the role sends it with the operator token, which never reaches this script).
Files are written whole (temporary file, rename), the key 0640 root:weft.
Prints JSON (prepare: {"changed", "reason"}; check: {"renew", "reason", "bundle_pem",
"request"}); exits 1 with {"error": ...}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import grp
import ipaddress
import json
import os
import ssl
import sys
import urllib.error
import urllib.request
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError


class TLSError(Exception):
    pass


def write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    try:
        os.chown(tmp, 0, grp.getgrnam("weft").gr_gid)
    except KeyError:
        pass
    os.chmod(tmp, mode)
    tmp.replace(path)


def subject(address: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(address.strip("[]")))
    except ValueError:
        return x509.DNSName(address)


def split_names(names: list[str]) -> tuple[list[str], list[str]]:
    dns, ips = [], []
    for n in names:
        target = ips if isinstance(subject(n), x509.IPAddress) else dns
        target.append(n.strip("[]"))
    return dns, ips


def load_key(directory: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key((directory / "server.key").read_bytes(), None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TLSError(f"{directory / 'server.key'}: expected an EC key")
    return key


def load_chain(directory: Path) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates((directory / "server.pem").read_bytes())
    except (OSError, ValueError):
        return []


def prepare(directory: Path, names: list[str]) -> dict[str, object]:
    directory.mkdir(mode=0o750, parents=True, exist_ok=True)
    changed = False
    if not (directory / "server.key").exists():
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write(directory / "server.key", pem, 0o640)
        changed = True
    key = load_key(directory)
    chain = load_chain(directory)
    if chain and chain[0].public_key() == key.public_key():
        return {"changed": changed, "reason": "a certificate for the key is in place"}
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    own = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "weft server (bootstrap)")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(own)
        .issuer_name(own)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName([subject(n) for n in names]), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    write(directory / "server.pem", pem, 0o644)
    write(directory / "ca.pem", pem, 0o644)
    return {"changed": True, "reason": "a self-signed certificate until the CA issues one"}


def pinned_context(directory: Path) -> ssl.SSLContext:
    """Trusts the certificate in server.pem and what ca.pem holds: the local server must be
    presenting one of the certificates this role put in place."""
    leaf = load_chain(directory)[0].public_bytes(serialization.Encoding.PEM).decode()
    ctx = ssl.create_default_context(cadata=leaf + (directory / "ca.pem").read_text())
    ctx.check_hostname = False
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return ctx


def call(url: str, ctx: ssl.SSLContext) -> dict:
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=30) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:300].decode(errors="replace")
        raise TLSError(f"{url}: HTTP {exc.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise TLSError(f"{url}: {exc}") from None


def problem(
    chain: list[x509.Certificate],
    roots: list[x509.Certificate],
    key: ec.EllipticCurvePrivateKey,
    names: list[str],
    renew_before: float,
) -> str | None:
    if not chain:
        return "no certificate"
    if chain[0].public_key() != key.public_key():
        return "the certificate is not for server.key"
    # Verified as of `renew_before` from now: one that expires sooner is renewed now.
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=renew_before)
    for name in names:
        policy = PolicyBuilder().store(Store(roots)).time(when)
        try:
            verifier = policy.build_server_verifier(subject(name))  # type: ignore[arg-type]
            verifier.verify(chain[0], chain[1:])
        except VerificationError as exc:
            return f"not valid for {name} from the CA at {when:%Y-%m-%d}: {exc}"
    return None


def check(
    directory: Path, url: str, names: list[str], lifetime: float, renew_before: float
) -> dict[str, object]:
    key = load_key(directory)
    bundle = call(url + "/v1/ca/roots", pinned_context(directory))["bundle_pem"]
    roots = x509.load_pem_x509_certificates(bundle.encode())
    reason = problem(load_chain(directory), roots, key, names, renew_before)
    out: dict[str, object] = {"renew": reason is not None, "reason": reason or "valid",
                              "bundle_pem": bundle}  # fmt: skip
    if reason is not None:
        dns, ips = split_names(names)
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .sign(key, hashes.SHA256())
        )
        out["request"] = {
            "csr": csr.public_bytes(serialization.Encoding.PEM).decode(),
            "dns_names": dns,
            "ip_addresses": ips,
            "lifetime": lifetime,
        }
    return out


def duration(text: str) -> float:
    """Seconds from `90`, `90s`, `15m`, `720h` or `30d`."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip()
    if text and text[-1] in units:
        return float(text[:-1]) * units[text[-1]]
    return float(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["prepare", "check"])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--name", action="append", required=True)
    parser.add_argument("--url", default="")
    parser.add_argument("--lifetime", type=duration, default=30 * 86400.0, help="e.g. 720h")
    parser.add_argument("--renew-before", type=duration, default=10 * 86400.0, help="e.g. 10d")
    args = parser.parse_args(argv)
    try:
        if args.action == "prepare":
            result = prepare(args.dir, args.name)
        else:
            result = check(args.dir, args.url.rstrip("/"), args.name, args.lifetime,
                           args.renew_before)  # fmt: skip
    except (TLSError, OSError, ValueError, KeyError) as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
