"""The fetch app with stub stores: status bytes, formats, eviction."""

from __future__ import annotations

import falcon.testing
import pytest

from fibod.config import Settings
from fibod.errors import SegmentVanishedError
from fibod.fetch import create_app
from fibod.planner import task_segments
from fibod.segments import SegmentLayout, encode_segment
from fibod.tasks import Task, TaskState, new_task_id
from fibod.testing import MemorySequenceStore, MemoryTaskStore, RecordingPublisher
from tests.reference import reference_text

LAYOUT = SegmentLayout(4096)
SETTINGS = Settings(segment_bytes=4096, write_chunk_bytes=64 * 1024, fetch_max_wait_s=1)


class Parts:
    """The fetch app on stand-in stores and publisher."""

    def __init__(self, sequences: MemorySequenceStore | None = None) -> None:
        self.tasks = MemoryTaskStore()
        self.sequences = sequences or MemorySequenceStore(LAYOUT)
        self.publisher = RecordingPublisher()
        self.client = falcon.testing.TestClient(
            create_app(SETTINGS, self.tasks, self.sequences, self.publisher)
        )

    def ready_task(self, sn: int) -> Task:
        for j in task_segments(LAYOUT, sn):
            self.sequences.put(j, encode_segment(*LAYOUT.bounds(j)))
        task = self.tasks.create(sn)
        self.tasks.mark_ready(task.id, sn, len(reference_text(0, sn)))
        return self.tasks.tasks[task.id]


@pytest.fixture
def parts() -> Parts:
    return Parts()


@pytest.mark.parametrize("sn", [0, 1, 2, 10, 1000, 3000])
def test_ready_task_streams_exact_bytes(parts: Parts, sn: int) -> None:
    # given a ready task spanning several small segments
    task = parts.ready_task(sn)
    # when fetched in both URL forms
    forms = ((f"/myapp/fibotask/id={task.id}", None), ("/myapp/fibotask", f"id={task.id}"))
    for path, query in forms:
        resp = parts.client.simulate_get(path, query_string=query)
        # then the body is 0x00 and exactly the reference text
        assert resp.status_code == 200
        assert resp.content == b"\x00" + reference_text(0, sn)
        assert int(resp.headers["content-length"]) == len(resp.content)


def test_lines_and_binary_formats_stream_their_bytes(parts: Parts) -> None:
    task = parts.ready_task(3000)
    get = parts.client.simulate_get
    lines = get("/myapp/fibotask", query_string=f"id={task.id}&format=lines")
    assert lines.content == b"\x00" + reference_text(0, 3000, "\n")
    binary = get("/myapp/fibotask", query_string=f"id={task.id}&format=binary")
    segments = [parts.sequences.segments[j] for j in task_segments(LAYOUT, 3000)]
    assert binary.content == b"\x00" + b"".join(segments)
    assert binary.headers["content-type"] == "application/octet-stream"


def test_pending_task_is_202_with_retry_after(parts: Parts) -> None:
    task = parts.tasks.create(500)
    resp = parts.client.simulate_get("/myapp/fibotask", query_string=f"id={task.id}&wait=0.05")
    assert resp.status_code == 202
    assert resp.content == b"\x01queued"
    assert resp.headers["retry-after"] == "1"


def test_failed_task_is_500_with_status_byte_2_and_its_reason(parts: Parts) -> None:
    task = parts.tasks.create(5)
    parts.tasks.mark_failed(task.id, "boom")
    resp = parts.client.simulate_get("/myapp/fibotask", query_string=f"id={task.id}")
    assert (resp.status_code, resp.content) == (500, b"\x02boom")


def test_absent_task_older_than_the_ttl_is_410_with_status_byte_3(parts: Parts) -> None:
    old = new_task_id(parts.tasks.now - 2 * parts.tasks.ttl_s * 1000)
    resp = parts.client.simulate_get("/myapp/fibotask", query_string=f"id={old}")
    assert resp.status_code == 410
    assert resp.content.startswith(b"\x03")


def test_unknown_id_is_404_and_malformed_id_400(parts: Parts) -> None:
    young = new_task_id(parts.tasks.now)
    assert parts.client.simulate_get(f"/myapp/fibotask/id={young}").status_code == 404
    assert parts.client.simulate_get(f"/myapp/tasks/{young}").status_code == 404
    for bad in ("xyz", young.upper(), young + "0"):
        resp = parts.client.simulate_get("/myapp/fibotask", query_string=f"id={bad}")
        assert resp.status_code == 400
        assert "malformed" in resp.text
    assert parts.client.simulate_get("/myapp/fibotask").status_code == 400


def test_evicted_segment_requeues_the_task_once(parts: Parts) -> None:
    # given a ready task whose middle segment was evicted
    task = parts.ready_task(3000)
    del parts.sequences.segments[task_segments(LAYOUT, 3000)[1]]
    # when it is fetched twice
    first = parts.client.simulate_get("/myapp/fibotask", query_string=f"id={task.id}")
    second = parts.client.simulate_get("/myapp/fibotask", query_string=f"id={task.id}")
    # then both say pending and the task was queued exactly once
    assert first.content == second.content == b"\x01queued"
    assert [m.task_id for m, _ in parts.publisher.messages] == [task.id]
    assert parts.tasks.tasks[task.id].state is TaskState.QUEUED


class VanishingStore(MemorySequenceStore):
    """A store whose segments in `vanishing` are gone by the time they are read."""

    def __init__(self, layout: SegmentLayout, vanishing: set[int]) -> None:
        super().__init__(layout)
        self.vanishing = vanishing

    def get(self, j: int) -> bytes | None:
        return None if j in self.vanishing else super().get(j)


def test_segment_vanishing_mid_stream_aborts() -> None:
    # given a ready task whose last segment disappears after the fetch checked it
    last = task_segments(LAYOUT, 3000)[-1]
    parts = Parts(VanishingStore(LAYOUT, {last}))
    task = parts.ready_task(3000)
    # when it is streamed, then the stream raises instead of ending short
    with pytest.raises(SegmentVanishedError, match="vanished"):
        parts.client.simulate_get("/myapp/fibotask", query_string=f"id={task.id}")


def test_status_is_the_task_as_json(parts: Parts) -> None:
    task = parts.ready_task(10)
    resp = parts.client.simulate_get(f"/myapp/tasks/{task.id}")
    assert resp.status_code == 200
    assert resp.json["state"] == "ready"
    assert resp.json["progress"] == 10
    assert set(resp.json) >= {"id", "sn", "state", "progress", "created", "started", "finished"}


@pytest.mark.parametrize("suffix", ["%0A", "%0D%0A"])
def test_path_form_refuses_an_id_with_a_trailing_newline(parts: Parts, suffix: str) -> None:
    # Falcon's `$` regex for "id={task_id}" matches before a trailing newline
    task = parts.ready_task(10)
    resp = parts.client.simulate_get(f"/myapp/fibotask/id={task.id}{suffix}")
    assert resp.status_code == 400 and "malformed task id" in resp.text
