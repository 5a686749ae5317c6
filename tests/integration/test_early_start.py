"""A long-poll on a running task gets its body at once, each segment as it is stored."""

from __future__ import annotations

import threading
import time

import pytest

from tests.integration.clients import StreamReader
from tests.integration.stack import wait_for
from tests.integration.test_task_control import wait_workers_idle
from tests.reference import reference_digest

pytestmark = pytest.mark.integration

#: ~1.05 GB of text: computed for a second or two, so the fetch starts before it is ready.
EARLY_SN = 100_000
#: ~4.2 GB: long enough to be cancelled midway.
LONG_SN = 200_000
#: Seconds from a cancel to the end of the task's early stream, at most.
CUT_WITHIN_S = 10


def submit_running(http, sequence_store, sn: int) -> str:
    """Submit sn on an empty store; return its id once a worker runs it."""
    wait_workers_idle(sequence_store)
    sequence_store.clear()
    task_id = http.submit(sn)
    state = wait_for(
        lambda: (got := http.status(task_id)["state"]) != "queued" and got,
        30,
        "the task started",
        step_s=0.01,
    )
    assert state == "running", f"sn={sn} was {state} before it was asked for"
    return task_id


def test_a_running_task_is_streamed_as_computed_with_the_exact_bytes(
    http, settings, sequence_store
) -> None:
    reference = reference_digest(EARLY_SN)
    # given a task that a worker is computing
    task_id = submit_running(http, sequence_store, EARLY_SN)
    before = sequence_store.counters()
    # when a long-poll asks for it
    stream = StreamReader(http.base_url, f"/myapp/fibotask?id={task_id}&wait=20", timeout_s=60)
    # then the answer starts before the task is ready, marked so, with the length of the whole
    assert stream.status == 200 and stream.headers["x-fibod-state"] == "running"
    assert stream.length == 1 + reference.size
    assert stream.headers["etag"] == f'"v1-text-0-{EARLY_SN}"'
    assert "last-modified" not in stream.headers
    stream.read_to_end()
    # and its bytes are the sequence's, every segment waited for, none computed by the fetch
    assert (stream.first, stream.received, stream.sha256) == (
        b"\x00",
        stream.length,
        reference.sha256,
    )
    after = sequence_store.counters()
    assert after["segments_regenerated"] == before["segments_regenerated"]
    assert http.status(task_id)["state"] == "ready"


def test_a_range_or_head_on_a_running_task_still_waits_for_ready(http, sequence_store) -> None:
    task_id = submit_running(http, sequence_store, LONG_SN)
    try:
        # a client's status check (a range of the first byte) and a HEAD answer pending
        first = http.get_path(
            f"/myapp/fibotask?id={task_id}&wait=0.3", headers={"Range": "bytes=0-0"}
        )
        assert (first.status_code, first.content) == (202, b"\x01running")
        head = http.head(f"{http.base_url}/myapp/fibotask?id={task_id}&wait=0.3", timeout=10)
        assert head.status_code == 202
    finally:
        http.fibod.cancel(task_id)


def test_a_task_cancelled_midway_cuts_its_early_stream_short(http, sequence_store) -> None:
    # given a long task streamed while computed, its bytes read as fast as they come
    task_id = submit_running(http, sequence_store, LONG_SN)
    stream = StreamReader(http.base_url, f"/myapp/fibotask?id={task_id}&wait=20", timeout_s=30)
    assert stream.status == 200 and stream.headers["x-fibod-state"] == "running"
    reader = threading.Thread(target=stream.read_to_end, daemon=True)
    reader.start()
    # when it is cancelled midway
    time.sleep(0.5)
    assert http.fibod.cancel(task_id).state == "cancelled"
    cancelled = time.monotonic()
    # then the stream ends before Content-Length soon after, once it has sent what was
    # stored (the reader's socket would wait 30 s on a stream that hung instead)
    reader.join(30)
    assert not reader.is_alive()
    assert time.monotonic() - cancelled < CUT_WITHIN_S
    assert stream.first == b"\x00" and 0 < stream.received < stream.length
    # and asking again says why
    again = http.get_path(f"/myapp/fibotask?id={task_id}")
    assert (again.status_code, again.content[:1]) == (410, b"\x04")
