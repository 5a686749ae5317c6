"""Logging set-up shared by every fibod daemon: one format, one level setting."""

from __future__ import annotations

import logging

from fibod.config import Settings

#: Every line names its time, process and level, so logs of several processes merge.
LOG_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"


def configure_logging(settings: Settings) -> None:
    """Send log records to stderr at the configured level (FIBOD_LOG_LEVEL)."""
    logging.basicConfig(level=settings.log_level.upper(), format=LOG_FORMAT)
