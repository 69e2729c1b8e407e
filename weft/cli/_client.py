"""Flags and plumbing shared by the commands that talk to `weft server` over HTTP."""

from __future__ import annotations

import argparse
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import trio

from ._output import CommandError

T = TypeVar("T")
DEFAULT_ADDRESS = "http://127.0.0.1:8500"


def add_client_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("server connection")
    group.add_argument(
        "--address",
        metavar="URL",
        help=f"server address(es), comma-separated (env WEFT_ADDR) [default: {DEFAULT_ADDRESS}]",
    )
    group.add_argument("--token", metavar="SECRET", help="access token (env WEFT_TOKEN)")
    group.add_argument(
        "--token-file", metavar="FILE", help="read the access token from FILE (env WEFT_TOKEN_FILE)"
    )
    group.add_argument(
        "--ca-file", metavar="FILE", help="CA bundle to verify an HTTPS server (env WEFT_CA_FILE)"
    )


def token_from(args: argparse.Namespace) -> str | None:
    if getattr(args, "token", None):
        return args.token
    if os.environ.get("WEFT_TOKEN"):
        return os.environ["WEFT_TOKEN"]
    path = getattr(args, "token_file", None) or os.environ.get("WEFT_TOKEN_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise CommandError(f"cannot read token file {path}: {exc.strerror}", 64) from None
    return None


def call(args: argparse.Namespace, work: Callable[..., Awaitable[T]]) -> T:
    """Run `work(client)` against the server named by the flags; errors become CommandError."""
    from registry.client import APIError, RegistryClient, ServerUnreachable

    address = getattr(args, "address", None) or os.environ.get("WEFT_ADDR") or DEFAULT_ADDRESS
    ca_file = getattr(args, "ca_file", None) or os.environ.get("WEFT_CA_FILE")

    async def main() -> T:
        async with RegistryClient(address, token=token_from(args), ca_file=ca_file) as client:
            return await work(client)

    try:
        return trio.run(main)
    except APIError as exc:
        raise CommandError(f"the server refused: {exc.message} (HTTP {exc.status})") from None
    except ServerUnreachable as exc:
        raise CommandError(f"{exc.message}; is `weft server` running at {address}?") from None
