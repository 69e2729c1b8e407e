"""`weft ca init|status|rotate|issue|roots|gen-kek`: the mesh's certificate authority."""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ._client import add_client_flags, call
from ._output import CommandError, add_output_flag, print_json

KEY_TYPES = ("ec-p256", "rsa-2048", "rsa-3072")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ca",
        help="manage the mesh certificate authority",
        description="Initialise, inspect and rotate the CA that signs the mesh's SPIFFE "
        "certificates, or issue a certificate for testing.",
    )
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    kek = sub.add_parser(
        "gen-kek",
        help="write a new key-encryption key for weft server",
        description="Write 32 random bytes (base64) to FILE with mode 0600. "
        "Give it to every server with --ca-kek-file; it is never stored in "
        "etcd, and the CA cannot be opened without it.",
    )
    kek.add_argument("file", type=Path)
    kek.set_defaults(func=run_gen_kek)

    init = sub.add_parser("init", help="create the CA (or import your own)")
    init.add_argument("--trust-domain", required=True, help="e.g. weft.example.com")
    init.add_argument(
        "--key-type", choices=KEY_TYPES, default="ec-p256", help="root key type [default: ec-p256]"
    )
    init.add_argument(
        "--offline-root-key",
        type=Path,
        metavar="FILE",
        help="do not keep the root key on the servers: write it to FILE (0600) "
        "instead; rotation will ask for it back",
    )
    init.add_argument("--root-cert", type=Path, help="bring your own CA: its root certificate")
    init.add_argument(
        "--intermediate-cert", type=Path, help="bring your own CA: the intermediate that will sign"
    )
    init.add_argument("--intermediate-key", type=Path, help="bring your own CA: its key")
    add_client_flags(init)
    init.set_defaults(func=run_init)

    status = sub.add_parser("status", help="trust domain, roots, fingerprints and expiry")
    add_output_flag(status)
    add_client_flags(status)
    status.set_defaults(func=run_status)

    rotate = sub.add_parser(
        "rotate",
        help="make a new root and intermediate; the old root stays trusted until "
        "every certificate it signed has expired",
    )
    rotate.add_argument(
        "--root-key",
        type=Path,
        metavar="FILE",
        help="the current root's key, if it is kept offline",
    )
    rotate.add_argument("--key-type", choices=KEY_TYPES, help="new root key type")
    rotate.add_argument(
        "--offline-root-key",
        type=Path,
        metavar="FILE",
        help="write the new root key to FILE instead of keeping it",
    )
    add_client_flags(rotate)
    rotate.set_defaults(func=run_rotate)

    issue = sub.add_parser(
        "issue",
        help="issue a leaf certificate (key made locally) for testing",
        description="Make a key here, send only a CSR, and write SERVICE.key (0600), "
        "SERVICE.crt (leaf + chain) and bundle.pem into --out.",
    )
    issue.add_argument("service")
    issue.add_argument("--namespace", default="default")
    issue.add_argument("--lifetime", help="e.g. 1h, 24h [default: the server's]")
    issue.add_argument("--out", type=Path, default=Path(), help="directory [default: .]")
    add_client_flags(issue)
    issue.set_defaults(func=run_issue)

    roots = sub.add_parser("roots", help="print (or save) the trust bundle")
    roots.add_argument("--out", type=Path, help="write the bundle PEM here")
    add_client_flags(roots)
    roots.set_defaults(func=run_roots)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    path.chmod(0o600)


def _read(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text()
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}", 66) from None


def run_gen_kek(args: argparse.Namespace) -> int:
    from ca import KeyEncryptionKey

    if args.file.exists():
        raise CommandError(f"{args.file} exists; refusing to overwrite a key-encryption key", 73)
    _write_private(args.file, (KeyEncryptionKey.generate().to_text() + "\n").encode())
    print(f"wrote a new key-encryption key to {args.file} (mode 0600); keep a copy offline")
    return 0


def _print_roots(bundle: dict[str, Any]) -> None:
    print(f"trust domain: {bundle['trust_domain']}")
    for root in bundle["roots"]:
        state = "active" if root["active"] else f"retiring (dropped after {root['drop_after']})"
        print(f"root {root['name']} [{state}]")
        print(f"  sha256 fingerprint: {root['fingerprint_sha256']}")
        print(f"  valid: {root['not_before']} .. {root['not_after']}")


def run_init(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {
        "trust_domain": args.trust_domain,
        "key_type": args.key_type,
        "keep_root_key": args.offline_root_key is None,
    }
    byo = [args.root_cert, args.intermediate_cert, args.intermediate_key]
    if any(byo):
        if not all(byo):
            raise CommandError(
                "bring your own CA needs --root-cert, --intermediate-cert and "
                "--intermediate-key together",
                64,
            )
        body = {
            "trust_domain": args.trust_domain,
            "root_cert": _read(args.root_cert),
            "intermediate_cert": _read(args.intermediate_cert),
            "intermediate_key": _read(args.intermediate_key),
        }
    if args.offline_root_key and args.offline_root_key.exists():
        raise CommandError(f"{args.offline_root_key} exists; refusing to overwrite it", 73)
    result = call(args, lambda c: c.ca_init(body))
    if result.get("root_key_pem"):
        _write_private(args.offline_root_key, result["root_key_pem"].encode())
        print(
            f"root key written to {args.offline_root_key} (0600): keep it offline; "
            "`weft ca rotate --root-key` will need it"
        )
    print("CA initialised")
    _print_roots(result["bundle"])
    return 0


def run_status(args: argparse.Namespace) -> int:
    status = call(args, lambda c: c.ca_status())
    if args.output == "json":
        print_json(status)
        return 0
    _print_roots(status["bundle"])
    print(
        f"phase: {status['phase']}   origin: {status['origin']}   "
        f"root key: {'offline' if status['root_key_offline'] else 'sealed in etcd'}"
    )
    print(f"intermediate valid until {status['intermediate_not_after']}")
    hours = status["leaf_ttl_seconds"] / 3600
    print(f"leaf lifetime: {hours:g}h; certificates issued until {status['issued_until']}")
    if status["next_change"]:
        print(f"next change: {status['next_change']}")
    return 0


def run_rotate(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {}
    if args.root_key:
        body["root_key"] = _read(args.root_key)
    if args.key_type:
        body["key_type"] = args.key_type
    if args.offline_root_key:
        if args.offline_root_key.exists():
            raise CommandError(f"{args.offline_root_key} exists; refusing to overwrite it", 73)
        body["keep_root_key"] = False
    result = call(args, lambda c: c.ca_rotate(body))
    if result.get("root_key_pem"):
        _write_private(args.offline_root_key, result["root_key_pem"].encode())
        print(f"new root key written to {args.offline_root_key} (0600)")
    print(
        f"rotated: the previous root {result['previous_root_id'][:16]} stays trusted until "
        f"{result['previous_root_drop_after']}"
    )
    _print_roots(result["bundle"])
    return 0


def run_issue(args: argparse.Namespace) -> int:
    from ca import SpiffeId, describe_certificate, make_key_and_csr

    async def work(client: Any) -> tuple[bytes, dict[str, Any]]:
        roots, _ = await client.ca_roots()
        identity = SpiffeId(roots["trust_domain"], args.namespace, args.service)
        made = make_key_and_csr(identity)
        signed = await client.ca_sign(
            made.csr_pem.decode(), args.service, namespace=args.namespace, lifetime=args.lifetime
        )
        return made.key_pem, signed

    key_pem, signed = call(args, work)
    args.out.mkdir(parents=True, exist_ok=True)
    key_path = args.out / f"{args.service}.key"
    _write_private(key_path, key_pem)
    (args.out / f"{args.service}.crt").write_text(signed["full_chain_pem"])
    (args.out / "bundle.pem").write_text(signed["bundle_pem"])
    summary = describe_certificate(signed["certificate_pem"])
    print(f"issued {signed['spiffe_id']}")
    for line in summary.lines(datetime.now(UTC)):
        print("  " + line)
    print(
        f"wrote {key_path} (0600), {args.out / (args.service + '.crt')}, {args.out / 'bundle.pem'}"
    )
    return 0


def run_roots(args: argparse.Namespace) -> int:
    bundle, _ = call(args, lambda c: c.ca_roots())
    if args.out:
        args.out.write_text(bundle["bundle_pem"])
        print(f"wrote {len(bundle['roots'])} root(s) to {args.out}")
    _print_roots(bundle)
    return 0
