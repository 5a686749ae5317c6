"""The task model: states, the rules of moving between them, the JSON view.

`fibod/tasks.py` stores tasks in Redis by these rules (its Lua scripts
say the same); `fibod/testing.py` keeps them over a dict for unit tests.
A task asks for F(start)..F(start+sn-1); its progress and ETA are counted
in text bytes, because work grows with the square of sn.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from fibod import lengths
from fibod.errors import ConflictError, ExpiredError, NotFoundError
from fibod.ids import TIME_DIGITS, id_created_ms, is_genuine, new_task_id


class TaskState(StrEnum):
    """Where a task is in its life."""

    QUEUED = "queued"
    RUNNING = "running"
    READY = "ready"
    FAILED = "failed"
    CANCELLED = "cancelled"


#: States a task never leaves.
FINAL_STATES = frozenset({TaskState.READY, TaskState.FAILED, TaskState.CANCELLED})


def now_ms() -> int:
    """Return wall-clock time in ms, the unit of every task timestamp."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, kw_only=True)
class Task:
    """One task as the task store holds it: F(start)..F(start+sn-1)."""

    id: str
    sn: int
    state: TaskState
    start: int = 0
    #: Text bytes of the result stored so far (ready: all of them).
    done: int = 0
    text_bytes: int | None = None
    created: int | None = None
    started: int | None = None
    finished: int | None = None
    error: str | None = None
    #: The worker that last started the task; only it may finish it.
    owner: str | None = None

    @property
    def result_bytes(self) -> int:
        """Text length of the result, known from the indices alone."""
        return lengths.text_bytes(self.start, self.sn)

    @property
    def progress(self) -> float:
        """Fraction of the result's bytes stored (work grows with bytes, not numbers)."""
        if self.state is TaskState.READY:
            return 1.0
        total = self.result_bytes
        return min(self.done / total, 1.0) if total else 0.0

    def eta_s(self, now: int) -> float | None:
        """Estimate the seconds left from the rate since the task started.

        None while queued, finished otherwise, or before any progress.
        """
        if self.state is TaskState.READY:
            return 0.0
        fraction = self.progress
        if self.state is not TaskState.RUNNING or self.started is None or fraction <= 0:
            return None
        elapsed_s = max(now - self.started, 0) / 1000
        return round(elapsed_s * (1 - fraction) / fraction, 1)

    def to_json(self, now: int) -> dict[str, Any]:
        """Describe the task for clients (GET /myapp/tasks/<id>)."""
        body: dict[str, Any] = {
            "id": self.id,
            "sn": self.sn,
            "from": self.start,
            "state": str(self.state),
            "progress": round(self.progress, 6),
            "eta_s": self.eta_s(now),
            "text_bytes": self.result_bytes,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
        }
        if self.error:
            body["error"] = self.error
        return body

    @classmethod
    def from_hash(cls, task_id: str, fields: dict[str, str]) -> Task:
        """Build a task from its Redis hash."""

        def opt_int(name: str) -> int | None:
            value = fields.get(name)
            return int(value) if value not in (None, "") else None

        return cls(
            id=task_id,
            sn=int(fields["sn"]),
            state=TaskState(fields["state"]),
            start=int(fields.get("start") or 0),
            done=int(fields.get("done") or 0),
            text_bytes=opt_int("text_bytes"),
            created=opt_int("created"),
            started=opt_int("started"),
            finished=opt_int("finished"),
            error=fields.get("error") or None,
            owner=fields.get("owner") or None,
        )


def new_task(sn: int, created_ms: int, key: bytes, start: int = 0) -> Task:
    """Make the task for F(start)..F(start+sn-1): queued, or ready at once when sn is 0.

    sn=0 asks for no number, so there is nothing to compute and no reason
    for a round trip through the queue.
    """
    task_id = new_task_id(created_ms, key)
    if sn == 0:
        return Task(
            id=task_id,
            sn=0,
            start=start,
            state=TaskState.READY,
            text_bytes=0,
            created=created_ms,
            started=created_ms,
            finished=created_ms,
        )
    return Task(id=task_id, sn=sn, start=start, state=TaskState.QUEUED, created=created_ms)


def may_finish(task: Task | None, owner: str) -> bool:
    """Tell whether owner may make the task ready or failed (FINISH_TASK_LUA's rule).

    Ready, failed and cancelled are final. Only the task's owner finishes
    it; an empty owner is a caller outside the workers, which finishes
    whoever owns it.
    """
    if task is None or task.state in FINAL_STATES:
        return False
    return not owner or task.owner is None or task.owner == owner


def may_progress(task: Task | None, owner: str, done: int) -> bool:
    """Tell whether owner may record `done` numbers (PROGRESS_TASK_LUA's rule)."""
    return (
        task is not None
        and task.state is TaskState.RUNNING
        and task.owner == owner
        and done > task.done
    )


def cancel_outcome(task_id: str, before: TaskState) -> None:
    """Refuse to cancel a task that already ended otherwise (CANCEL_TASK_LUA's rule).

    A queued or running task is cancelled; cancelling twice is no error.
    """
    if before in (TaskState.READY, TaskState.FAILED):
        raise ConflictError(f"task {task_id} is already {before}: nothing to cancel")


def absent_task_error(
    task_id: str, ttl_s: int, now: int, key: bytes
) -> ExpiredError | NotFoundError:
    """Say why no task has this id: expired if fibod issued it longer than the TTL ago.

    Ids carry their creation time and a MAC: only an id this service
    issued (the MAC holds) that is older than the TTL names a task whose
    result has expired. Any other absent id is unknown.
    """
    if is_genuine(task_id, key) and id_created_ms(task_id) + ttl_s * 1000 < now:
        return ExpiredError(f"task {task_id} has expired")
    return NotFoundError(f"no task with id {task_id}")


@dataclass(frozen=True)
class TaskPage:
    """One page of a task listing, newest first."""

    tasks: list[Task] = field(default_factory=list)
    #: Where the next page starts (an id), None when the listing is done.
    next_cursor: str | None = None


def index_cutoff(now: int, ttl_s: int) -> str:
    """Return the id prefix below which index entries are older than the TTL."""
    return f"{max(now - ttl_s * 1000, 0):0{TIME_DIGITS}x}"
