"""The systemd notify protocol: READY=1, STATUS=, WATCHDOG=1, RELOADING=1, STOPPING=1.

A datagram to $NOTIFY_SOCKET (a path, or an abstract socket when it starts with '@'). Without
NOTIFY_SOCKET every call is a no-op, so the agent runs the same outside systemd.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("weft.agent.notify")


class Notifier:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = env.get("NOTIFY_SOCKET", "")
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        self.watchdog_interval: float | None = None
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            # systemd's advice: ping at half the timeout.
            self.watchdog_interval = int(usec) / 1e6 / 2
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, *fields: str) -> None:
        if not self.address:
            return
        address = self.address
        if address.startswith("@"):
            address = "\0" + address[1:]
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(fields).encode(), address)
        except OSError as exc:
            log.warning("cannot notify systemd at %s: %s", self.address, exc)

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def reloading(self) -> None:
        self.send("RELOADING=1", "STATUS=reloading service definitions")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=draining proxies")
