"""The server's log on stderr: plain lines for a terminal, or JSON lines for a collector."""

import json
import logging
import sys
import time

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


def configure_logging(level: str, log_format: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    log = logging.getLogger("gchat")
    log.addHandler(handler)
    log.setLevel(level.upper())
    log.propagate = False
