"""The DNS relay an agent serves on its host (see `_dns_relay.py`), and its address parsing."""

from __future__ import annotations

from ._dns_relay import DNSRelay as DNSRelay

DEFAULT_DNS_PORT = 8600

__all__ = ["DNSRelay", "DEFAULT_DNS_PORT"]
