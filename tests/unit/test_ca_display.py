"""Fingerprints, expiry dates and summaries, as `weft ca status|issue` show them."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives import serialization

from ca import (
    describe_certificate,
    fingerprint_sha256,
    format_duration,
    format_expiry,
    generate_material,
)

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def test_durations_show_the_two_largest_units() -> None:
    assert format_duration(timedelta(days=3, hours=4, minutes=5)) == "3d 4h"
    assert format_duration(timedelta(hours=23, minutes=59, seconds=30)) == "23h 59m"
    assert format_duration(timedelta(minutes=5, seconds=10)) == "5m 10s"
    assert format_duration(timedelta(seconds=12)) == "12s"
    assert format_duration(timedelta(0)) == "0s"


def test_expiry_says_how_long_is_left_or_how_long_ago_it_ended() -> None:
    assert format_expiry(NOW + timedelta(hours=23, minutes=59), NOW) == (
        "2030-01-02 11:59:00 UTC (in 23h 59m)"
    )
    assert format_expiry(NOW - timedelta(hours=2, minutes=5), NOW) == (
        "2030-01-01 09:55:00 UTC (expired 2h 5m ago)"
    )


def test_fingerprints_are_sha256_of_the_der_in_colon_hex() -> None:
    root = generate_material("weft.local", NOW).root
    digest = hashlib.sha256(root.public_bytes(serialization.Encoding.DER)).digest()
    text = fingerprint_sha256(root)
    assert text == ":".join(f"{b:02X}" for b in digest) and len(text) == 95
    assert fingerprint_sha256(root.public_bytes(serialization.Encoding.PEM)) == text


def test_a_summary_of_a_root_has_what_a_person_checks() -> None:
    root = generate_material("weft.local", NOW).root
    summary = describe_certificate(root)
    assert summary.is_ca and summary.key == "EC P-256"
    assert summary.uris == ("spiffe://weft.local",) and summary.spiffe_id == "spiffe://weft.local"
    text = "\n".join(summary.lines(NOW))
    assert "expires:     2039-12-30" in text and "(in 3650d)" in text
    assert summary.fingerprint in text
