"""Logging for operators: one line a minute for a failure that repeats, and JSON lines.

``CHAT_LOG_FORMAT=json`` writes each record as one JSON object with its time, level,
logger and message, and the conversation, reply and user ids when the record carries
them (``extra={"conversation": ..., "reply": ..., "user": ...}``). No record carries
message text or a key.
"""

from __future__ import annotations

import json
import logging
import re
import time
from datetime import UTC, datetime
from typing import Any

IDS = ("conversation", "reply", "user")
PASSWORD_IN_URL = re.compile(r"://([^:/@]*):[^@]*@")
_last: dict[str, float] = {}


def masked(text: str) -> str:
    """Text that may name a URL, as it may be printed: without the URL's password."""
    return PASSWORD_IN_URL.sub(r"://\1:***@", text)


def once_a_minute(logger: logging.Logger, key: str, message: str, *args: Any) -> None:
    """Log ``message`` as a warning, unless the same ``key`` was logged less than a minute ago."""
    now = time.monotonic()
    if now - _last.get(key, -60.0) >= 60.0:
        _last[key] = now
        logger.warning(message, *args)


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({key: getattr(record, key) for key in IDS if hasattr(record, key)})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)
