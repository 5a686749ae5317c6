"""The HTTP contract the web apps share: routes, status bytes, headers.

docs/API.md describes these to clients; the submit, fetch and VIP apps
take them from here, so no app imports another app for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only typed against: the contract itself needs no falcon
    import falcon

    from fibod.taskmodel import Task

#: Submit: GET /myapp/fibo?sn=N.
SUBMIT_PATH = "/myapp/fibo"
#: Fetch, query form: GET /myapp/fibotask?id=<id>.
FETCH_PATH = "/myapp/fibotask"
#: Fetch, the original path form: GET /myapp/fibotask/id=<id>.
FETCH_ID_PATH = FETCH_PATH + "/id={task_id}"
#: Task status as JSON: GET /myapp/tasks/<id>; DELETE cancels the task.
STATUS_PREFIX = "/myapp/tasks/"
STATUS_PATH = STATUS_PREFIX + "{task_id}"
#: Task listing, newest first: GET /myapp/tasks?state=&limit=&cursor=.
TASKS_PATH = "/myapp/tasks"
#: The VIP sync path: GET /myapp/vip/fibo?sn=N with an API key.
VIP_PATH = "/myapp/vip/fibo"
#: The API description.
OPENAPI_PATH = "/openapi.yaml"
#: The monitor app's JSON for the dashboard (served at /myapp/ by nginx).
MONITOR_PREFIX = "/myapp/monitor/"
MONITOR_OVERVIEW_PATH = MONITOR_PREFIX + "overview"
MONITOR_TASKS_PATH = MONITOR_PREFIX + "tasks"

#: Text formats and the separator after each number; `fibod seq --format`
#: offers the same names as `format=` of the HTTP API.
TEXT_FORMATS = {"text": b" ", "lines": b"\n"}
#: Output formats of the fetch endpoint (binary: stored segments, no separator).
FORMATS = TEXT_FORMATS | {"binary": b""}

#: First byte of a fetch body: the task's status (docs/API.md).
READY = b"\x00"
PENDING = b"\x01"
FAILED = b"\x02"
EXPIRED = b"\x03"
CANCELLED = b"\x04"

#: Header of a pending answer: the fraction of the result's bytes stored,
#: then "; eta=<seconds>" once an estimate exists ("0.4213; eta=12").
PROGRESS_HEADER = "X-Fibod-Progress"


def task_links(task_id: str) -> dict[str, str]:
    """Return the URLs where a task's status and result are found."""
    return {
        "status_url": STATUS_PREFIX + task_id,
        "result_url": f"{FETCH_PATH}?id={task_id}",
    }


def progress_value(task: Task, now: int) -> str:
    """Return the X-Fibod-Progress value of a task."""
    eta = task.eta_s(now)
    return f"{task.progress:.4f}" + ("" if eta is None else f"; eta={eta:g}")


def progress_header(resp: falcon.Response, task: Task, now: int) -> None:
    """Say how far a task is, in bytes, and the seconds it may still take."""
    resp.set_header(PROGRESS_HEADER, progress_value(task, now))


def set_stream_headers(resp: falcon.Response) -> None:
    """Mark a response as a ready sequence that nginx must not buffer.

    Bodies run to gigabytes: buffered, nginx would spool them to disk
    before the client saw a byte.
    """
    resp.set_header("X-Accel-Buffering", "no")
    resp.set_header("X-Fibod-State", "ready")
