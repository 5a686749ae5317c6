"""The monitor app: the stack seen whole, for Prometheus and the dashboard.

At the entry URL nginx sends it /metrics (every program's metrics on
this host, merged, plus the stack's figures read from the stores and
Kafka; /metrics?scope=stack: those figures alone), /healthz and
/readyz (ready when both stores and Kafka answer), and the dashboard's
JSON:

- GET /myapp/monitor/overview: tasks by state and the oldest of each,
  counters, queue lag per partition, workers and what each computes,
  store memory, and throughput per 10 s over the last minutes;
- GET /myapp/monitor/tasks?limit=&before=: the newest tasks, a page at
  a time (`before` is the `next` of the previous page).

It runs on processes of its own (supervisor program `monitor`), so a slow
scrape or dashboard never delays a submit or a stream.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs

import falcon

from fibod import health, metrics
from fibod.config import GUNICORN_BOOT_ERROR, Settings, startup_settings
from fibod.counters import RATE_BUCKET_S
from fibod.httputil import install_error_handlers
from fibod.logs import configure_logging
from fibod.observe import Observed
from fibod.params import parse_bounded, query_params, single
from fibod.protocol import MONITOR_OVERVIEW_PATH, MONITOR_TASKS_PATH, task_links
from fibod.stack_metrics import StackCollector
from fibod.stack_state import StackReader, summary_json
from fibod.taskmodel import now_ms

#: Throughput window of the overview, seconds.
THROUGHPUT_WINDOW_S = 600
#: Tasks per page of the list: default and most.
PAGE_TASKS, MAX_PAGE_TASKS = 20, 200
#: Largest `before` cursor (ms since the epoch): JSON's safe integers.
MAX_BEFORE_MS = 2**53


class OverviewResource:
    """GET /myapp/monitor/overview: the dashboard's figures in one answer."""

    def __init__(self, reader: StackReader) -> None:
        self._reader = reader

    def on_get(self, _req: falcon.Request, resp: falcon.Response) -> None:
        """Read the stack and the throughput history."""
        state = self._reader.read()
        body = summary_json(state)
        if "task store" not in state.errors:
            history = self._reader.counters.history(THROUGHPUT_WINDOW_S)
            body["throughput"] = {
                "bucket_s": RATE_BUCKET_S,
                "buckets": [{"start": start} | counts for start, counts in history],
            }
        resp.cache_control = ["no-store"]
        resp.media = body


class TaskPageResource:
    """GET /myapp/monitor/tasks?limit=N&before=MS: newest tasks first."""

    def __init__(self, reader: StackReader) -> None:
        self._reader = reader

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Answer one page and the cursor of the next."""
        params = query_params(req.query_string)
        limit = parse_bounded("limit", single(params, "limit", False), PAGE_TASKS, MAX_PAGE_TASKS)
        before = single(params, "before", False)
        before_ms = None if before is None else parse_bounded("before", before, 0, MAX_BEFORE_MS)
        tasks = self._reader.index.recent(limit, before_ms)
        resp.cache_control = ["no-store"]
        resp.media = {
            "tasks": [task.to_json(now_ms()) | task_links(task.id) for task in tasks],
            "next": tasks[-1].created if len(tasks) == limit and tasks else None,
        }


def create_app(settings: Settings, reader: StackReader) -> falcon.App:
    """Build the monitor's JSON app."""
    app = falcon.App(media_type=falcon.MEDIA_JSON)
    app.add_route(MONITOR_OVERVIEW_PATH, OverviewResource(reader))
    app.add_route(MONITOR_TASKS_PATH, TaskPageResource(reader))
    install_error_handlers(app, settings.retry_after_s)
    return app


def metric_folders(settings: Settings) -> list[Path]:
    """Every program's metrics folder on this host (<state dir>/metrics/*)."""
    root = Path(settings.state_dir) / "metrics"
    return sorted(path for path in root.iterdir() if path.is_dir()) if root.is_dir() else []


def observed_monitor(settings: Settings, reader: StackReader) -> Observed:
    """Wrap the JSON app with the entry URL's /metrics, /healthz and /readyz."""
    checks = health.stack_checks(settings, (health.TASK_STORE, health.SEQUENCE_STORE, health.KAFKA))
    collector = StackCollector(reader)

    def exposition(query: str) -> bytes:
        # scope=stack: the stack's figures alone, for a scrape config that
        # also scrapes every app and worker itself (several hosts)
        if parse_qs(query).get("scope") == ["stack"]:
            return metrics.exposition([], extra=[collector])
        if metrics.multiproc_dir() is None:
            return metrics.exposition(extra=[collector])
        return metrics.exposition(metric_folders(settings), extra=[collector])

    return Observed(
        create_app(settings, reader), "monitor", lambda: health.failures(checks), exposition
    )


def get_app() -> Observed:
    """Build the monitor on the real stores and Kafka (gunicorn)."""
    settings = startup_settings("monitor", GUNICORN_BOOT_ERROR)
    configure_logging(settings)
    return observed_monitor(settings, StackReader.from_settings(settings))
