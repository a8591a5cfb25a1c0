"""Structured logs (RTA_LOG_FORMAT=json): one JSON object a line.

Each line holds ``time`` (UTC, ISO 8601), ``level``, ``logger`` and ``message``,
the fields a caller passed in ``extra=`` (the access log's ``method``, ``path``,
``status``...) and, for an exception, its traceback as ``exception``.
"""

import logging
from datetime import UTC, datetime

import orjson

# What every LogRecord has: anything else on a record came from ``extra=``.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record):
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry, default=str).decode()
