"""Task control on the real stack: runs from A, progress and ETA, cancel, listing."""

from __future__ import annotations

import re
import time

import pytest

from fibod.errors import CancelledError, ConflictError
from fibod.planner import task_segments
from tests.integration.stack import wait_for
from tests.reference import gmpy2_text

pytestmark = pytest.mark.integration

#: ~4.2 GB of text: long enough to watch it run, then cancel it.
LONG_SN = 200_000
PROGRESS_RE = re.compile(r"[01]\.[0-9]{4}(; eta=[0-9.e+]+)?")


def wait_workers_idle(sequence_store, quiet_s: float = 1.5) -> None:
    """Wait until no segment has been computed for quiet_s: earlier tests' tasks are done."""
    last = [sequence_store.counters()["segments_computed"], time.monotonic()]

    def quiet() -> bool:
        now = sequence_store.counters()["segments_computed"]
        if now != last[0]:
            last[:] = [now, time.monotonic()]
        return time.monotonic() - last[1] >= quiet_s

    wait_for(quiet, 120, "the workers idle", step_s=0.2)


def test_a_run_from_a_computes_only_its_segments_and_shares_them(
    http, settings, sequence_store, layout
) -> None:
    # given idle workers, an empty store and a task for 60 numbers below the largest A allowed
    wait_workers_idle(sequence_store)
    sequence_store.clear()
    start = settings.max_from - 60
    before = sequence_store.counters()
    task_id = http.submit(60, start)
    # when it is fetched
    resp = http.fetch(task_id)
    # then its body is F(A)..F(A+59), and only the segments that hold them were computed
    assert resp.status_code == 200
    assert resp.content == b"\x00" + gmpy2_text(start, 60)
    assert resp.headers["ETag"] == f'"v1-text-{start}-60"'
    mine = task_segments(layout, 60, start)
    stored = sorted(j for j in mine if sequence_store.get(j) is not None)
    assert stored == mine
    before_a = range(max(mine[0] - 500, 0), mine[0])  # the segments just before F(A)
    assert sequence_store.sizes(list(before_a)) == [0] * len(before_a)
    after = sequence_store.counters()
    assert after["segments_computed"] - before["segments_computed"] == len(mine)
    # and a task inside that run computes nothing: it finds its segments stored
    inner = http.submit(20, start + 30)
    assert http.fetch(inner).content == b"\x00" + gmpy2_text(start + 30, 20)
    last = sequence_store.counters()
    assert last["segments_computed"] == after["segments_computed"]
    assert last["segments_reused"] - after["segments_reused"] == len(
        task_segments(layout, 20, start + 30)
    )


def test_progress_is_in_bytes_with_an_eta_and_a_cancel_stops_the_workers(
    http, sequence_store, layout
) -> None:
    # given idle workers and a long task computed cold
    wait_workers_idle(sequence_store)
    sequence_store.clear()
    task_id = http.submit(LONG_SN)
    # when it runs, then its progress (a fraction of its bytes) and an ETA are reported
    task = wait_for(
        lambda: (t := http.status(task_id))["state"] == "running" and t["progress"] > 0 and t,
        60,
        "the long task running with progress",
    )
    assert 0 < task["progress"] < 1 and task["eta_s"] is not None and task["eta_s"] > 0
    pending = http.get_path(f"/myapp/fibotask?id={task_id}")
    assert pending.status_code == 202 and pending.content[:1] == b"\x01"
    assert PROGRESS_RE.fullmatch(pending.headers["X-Fibod-Progress"]), pending.headers
    # when it is cancelled
    cancelled = http.fibod.cancel(task_id)
    assert cancelled.state == "cancelled"
    # then the workers stop at their next segment: nothing is computed a moment later
    time.sleep(2)
    computed = sequence_store.counters()["segments_computed"]
    time.sleep(3)
    assert sequence_store.counters()["segments_computed"] == computed
    assert sequence_store.stats().segments < len(task_segments(layout, LONG_SN))
    # and the task stays cancelled, its fetch answers 410 with the status byte 0x04
    assert http.status(task_id)["state"] == "cancelled"
    fetched = http.get_path(f"/myapp/fibotask/id={task_id}")
    assert (fetched.status_code, fetched.content[:1]) == (410, b"\x04")
    with pytest.raises(CancelledError):
        http.fibod.wait(task_id, timeout_s=5)
    # and cancelling again is no error, while a ready task cannot be cancelled
    assert http.fibod.cancel(task_id).state == "cancelled"
    done = http.submit(10)
    http.fibod.wait(done, timeout_s=30)
    with pytest.raises(ConflictError):
        http.fibod.cancel(done)


def test_tasks_are_listed_newest_first_page_by_page(http, supervisor) -> None:
    # given three new tasks, queued (no worker runs: none can finish), the middle one cancelled
    supervisor.stop("worker:*")
    try:
        made = [http.submit(100_000), http.submit(100_000, 1), http.submit(100_000, 2)]
        http.fibod.cancel(made[1])
        # when the listing is read one task a page
        first = http.fibod.tasks(limit=1)
        second = http.fibod.tasks(limit=1, cursor=first.next_cursor)
        third = http.fibod.tasks(limit=1, cursor=second.next_cursor)
        # then they come newest first, each once, with where the next page starts
        assert [p.tasks[0].id for p in (first, second, third)] == made[::-1]
        assert first.next_cursor == made[2]
        # and a state filter keeps only that state
        cancelled = [t.id for t in http.fibod.tasks(state="cancelled", limit=100).tasks]
        assert made[1] in cancelled and made[0] not in cancelled
        for task_id in (made[0], made[2]):  # leave the workers idle
            http.fibod.cancel(task_id)
    finally:
        supervisor.start("worker:*")
