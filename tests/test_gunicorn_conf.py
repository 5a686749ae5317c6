"""fibod/gunicorn_conf.py's access logger: gunicorn's line only when someone reads it."""

from __future__ import annotations

import logging
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from gunicorn.config import Config

from fibod.gunicorn_conf import QuietAccessLogger


class Untouchable:
    """A request or response that fails any test touching it: formatting did not happen."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the access line was formatted (read .{name})")


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def logger() -> QuietAccessLogger:
    cfg = Config()
    cfg.set("accesslog", "-")  # gunicorn's access log on, as a logconfig would have it
    return QuietAccessLogger(cfg)


def test_no_access_line_is_formatted_while_gunicorn_access_drops_info(logger) -> None:
    # given gunicorn.access at WARNING, as fibod configures it (fibod/logs.py)
    logger.access_log.setLevel(logging.WARNING)
    # then an access line is skipped before its atoms are read
    logger.access(Untouchable(), Untouchable(), {}, timedelta(milliseconds=3))


def test_the_access_line_is_written_when_gunicorn_access_takes_info(logger) -> None:
    # given an operator who set gunicorn.access to INFO
    logger.access_log.setLevel(logging.INFO)
    lines = Lines()
    logger.access_log.addHandler(lines)
    resp = SimpleNamespace(status="202 Accepted", sent=24, headers=[("Location", "/x")])
    req = SimpleNamespace(headers=[("X-REQUEST-ID", "rid-1")])
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": "/myapp/fibo?sn=100",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
    }
    # when a request is logged
    logger.access(resp, req, environ, timedelta(milliseconds=3))
    # then gunicorn wrote its line for it
    assert len(lines.lines) == 1
    assert '"GET /myapp/fibo?sn=100 HTTP/1.1" 202 24' in lines.lines[0]
