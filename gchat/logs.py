"""The server's log on stderr: plain lines for a terminal, or JSON lines for a collector."""

import json
import logging
import math
import sys
import time
from typing import Optional

LOG_FORMATS = ("text", "json")


class TextFormatter(logging.Formatter):
    """Plain lines like the seed's prints; warnings and errors say what they are."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno >= logging.WARNING:
            return f"gchat: {record.levelname.lower()}: {message}"
        return message


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (UTC), ``level``, ``msg``, and ``exc`` for a traceback.

    ASCII-only output (json's default escaping), so no chat text, whatever
    its characters, can split a record across lines for a line-based reader.
    """

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        entry = {
            "ts": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class Throttle:
    """Lets a recurring record out at most once per ``interval`` seconds, and counts the rest.

    A condition that recurs many times a second (accept failing for want of
    descriptors) must neither flood the log nor vanish from it: the record
    that goes out says how many were held back since the one before. Time is
    passed in (monotonic seconds), so this stays a pure function of its calls.
    """

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._next = -math.inf
        self._held = 0

    def admit(self, now: float) -> Optional[int]:
        """None to hold this record back; else let it out, with how many were held back before it."""
        if now < self._next:
            self._held += 1
            return None
        held, self._held = self._held, 0
        self._next = now + self._interval
        return held


def configure_logging(level: str, log_format: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    log = logging.getLogger("gchat")
    log.addHandler(handler)
    log.setLevel(level.upper())
    log.propagate = False
