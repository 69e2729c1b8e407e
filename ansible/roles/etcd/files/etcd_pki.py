#!/usr/bin/env python3
"""The etcd cluster's certificates, kept on the controller (run with Ansible's own Python:
`cryptography` is a dependency of ansible-core, so nothing else is needed).

    etcd_pki.py DIR --member NAME=ADDR[,ADDR...] ... --client NAME ... [--days N] [--renew-days N]

In DIR (made 0700): `ca.pem` + `ca.key`, `member-NAME.pem` + `.key` for each member (serverAuth
and clientAuth: the same certificate serves clients and peers, and etcd's JSON gateway presents
it when it calls its own gRPC port), `client-NAME.pem` + `.key` for each client (clientAuth).

Only what is missing or wrong is made: a certificate is reissued when its key is not beside it,
it is not signed by `ca.pem`, it lacks an address it must carry, or it expires within
`--renew-days`. An operator who brings a PKI puts the files there; without `ca.key` nothing can
be issued, and a missing or wrong certificate is an error naming the file and the reason.
Prints JSON: {"changed": [files written]}; exits 1 with {"error": ...} on a problem.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import json
import os
import sys
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVER_AND_CLIENT = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
CLIENT = [ExtendedKeyUsageOID.CLIENT_AUTH]


class PKIError(Exception):
    pass


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)
    tmp.replace(path)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def san(address: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(address.strip("[]")))
    except ValueError:
        return x509.DNSName(address)


class Authority:
    def __init__(self, directory: Path, days: int) -> None:
        self.dir = directory
        self.days = days
        self.changed: list[str] = []
        cert_path, key_path = directory / "ca.pem", directory / "ca.key"
        if not cert_path.exists():
            if key_path.exists():
                raise PKIError(f"{key_path} exists without ca.pem beside it")
            self._make_ca(cert_path, key_path)
        self.cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        self.key = None
        if key_path.exists():
            loaded = serialization.load_pem_private_key(key_path.read_bytes(), None)
            if loaded.public_key() != self.cert.public_key():
                raise PKIError(f"{key_path} is not the key of {cert_path}")
            self.key = loaded

    def _make_ca(self, cert_path: Path, key_path: Path) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        start = now() - dt.timedelta(minutes=5)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name("Weft etcd CA"))
            .issuer_name(name("Weft etcd CA"))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        write(key_path, key_pem(key), 0o600)
        write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        self.changed += [str(cert_path), str(key_path)]

    def problem(
        self, cert_path: Path, key_path: Path, addresses: list[str], renew: dt.timedelta
    ) -> str | None:
        """Why the pair at these paths will not do, or None."""
        if not cert_path.exists() or not key_path.exists():
            return "missing"
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            key = serialization.load_pem_private_key(key_path.read_bytes(), None)
        except ValueError as exc:
            return f"unreadable ({exc})"
        if key.public_key() != cert.public_key():
            return f"{key_path.name} is not the key of {cert_path.name}"
        try:
            cert.verify_directly_issued_by(self.cert)
        except (ValueError, TypeError, InvalidSignature):
            return "not signed by ca.pem"
        if cert.not_valid_after_utc - renew < now():
            return f"expires {cert.not_valid_after_utc:%Y-%m-%d}"
        if addresses:
            try:
                names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            except x509.ExtensionNotFound:
                return "no subjectAltName"
            missing = [a for a in addresses if san(a) not in list(names)]
            if missing:
                return f"does not name {', '.join(missing)}"
        return None

    def ensure(
        self, stem: str, common_name: str, addresses: list[str], usage: list, renew: dt.timedelta
    ) -> None:
        cert_path, key_path = self.dir / f"{stem}.pem", self.dir / f"{stem}.key"
        problem = self.problem(cert_path, key_path, addresses, renew)
        if problem is None:
            return
        if self.key is None:
            raise PKIError(
                f"{cert_path}: {problem}, and there is no ca.key to issue a new one with"
            )
        key = ec.generate_private_key(ec.SECP256R1())
        start = now() - dt.timedelta(minutes=5)
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(common_name))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(
                min(start + dt.timedelta(days=self.days), self.cert.not_valid_after_utc)
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
        )
        if addresses:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([san(a) for a in addresses]), critical=False
            )
        cert = builder.sign(self.key, hashes.SHA256())
        # Key first, certificate last: a pair read in between has the old certificate, which
        # the next run finds not matching and replaces.
        write(key_path, key_pem(key), 0o600)
        write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        self.changed += [str(cert_path), str(key_path)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--member", action="append", default=[], metavar="NAME=ADDR,...")
    parser.add_argument("--client", action="append", default=[], metavar="NAME")
    parser.add_argument("--days", type=int, default=825, help="certificate lifetime")
    parser.add_argument("--renew-days", type=int, default=90, help="reissue when fewer remain")
    args = parser.parse_args(argv)
    try:
        args.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(args.dir, 0o700)
        ca = Authority(args.dir, args.days)
        renew = dt.timedelta(days=args.renew_days)
        for member in args.member:
            member_name, _, addresses = member.partition("=")
            wanted = [a for a in addresses.split(",") if a]
            if not member_name or not wanted:
                raise PKIError(f"--member {member!r}: expected NAME=ADDR[,ADDR...]")
            ca.ensure(f"member-{member_name}", member_name, wanted, SERVER_AND_CLIENT, renew)
        for client in args.client:
            ca.ensure(f"client-{client}", client, [], CLIENT, renew)
    except (PKIError, OSError, ValueError) as exc:
        print(json.dumps({"error": str(exc)}))
        return 1
    print(json.dumps({"changed": ca.changed}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
