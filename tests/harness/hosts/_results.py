"""What commands in a host return, the errors a host raises, and the wait they share."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


class HostError(RuntimeError):
    """A test host failed to start, boot or stop; the message carries its console and journal."""


class HostCommandError(HostError):
    """A command inside a host exited non-zero (or timed out) where success was required."""

    def __init__(self, message: str, result: RunResult | None = None) -> None:
        super().__init__(message)
        self.result = result


class NotBootedYet(Exception):
    """PID 1 is still boot.sh in the machine's root: nothing may run "inside" yet."""


@dataclass(frozen=True)
class RunResult:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def check(self) -> RunResult:
        if self.returncode != 0:
            raise HostCommandError(
                f"{' '.join(self.args)!r} exited {self.returncode}\n"
                f"stdout: {self.stdout[-2000:]}\nstderr: {self.stderr[-2000:]}",
                self,
            )
        return self


def wait_raising(
    condition: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    on_timeout: Callable[[], str] | None = None,
) -> T:
    """Poll like `wait_until`, except that a HostError (the host died) ends the wait at once."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = condition()
        except HostCommandError:  # a command timed out under load: ask again
            result = None
        except HostError:
            raise
        except Exception:  # not up yet (no bus, no /proc entry)
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            detail = ("\n" + on_timeout()) if on_timeout else ""
            raise HostError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(0.1)
