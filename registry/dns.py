"""The DNS relay an agent serves its host with (see `_dns_relay.py`)."""

from __future__ import annotations

from ._dns_relay import DNSRelay as DNSRelay

__all__ = ["DNSRelay"]
