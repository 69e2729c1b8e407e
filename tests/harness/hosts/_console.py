"""A host's /dev/console: a pty whose output a thread copies into `console.log`.

systemd as PID 1 in a container logs to /dev/console until journald runs (and for anything
journald cannot take), and it accepts only a terminal there, so a plain file will not do. The
harness keeps both ends open until the host stops, so the reader never sees a hangup between
boot steps, and drains the master continuously, so PID 1 never blocks on a full pty buffer.
"""

from __future__ import annotations

import os
import select
import threading
import tty
from pathlib import Path


class Console:
    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.device = os.ttyname(self._slave)
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._drain, name=f"console-{log_path.parent.name}", daemon=True
        )
        self._thread.start()

    def _drain(self) -> None:
        with open(self.log_path, "ab", buffering=0) as log:
            while True:
                ready, _, _ = select.select([self._master], [], [], 0.2)
                if not ready:
                    if self._stopping.is_set():
                        return
                    continue
                try:
                    data = os.read(self._master, 65536)
                except OSError:
                    return
                if not data:
                    return
                log.write(data.replace(b"\r\n", b"\n"))

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        for fd in (self._slave, self._master):
            try:
                os.close(fd)
            except OSError:
                pass
