"""Logging set-up shared by every fibod daemon: one format, one level setting.

Every line names its time, process and level, so logs of several
processes merge. `FIBOD_LOG_FORMAT=json` makes each line one JSON
object (time, process, pid, level, logger, message, and the request and
task ids when known) for log shippers; `text` (the default) stays easy
to read. The request id nginx assigns (X-Request-ID) is kept in a
context variable while a request or a queued unit is handled, so every
line logged for it carries the id: the submit app sets it from the
header, the worker from the queue message.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from fibod.config import Settings

#: Readable lines: time, process name and pid, level, logger, message, ids.
LOG_FORMAT = "%(asctime)s %(process_name)s[%(process)d] %(levelname)s %(name)s: %(message)s%(ids)s"
#: Values of FIBOD_LOG_FORMAT.
TEXT, JSON = "text", "json"

#: The request id (nginx's X-Request-ID) of what this thread handles now.
request_id: ContextVar[str | None] = ContextVar("fibod_request_id", default=None)
#: The task id this thread works on now.
task_id: ContextVar[str | None] = ContextVar("fibod_task_id", default=None)


def process_name() -> str:
    """Name this process as supervisor does (submit, worker-0), else by its program."""
    return os.environ.get("SUPERVISOR_PROCESS_NAME") or os.path.basename(sys.argv[0]) or "python"


class ContextFilter(logging.Filter):
    """Give every record the process name and the current request and task ids."""

    def __init__(self) -> None:
        super().__init__()
        self._process_name = process_name()

    def filter(self, record: logging.LogRecord) -> bool:
        """Add process_name, request_id, task_id and their text form `ids`."""
        request, task = request_id.get(), task_id.get()
        record.process_name = self._process_name
        record.request_id = request
        record.task_id = task
        ids = (("request_id", request), ("task", task))
        record.ids = "".join(f" {name}={value}" for name, value in ids if value)
        return True


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object on one line."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as compact JSON (exceptions as one escaped string)."""
        body: dict[str, Any] = {
            "time": _iso_time(record.created),
            "level": record.levelname,
            "process": getattr(record, "process_name", process_name()),
            "pid": record.process,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in ("request_id", "task_id"):
            value = getattr(record, name, None)
            if value:
                body[name] = value
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def _iso_time(created: float) -> str:
    """UTC time with milliseconds, the form log shippers parse without help."""
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"


def make_handler(log_format: str) -> logging.Handler:
    """Return a stderr handler in the chosen format, with the context filter."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if log_format == JSON else logging.Formatter(LOG_FORMAT))
    return handler


def configure_logging(settings: Settings) -> None:
    """Send log records to stderr at the configured level and format."""
    logging.basicConfig(
        level=settings.log_level.upper(), handlers=[make_handler(settings.log_format)], force=True
    )


def gunicorn_logconfig(settings: Settings) -> dict[str, Any]:
    """Return gunicorn's logconfig_dict: its own lines in the same format as ours."""
    formatter: dict[str, Any] = (
        {"()": JsonFormatter} if settings.log_format == JSON else {"format": LOG_FORMAT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": ContextFilter}},
        "formatters": {"fibod": formatter},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "fibod",
                "filters": ["context"],
            }
        },
        # gunicorn merges this over its defaults: every name they use is given
        "root": {"level": settings.log_level, "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {
                "level": settings.log_level,
                "handlers": ["stderr"],
                "propagate": False,
            },
            "gunicorn.access": {"level": "WARNING", "handlers": ["stderr"], "propagate": False},
        },
    }


@contextlib.contextmanager
def log_context(request: str | None = None, task: str | None = None) -> Iterator[None]:
    """Tag every line logged inside with this request id and task id."""
    tokens = (request_id.set(request), task_id.set(task))
    try:
        yield
    finally:
        task_id.reset(tokens[1])
        request_id.reset(tokens[0])
