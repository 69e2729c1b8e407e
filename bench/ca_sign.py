"""CSR signings per second of the pure signer (no server, no HTTP, no etcd).

    .venv/bin/python bench/ca_sign.py [--seconds 3] [--csrs 200] [--rsa]

Prints, for one core: CSR checks alone (parse + signature + key policy), leaf issuing alone
(build + sign + PEM), the whole `Signer.sign_csr`, and `CertificateAuthority.sign` over an
in-memory store (adds authorization and the high-water-mark check). The end-to-end figure
through `weft server` is bench/ca.py's; this one is the ceiling that figure works under.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import trio

from ca import (
    CertificateAuthority,
    KeyEncryptionKey,
    KeyType,
    MemoryCAStore,
    NodeAgent,
    ServiceRef,
    Signer,
    SpiffeId,
    check_csr,
    generate_material,
    make_key_and_csr,
)

IDENTITY = SpiffeId("weft.local", "default", "web")
AGENT = NodeAgent("node-1", frozenset({ServiceRef("default", "web")}))
DAY = timedelta(hours=24)


def rate(label: str, seconds: float, step: Callable[[int], object]) -> float:
    step(0)  # warm up
    done, start = 0, time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(50):
            step(done)
            done += 1
    per_second = done / (time.perf_counter() - start)
    print(f"{label:<44} {per_second:>9,.0f} /s   ({1e6 / per_second:,.0f} µs each)")
    return per_second


async def facade_rate(csrs: list[bytes], seconds: float) -> float:
    ca = CertificateAuthority(MemoryCAStore(), KeyEncryptionKey.generate())
    await ca.initialise(IDENTITY.trust_domain)
    await ca.sign(csrs[0], IDENTITY, AGENT)
    done, start = 0, time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        await ca.sign(csrs[done % len(csrs)], IDENTITY, AGENT)
        done += 1
    per_second = done / (time.perf_counter() - start)
    label = "CertificateAuthority.sign (memory store)"
    print(f"{label:<44} {per_second:>9,.0f} /s   ({1e6 / per_second:,.0f} µs each)")
    return per_second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement [3]")
    parser.add_argument("--csrs", type=int, default=200, help="distinct CSRs to cycle [200]")
    parser.add_argument("--rsa", action="store_true", help="RSA-2048 CSR keys instead of P-256")
    args = parser.parse_args()

    key_type = KeyType.RSA_2048 if args.rsa else KeyType.EC_P256
    csrs = [make_key_and_csr(IDENTITY, key_type).csr_pem for _ in range(args.csrs)]
    now = datetime.now(UTC)
    m = generate_material(IDENTITY.trust_domain, now)
    signer = Signer(IDENTITY.trust_domain, m.root_id, m.root, m.chain, m.issuer())
    keys = [check_csr(c, IDENTITY).public_key for c in csrs]
    print(f"CSR keys: {key_type.value}; intermediate: EC P-256; {args.csrs} distinct CSRs")
    rate(
        "check_csr (parse, verify, key policy)",
        args.seconds,
        lambda i: check_csr(csrs[i % len(csrs)], IDENTITY),
    )
    rate(
        "Signer.issue_leaf (build, sign, PEM)",
        args.seconds,
        lambda i: signer.issue_leaf(keys[i % len(keys)], IDENTITY, now, DAY),
    )
    total = rate(
        "Signer.sign_csr (raw CSR signings)",
        args.seconds,
        lambda i: signer.sign_csr(csrs[i % len(csrs)], IDENTITY, now, DAY),
    )
    trio.run(facade_rate, csrs, args.seconds)
    print(f"raw CSR signings per second: {total:,.0f}")


if __name__ == "__main__":
    main()
