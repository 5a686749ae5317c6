"""The task routes of the fetch app: status, cancel and listing, as JSON.

GET /myapp/tasks/<id> describes a task (progress and ETA in bytes);
DELETE /myapp/tasks/<id> cancels it (workers stop at their next
segment); GET /myapp/tasks?state=&limit=&cursor= lists tasks newest
first, a page at a time.
"""

from __future__ import annotations

from typing import Any, Protocol

import falcon

from fibod.errors import InputError
from fibod.ids import parse_task_id
from fibod.params import parse_natural, query_params, single
from fibod.protocol import STATUS_PATH, TASKS_PATH, progress_header, task_links
from fibod.taskmodel import Task, TaskPage, TaskState

#: Tasks per page of a listing: the default and the most.
LIST_DEFAULT = 20
LIST_MAX = 100


class TaskAccess(Protocol):
    """The part of the task store the fetch app uses."""

    #: Seconds a finished task is kept.
    ttl_s: int

    def lookup(self, task_id: str) -> Task: ...

    def cancel(self, task_id: str) -> Task: ...

    def list_tasks(self, state: TaskState | None, limit: int, cursor: str | None) -> TaskPage: ...

    def now(self) -> int: ...


def task_body(task: Task, now: int) -> dict[str, Any]:
    """Return the task as JSON, with where its status and result are."""
    return task.to_json(now) | task_links(task.id)


class TaskResource:
    """GET and DELETE /myapp/tasks/<id>."""

    def __init__(self, tasks: TaskAccess) -> None:
        self._tasks = tasks

    def on_get(self, _req: falcon.Request, resp: falcon.Response, task_id: str) -> None:
        """Answer id, sn, from, state, progress, ETA and timestamps."""
        self._describe(resp, self._tasks.lookup(parse_task_id(task_id)))

    def on_delete(self, _req: falcon.Request, resp: falcon.Response, task_id: str) -> None:
        """Cancel a queued or running task (again: no error); 409 once it ended otherwise."""
        self._describe(resp, self._tasks.cancel(parse_task_id(task_id)))

    def _describe(self, resp: falcon.Response, task: Task) -> None:
        now = self._tasks.now()
        resp.cache_control = ["no-store"]
        progress_header(resp, task, now)
        resp.media = task_body(task, now)


class TaskListResource:
    """GET /myapp/tasks?state=&limit=&cursor=: tasks newest first, paged."""

    def __init__(self, tasks: TaskAccess) -> None:
        self._tasks = tasks

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Answer one page and the cursor of the next (null at the end)."""
        params = query_params(req.query_string)
        state = parse_state(single(params, "state", required=False))
        limit_text = single(params, "limit", required=False)
        limit = (
            LIST_DEFAULT if limit_text is None else parse_natural(limit_text, "limit", LIST_MAX, 1)
        )
        cursor_text = single(params, "cursor", required=False)
        cursor = None if cursor_text is None else parse_task_id(cursor_text, "cursor")
        page = self._tasks.list_tasks(state, limit, cursor)
        now = self._tasks.now()
        resp.cache_control = ["no-store"]
        resp.media = {
            "tasks": [task_body(task, now) for task in page.tasks],
            "next_cursor": page.next_cursor,
        }


def parse_state(text: str | None) -> TaskState | None:
    """Accept a task state by name (empty or absent: any state)."""
    if not text:
        return None
    try:
        return TaskState(text)
    except ValueError:
        names = ", ".join(state.value for state in TaskState)
        raise InputError(f"state must be one of {names}, got {text[:40]!r}") from None


def add_task_routes(app: falcon.App, tasks: TaskAccess) -> None:
    """Route the task status, cancel and listing endpoints."""
    app.add_route(STATUS_PATH, TaskResource(tasks))
    app.add_route(TASKS_PATH, TaskListResource(tasks))
