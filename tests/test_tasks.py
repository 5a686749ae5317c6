"""The task rules both task stores share: sn=0, expired against unknown, progress."""

from __future__ import annotations

from dataclasses import replace

import pytest

from fibod.errors import ConflictError, ExpiredError, NotFoundError
from fibod.ids import new_task_id
from fibod.taskmodel import TaskState, absent_task_error, cancel_outcome, new_task
from fibod.testing import MemoryTaskStore
from tests.reference import reference_text

NOW_MS = 1_700_000_000_000
TTL_S = 3600
KEY = b"test key"


def test_a_task_for_sn_0_is_ready_at_creation_with_empty_text() -> None:
    task = new_task(0, NOW_MS, KEY)
    assert task.state is TaskState.READY
    assert (task.done, task.text_bytes) == (0, 0)
    assert task.created == task.started == task.finished == NOW_MS


def test_a_task_for_sn_above_0_is_queued_with_nothing_done() -> None:
    task = new_task(5, NOW_MS, KEY)
    assert (task.state, task.sn, task.done, task.created) == (TaskState.QUEUED, 5, 0, NOW_MS)
    assert task.text_bytes is task.started is task.finished is None


def test_task_ids_carry_their_creation_time() -> None:
    assert new_task(7, NOW_MS, KEY).id[:12] == f"{NOW_MS:012x}"


@pytest.mark.parametrize(
    ("age_ms", "error"),
    [
        (0, NotFoundError),
        (TTL_S * 1000, NotFoundError),
        (TTL_S * 1000 + 1, ExpiredError),
        (400 * 86_400_000, ExpiredError),
    ],
)
def test_an_absent_id_older_than_the_ttl_has_expired_else_it_is_unknown(
    age_ms: int, error: type[Exception]
) -> None:
    task_id = new_task_id(NOW_MS - age_ms, KEY)
    assert type(absent_task_error(task_id, TTL_S, NOW_MS, KEY)) is error


@pytest.mark.parametrize("age_ms", [0, 400 * 86_400_000])
def test_an_absent_id_fibod_did_not_issue_is_unknown_whatever_its_time(age_ms: int) -> None:
    forged = new_task_id(NOW_MS - age_ms, b"another key")
    assert type(absent_task_error(forged, TTL_S, NOW_MS, KEY)) is NotFoundError
    legacy = new_task_id(NOW_MS - age_ms, KEY)[:20]
    assert type(absent_task_error(legacy, TTL_S, NOW_MS, KEY)) is NotFoundError


def test_progress_is_a_fraction_of_the_result_bytes_with_an_eta() -> None:
    # given a running task of F(100)..F(199), started 10 s ago, a quarter of its bytes stored
    total = len(reference_text(100, 100))
    task = replace(
        new_task(100, NOW_MS, KEY, start=100),
        state=TaskState.RUNNING,
        started=NOW_MS,
        done=total // 4,
    )
    # then its progress is that fraction, and 30 s are left at that rate
    assert task.result_bytes == total
    assert task.progress == pytest.approx(0.25, abs=1e-3)
    assert task.eta_s(NOW_MS + 10_000) == pytest.approx(30, abs=0.2)
    json = task.to_json(NOW_MS + 10_000)
    assert (json["from"], json["text_bytes"], json["state"]) == (100, total, "running")
    # a queued task has no estimate yet; a ready one is done
    assert new_task(100, NOW_MS, KEY).eta_s(NOW_MS) is None
    assert replace(task, state=TaskState.READY).eta_s(NOW_MS) == 0.0


@pytest.mark.parametrize("state", [TaskState.READY, TaskState.FAILED])
def test_a_task_that_ended_otherwise_cannot_be_cancelled(state: TaskState) -> None:
    with pytest.raises(ConflictError, match=f"already {state}"):
        cancel_outcome("id", state)


def test_cancelling_is_final_and_may_be_repeated() -> None:
    store = MemoryTaskStore()
    task = store.create(10)
    assert store.cancel(task.id).state is TaskState.CANCELLED
    assert store.cancel(task.id).state is TaskState.CANCELLED
    assert not store.mark_running(task.id, "w")
    assert not store.mark_ready(task.id, 10, "w")
    assert not store.mark_failed(task.id, "late", "")
    assert store.tasks[task.id].state is TaskState.CANCELLED


def test_the_command_line_offers_every_state() -> None:
    from fibod.cli_tasks import STATES

    assert tuple(state.value for state in TaskState) == STATES
