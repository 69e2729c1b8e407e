"""SSH keys for the test hosts: one client key pair per session, one host key per host."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SshKeyPair:
    """An ed25519 key pair without a passphrase (`private` is 0600, as ssh insists)."""

    private: Path
    public: Path

    @classmethod
    def generate(
        cls, directory: Path, name: str = "id_ed25519", comment: str = "weft-testhost"
    ) -> SshKeyPair:
        directory.mkdir(parents=True, exist_ok=True)
        private = directory / name
        for old in (private, private.with_name(name + ".pub")):
            old.unlink(missing_ok=True)  # ssh-keygen would ask before overwriting
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(private)],
            check=True, stdin=subprocess.DEVNULL, capture_output=True,
        )  # fmt: skip
        return cls(private, private.with_name(name + ".pub"))

    def public_text(self) -> str:
        return self.public.read_text().strip()


def ssh_client_options(key: SshKeyPair, known_hosts: Path) -> list[str]:
    """Options that make ssh use only this key and this known_hosts, ignoring ~/.ssh."""
    return [
        "-F", "/dev/null",
        "-i", str(key.private),
        "-o", "IdentitiesOnly=yes",
        "-o", "IdentityAgent=none",
        "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={known_hosts}",
        "-o", "ConnectTimeout=10",
        "-o", "LogLevel=ERROR",
    ]  # fmt: skip
