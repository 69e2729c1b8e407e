"""Log a problem with a Kubernetes object once, not on every recomputation that meets it.

The mapping runs again whenever anything about a Service changes; a pod with a malformed
annotation would otherwise put the same warning in the log hundreds of times.
"""

from __future__ import annotations

import logging
from collections import OrderedDict


class Problems:
    def __init__(self, log: logging.Logger, *, remember: int = 10_000) -> None:
        self.log = log
        self.remember = remember
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self.count = 0

    def report(self, subject: str, message: str, *, level: int = logging.WARNING) -> None:
        key = (subject, message)
        if key in self._seen:
            self._seen.move_to_end(key)
            return
        self._seen[key] = None
        if len(self._seen) > self.remember:
            self._seen.popitem(last=False)
        self.count += 1
        self.log.log(level, "%s: %s", subject, message)
