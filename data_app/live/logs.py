"""Logging that cannot flood: live paths run hundreds of times a second, so repeats are held back."""

import logging
import threading
import time

_lock = threading.Lock()
_last = {}


def every(logger, key, seconds, level, message, *args, exc_info=False):
    """Log ``message`` unless the same ``key`` was logged less than ``seconds`` ago (then at DEBUG)."""
    now = time.monotonic()
    with _lock:
        due = now - _last.get(key, float("-inf")) >= seconds
        if due:
            if len(_last) > 1000:
                _last.clear()
            _last[key] = now
    logger.log(level if due else logging.DEBUG, message, *args, exc_info=exc_info)
