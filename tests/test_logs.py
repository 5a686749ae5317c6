"""Log lines: readable text by default, one JSON object per line on request."""

from __future__ import annotations

import io
import json
import logging
import logging.config
from collections.abc import Iterator

import pytest

from fibod.config import Settings
from fibod.logs import ContextFilter, JsonFormatter, gunicorn_logconfig, log_context, make_handler


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> tuple[logging.Logger, io.StringIO]:
    """A logger whose lines land in a buffer, as a daemon named worker-3 writes them."""
    monkeypatch.setenv("SUPERVISOR_PROCESS_NAME", "worker-3")
    out = io.StringIO()
    logger = logging.getLogger(f"fibod.test.{id(out)}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, out


def attach(logger: logging.Logger, out: io.StringIO, log_format: str) -> None:
    handler = make_handler(log_format)
    handler.setStream(out)  # type: ignore[attr-defined]
    logger.addHandler(handler)


def test_json_lines_carry_time_process_level_and_the_ids(captured) -> None:
    logger, out = captured
    attach(logger, out, "json")
    # when: a line is logged inside a request's context, one outside, one with a traceback
    with log_context(request="rid-1", task="0123456789abcdef0123"):
        logger.info("task %s ready", "0123456789abcdef0123")
    logger.warning('a "quoted"\nmessage')
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")
    # then: one JSON object per line, each with time, process, pid and level
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    first, second, third = (json.loads(line) for line in lines)
    assert first["process"] == "worker-3" and first["level"] == "INFO"
    assert first["request_id"] == "rid-1" and first["task_id"] == "0123456789abcdef0123"
    assert first["message"] == "task 0123456789abcdef0123 ready"
    assert first["time"].endswith("Z") and first["pid"] > 0
    assert "request_id" not in second and second["message"] == 'a "quoted"\nmessage'
    assert "ValueError: boom" in third["exception"]


def test_text_lines_name_the_process_and_the_ids_when_known(captured) -> None:
    logger, out = captured
    attach(logger, out, "text")
    with log_context(request="rid-2"):
        logger.info("queued")
    logger.info("idle")
    queued, idle = out.getvalue().splitlines()
    assert " worker-3[" in queued and " INFO " in queued
    assert queued.endswith("queued request_id=rid-2")
    assert idle.endswith(": idle")


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """Put the root logger back as it was after a test that configures logging."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_gunicorn_logs_its_own_lines_in_the_same_format(restored_logging) -> None:
    config = gunicorn_logconfig(Settings(log_format="json"))
    logging.config.dictConfig(config)  # refused if a handler or filter is missing
    handler = logging.getLogger("gunicorn.error").handlers[0]
    assert isinstance(handler.formatter, JsonFormatter)
    assert any(isinstance(f, ContextFilter) for f in handler.filters)
    assert not logging.getLogger("gunicorn.error").propagate
