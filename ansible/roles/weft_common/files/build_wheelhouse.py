#!/usr/bin/env python3
"""Build a wheelhouse of Weft and all its dependencies on the controller, for the hosts.

The hosts then install with `pip install --no-index --find-links`, so they need no access to a
package index. The project wheel is built from a clean copy of the source tree (setuptools'
`build/` directory would otherwise carry files deleted from the tree into the wheel); the
dependencies are downloaded as binary wheels for the hosts' Python and platform, which need not
be the controller's.

The wheelhouse is built in a temporary directory beside DEST and renamed into place only when
complete, so an existing DEST is always whole; `SHA256SUMS` and `wheelhouse.json` (the version
and target it was built for) are written last.

    build_wheelhouse.py --source . --dest .cache/wheelhouse/weft-0.1.0-cp311-x86_64 \
        --python-version 3.11 --arch x86_64
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Directories of a checkout that never belong in a build.
IGNORED = (
    ".git",
    ".venv",
    ".cache",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".mypy_cache",
    ".weft-dev",
    "node_modules",
)


def platforms(arch: str) -> list[str]:
    """manylinux tags any supported host (Debian 11+, Ubuntu 20.04+: glibc >= 2.31) installs."""
    return [f"manylinux_2_28_{arch}", f"manylinux_2_17_{arch}", f"manylinux2014_{arch}"]


def run(argv: list[str]) -> None:
    print("+", " ".join(argv), file=sys.stderr, flush=True)
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=sys.stderr, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"build_wheelhouse: command failed (exit {proc.returncode}): {argv[:4]}")


def build(
    source: Path, dest: Path, python_version: str, tags: list[str], pip: list[str]
) -> dict[str, object]:
    if not (source / "pyproject.toml").is_file():
        raise SystemExit(f"build_wheelhouse: {source} has no pyproject.toml; is it Weft's tree?")
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        tree = work / "src"
        shutil.copytree(source, tree, ignore=shutil.ignore_patterns(*IGNORED), symlinks=True)
        wheels = work / "wheels"
        run([*pip, "wheel", "--no-deps", "--wheel-dir", str(wheels), str(tree)])
        built = sorted(wheels.glob("weft-*.whl"))
        if len(built) != 1:
            raise SystemExit(f"build_wheelhouse: expected one weft wheel, got {built}")
        version = built[0].name.split("-")[1]
        tag = "cp" + python_version.replace(".", "")
        argv = [*pip, "download", "--dest", str(wheels), "--only-binary=:all:"]
        argv += ["--python-version", python_version, "--implementation", "cp"]
        argv += ["--abi", tag, "--abi", "abi3", "--abi", "none"]
        for platform in tags:
            argv += ["--platform", platform]
        run([*argv, str(built[0])])
        sums = []
        for wheel in sorted(wheels.glob("*.whl")):
            digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
            sums.append(f"{digest}  {wheel.name}\n")
        manifest = {
            "version": version,
            "python_version": python_version,
            "platforms": tags,
            "wheels": len(sums),
            "built_at": int(time.time()),
            "source": str(source),
        }
        (wheels / "wheelhouse.json").write_text(json.dumps(manifest, indent=2) + "\n")
        (wheels / "SHA256SUMS").write_text("".join(sums))
        for path in wheels.iterdir():
            path.chmod(0o644)
        wheels.chmod(0o755)
        if dest.exists():
            shutil.rmtree(dest)
        # The role packs DEST into DEST.tar for the hosts; one from an older build is stale.
        dest.with_name(dest.name + ".tar").unlink(missing_ok=True)
        wheels.rename(dest)
        return manifest
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, required=True, help="Weft's source tree")
    parser.add_argument("--dest", type=Path, required=True, help="the wheelhouse directory")
    parser.add_argument("--python-version", required=True, help="the hosts' Python, e.g. 3.11")
    parser.add_argument("--arch", default="x86_64", help="the hosts' machine, e.g. aarch64")
    parser.add_argument(
        "--platform",
        action="append",
        help="wheel platform tags to accept, best first [default: manylinux 2.28/2.17 of --arch]",
    )
    parser.add_argument(
        "--force", action="store_true", help="rebuild even if DEST is already complete"
    )
    parser.add_argument(
        "--pip",
        default=f"{sys.executable} -m pip",
        help="how to run pip on the controller [default: this Python's]",
    )
    args = parser.parse_args(argv)
    if (args.dest / "SHA256SUMS").is_file() and not args.force:
        print(f"wheelhouse {args.dest} is already complete", file=sys.stderr)
        return 0
    pip = [*args.pip.split(), "--disable-pip-version-check", "--no-input", "--quiet"]
    tags = args.platform or platforms(args.arch)
    manifest = build(args.source.resolve(), args.dest, args.python_version, tags, pip)
    print(json.dumps(manifest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
