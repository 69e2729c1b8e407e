"""Structured log lines for every Weft daemon, on stderr (journald picks them up under systemd).

`text` gives `2026-11-26T10:00:00.000Z INFO weft.server listening address=...`;
`json` gives one JSON object per line. Extra fields come from `log.info(msg, extra={"kv": {...}})`.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any


class _Formatter(logging.Formatter):
    def __init__(self, style: str) -> None:
        super().__init__()
        self.json = style == "json"

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        ts += f".{int(record.msecs):03d}Z"
        fields: dict[str, Any] = dict(getattr(record, "kv", {}) or {})
        message = record.getMessage()
        if record.exc_info:
            fields["error"] = self.formatException(record.exc_info)
        if self.json:
            doc = {
                "ts": ts,
                "level": record.levelname.lower(),
                "logger": record.name,
                "msg": message,
            }
            doc.update(fields)
            return json.dumps(doc, default=str)
        extra = " ".join(f"{k}={_quote(v)}" for k, v in fields.items())
        return f"{ts} {record.levelname} {record.name} {message}" + (f" {extra}" if extra else "")


def _quote(value: Any) -> str:
    text = str(value)
    if not text or any(c in text for c in ' "=\n'):
        return json.dumps(text)
    return text


def setup_logging(style: str = "text", level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(style))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request at INFO; that is noise for a daemon.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
