"""The task rules both task stores share: sn=0, expired against unknown."""

from __future__ import annotations

import pytest

from fibod.errors import ExpiredError, NotFoundError
from fibod.tasks import TaskState, absent_task_error, new_task, new_task_id

NOW_MS = 1_700_000_000_000
TTL_S = 3600


def test_a_task_for_sn_0_is_ready_at_creation_with_empty_text() -> None:
    task = new_task(0, NOW_MS)
    assert task.state is TaskState.READY
    assert (task.done, task.text_bytes) == (0, 0)
    assert task.created == task.started == task.finished == NOW_MS


def test_a_task_for_sn_above_0_is_queued_with_nothing_done() -> None:
    task = new_task(5, NOW_MS)
    assert (task.state, task.sn, task.done, task.created) == (TaskState.QUEUED, 5, 0, NOW_MS)
    assert task.text_bytes is task.started is task.finished is None


def test_task_ids_carry_their_creation_time() -> None:
    assert new_task(7, NOW_MS).id[:12] == f"{NOW_MS:012x}"


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
    task_id = new_task_id(NOW_MS - age_ms)
    assert type(absent_task_error(task_id, TTL_S, NOW_MS)) is error
