"""A tiny Type=notify service the host smoke tests copy into a host (stdlib only).

It records what systemd makes it live through under $STATE_DIR (default /run/smoke):
`started` when it runs, `ready` just before it sends READY=1 (after $READY_DELAY seconds),
one line in `reloads` per SIGHUP; it sends WATCHDOG=1 at half the period systemd asks for.
"""

import os
import signal
import socket
import time
from pathlib import Path

STATE = Path(os.environ.get("STATE_DIR", "/run/smoke"))


def notify(message: str) -> None:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(message.encode())


def record(name: str, line: str) -> None:
    with open(STATE / name, "a") as f:
        f.write(line + "\n")


def on_hup(_signum, _frame) -> None:
    record("reloads", f"{os.getpid()} {time.time():.3f}")


def main() -> None:
    STATE.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGHUP, on_hup)
    record("started", f"{os.getpid()} {time.time():.3f}")
    time.sleep(float(os.environ.get("READY_DELAY", "0")))
    record("ready", f"{os.getpid()} {time.time():.3f}")
    notify(f"READY=1\nSTATUS=serving\nMAINPID={os.getpid()}")
    watchdog_usec = int(os.environ.get("WATCHDOG_USEC", "0"))
    interval = watchdog_usec / 2e6 if watchdog_usec else 3600.0
    while True:
        time.sleep(interval)
        notify("WATCHDOG=1")


if __name__ == "__main__":
    main()
