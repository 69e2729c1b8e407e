"""`python -m tests.harness.hosts build|path|reap` (what scripts/testhost-root runs)."""

from __future__ import annotations

import argparse
import sys

from ._root import cache_dir as cache_dir_of
from ._root import ensure_root, prune_roots, recipe_hash
from ._runs import reap_stale_hosts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/testhost-root", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build the cached root if missing; print its path")
    sub.add_parser("path", help="print where the cached root for this recipe is (or would be)")
    sub.add_parser("reap", help="remove hosts, cgroups and directories left by dead sessions")
    sub.add_parser("prune", help="remove cached roots of other recipes (not in use!)")
    args = parser.parse_args(argv)
    if args.command == "build":
        print(ensure_root())
    elif args.command == "path":
        print(cache_dir_of() / f"root-{recipe_hash()}")
    elif args.command == "prune":
        for path in prune_roots():
            print(f"removed {path}")
    else:
        for name in reap_stale_hosts():
            print(f"reaped {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
