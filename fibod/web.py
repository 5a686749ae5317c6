"""The submit app: GET /myapp/fibo?sn=N[&from=A] creates a task and queues it.

`create_app(settings, tasks, publisher)` builds the app from its parts
(tests pass stubs); `get_app()` wires the real task store and Kafka for
gunicorn. A task is answered 202 only once Kafka has acknowledged it;
when Kafka cannot take it the task hash is deleted and the client gets
503, so no half-created task is left behind.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Protocol

import falcon

from fibod import health
from fibod.config import GUNICORN_BOOT_ERROR, Settings, startup_settings
from fibod.errors import UnavailableError
from fibod.httputil import TEXT, install_error_handlers, wants_json
from fibod.logs import configure_logging, request_id
from fibod.observe import Observed, observed_app
from fibod.openapi import openapi_yaml
from fibod.params import parse_from, parse_sn, query_params, single
from fibod.protocol import OPENAPI_PATH, SUBMIT_PATH, task_links
from fibod.queue import KIND_TASK, Publisher, QueueMessage
from fibod.taskmodel import Task, TaskState

log = logging.getLogger("fibod.web")


class TaskCreator(Protocol):
    """The part of the task store the submit app uses."""

    def create(self, sn: int, start: int = 0) -> Task: ...

    def delete(self, task_id: str) -> None: ...


def original_task_object(task: Task) -> dict[str, Any]:
    """Return the task object of the original design, field for field.

    Strict deserializers (Jackson's default) fail on an unknown field or
    a wrong type, so it holds these four and nothing else; state is 0
    ready or 1 in progress. The richer JSON is at the Location.
    """
    state = 0 if task.state is TaskState.READY else 1
    return {"id": task.id, "sn": task.sn, "state": state, "createTime": task.created}


class SubmitResource:
    """GET /myapp/fibo?sn=N[&from=A]."""

    def __init__(self, settings: Settings, tasks: TaskCreator, publisher: Publisher) -> None:
        self._settings = settings
        self._tasks = tasks
        self._publisher = publisher

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Validate sn and from, store the task, queue it, answer 202 with its id."""
        params = query_params(req.query_string)
        sn = parse_sn(single(params, "sn") or "", self._settings.max_sn)
        start = parse_from(single(params, "from", required=False), self._settings.max_from)
        task = self._tasks.create(sn, start)
        if task.state is not TaskState.READY:  # sn=0 is ready at creation
            try:
                message = QueueMessage(KIND_TASK, task.id, sn, request_id.get(), start)
                self._publisher.publish(message)
                # DEBUG: nginx's access line names the task (its Location) at
                # no cost to this process; an INFO line here was 15-20% of its CPU
                log.debug("task %s queued: sn=%d from %d", task.id, sn, start)
            except UnavailableError:
                self._forget(task.id)
                raise
        resp.status = falcon.HTTP_202
        resp.location = task_links(task.id)["status_url"]
        resp.cache_control = ["no-store"]
        if wants_json(req):
            resp.media = original_task_object(task)
        else:
            resp.content_type = TEXT
            resp.text = task.id

    def _forget(self, task_id: str) -> None:
        try:
            self._tasks.delete(task_id)
        except UnavailableError as exc:  # both stores down: report the queue's error
            log.error("could not delete unqueued task %s: %s", task_id, exc)


class OpenApiResource:
    """GET /openapi.yaml: the API description."""

    def on_get(self, _req: falcon.Request, resp: falcon.Response) -> None:
        """Serve the OpenAPI document."""
        resp.content_type = "application/yaml"
        resp.text = openapi_yaml()


def create_app(settings: Settings, tasks: TaskCreator, publisher: Publisher) -> falcon.App:
    """Build the submit app from its parts."""
    app = falcon.App(media_type=falcon.MEDIA_JSON)
    app.req_options.strip_url_path_trailing_slash = True
    app.add_route(SUBMIT_PATH, SubmitResource(settings, tasks, publisher))
    app.add_route(OPENAPI_PATH, OpenApiResource())
    install_error_handlers(app, settings.retry_after_s)
    return app


def get_app() -> Observed:
    """Build the submit app on the real task store and Kafka (gunicorn)."""
    from fibod.queue import TaskPublisher
    from fibod.tasks import TaskStore

    settings = startup_settings("submit", GUNICORN_BOOT_ERROR)
    configure_logging(settings)
    tasks = TaskStore.from_settings(settings)
    publisher = TaskPublisher.from_settings(settings, f"fibod-submit-{os.getpid()}")
    app = create_app(settings, tasks, publisher)
    return observed_app(app, "submit", settings, (health.TASK_STORE, health.KAFKA))
