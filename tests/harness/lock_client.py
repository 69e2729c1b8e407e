"""A lock contender as Consul tools write one, with py-consul: a TTL session renewed in the
background, `?acquire=` in a loop, and a blocking read of the key while someone else holds it.

Run as a subprocess (`python -m tests.harness.lock_client URL TOKEN KEY NAME`) so a test can
pause (SIGSTOP) or kill it. It prints one line per event, flushed:
    SESSION <id>     a new session (again after the old one was invalidated)
    HOLD <id>        this contender took the lock with that session
    LOST <id>        the key's Session is no longer ours
"""

from __future__ import annotations

import sys
import threading
import time
from urllib.parse import urlsplit

import consul

TTL = 10  # py-consul's (and Consul's) shortest


def say(*words: object) -> None:
    print(*words, flush=True)


def renew_forever(c: consul.Consul, current: dict[str, str]) -> None:
    while True:
        time.sleep(TTL / 4)
        try:
            c.session.renew(current["id"])
        except consul.ConsulException:
            pass  # invalidated: the main loop makes a new session when a call says so


def main(url: str, token: str, key: str, name: str) -> None:
    parts = urlsplit(url)
    c = consul.Consul(host=parts.hostname, port=parts.port, token=token)
    current = {"id": c.session.create(name=name, ttl=TTL, lock_delay=0)}
    say("SESSION", current["id"])
    threading.Thread(target=renew_forever, args=(c, current), daemon=True).start()
    index = None
    while True:
        try:
            if c.kv.put(key, name, acquire=current["id"]):
                say("HOLD", current["id"])
                while True:
                    index, entry = c.kv.get(key, index=index, wait="5s")
                    if entry is None or entry.get("Session") != current["id"]:
                        say("LOST", current["id"])
                        break
            else:
                index, entry = c.kv.get(key, index=index, wait="5s")
        except consul.ConsulException as exc:
            if "invalid session" not in str(exc):
                raise
            current["id"] = c.session.create(name=name, ttl=TTL, lock_delay=0)
            say("SESSION", current["id"])


if __name__ == "__main__":
    main(*sys.argv[1:5])
