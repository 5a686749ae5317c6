"""The fetch app with stub stores: status bytes, formats, self-repair."""

from __future__ import annotations

import falcon.testing
import pytest

from fibod import keys
from fibod.config import Settings
from fibod.fetch import create_app
from fibod.planner import task_segments
from fibod.segments import SegmentLayout, encode_segment
from fibod.tasks import Task, TaskState, new_task_id
from fibod.testing import MemorySequenceStore, MemoryTaskStore
from tests.reference import reference_text

LAYOUT = SegmentLayout(4096)
SETTINGS = Settings(segment_bytes=4096, write_chunk_bytes=64 * 1024, fetch_max_wait_s=1)


class Parts:
    """The fetch app on stand-in stores."""

    def __init__(self, sequences: MemorySequenceStore | None = None) -> None:
        self.tasks = MemoryTaskStore()
        self.sequences = sequences or MemorySequenceStore(LAYOUT)
        self.client = falcon.testing.TestClient(create_app(SETTINGS, self.tasks, self.sequences))

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


@pytest.mark.parametrize("fmt", ["text", "binary"])
def test_evicted_segments_are_computed_again_and_the_answer_is_whole(
    parts: Parts, fmt: str
) -> None:
    # given a ready task whose middle and last segments were evicted
    task = parts.ready_task(3000)
    js = task_segments(LAYOUT, 3000)
    originals = [parts.sequences.segments[j] for j in js]
    for j in (js[1], js[-1]):
        del parts.sequences.segments[j]
    # when it is fetched
    resp = parts.client.simulate_get("/myapp/fibotask", query_string=f"id={task.id}&format={fmt}")
    # then the answer is whole and exact, and the regeneration was counted
    expected = reference_text(0, 3000) if fmt == "text" else b"".join(originals)
    assert resp.status_code == 200
    assert resp.content == b"\x00" + expected
    assert int(resp.headers["content-length"]) == len(resp.content)
    assert parts.sequences.counters[keys.STAT_SEGMENTS_REGENERATED] == 2
    assert parts.tasks.tasks[task.id].state is TaskState.READY


def test_a_damaged_segment_is_deleted_computed_again_and_never_served(parts: Parts) -> None:
    # given a ready task whose second segment has one digit flipped
    task = parts.ready_task(3000)
    j = task_segments(LAYOUT, 3000)[1]
    good = parts.sequences.segments[j]
    damaged = bytearray(good)
    damaged[40] ^= 0x01  # a payload byte: the checksum no longer matches
    parts.sequences.segments[j] = bytes(damaged)
    # when it is fetched
    resp = parts.client.simulate_get("/myapp/fibotask", query_string=f"id={task.id}")
    # then the text is exact, the damaged bytes are gone and the repair was counted
    assert resp.content == b"\x00" + reference_text(0, 3000)
    assert j not in parts.sequences.segments
    assert parts.sequences.counters[keys.STAT_SEGMENTS_REPAIRED] == 1


class VanishingStore(MemorySequenceStore):
    """A store whose segments in `vanishing` are gone by the time they are read."""

    def __init__(self, layout: SegmentLayout, vanishing: set[int]) -> None:
        super().__init__(layout)
        self.vanishing = vanishing

    def get(self, j: int) -> bytes | None:
        return None if j in self.vanishing else super().get(j)


def test_a_segment_vanishing_mid_stream_is_computed_and_the_stream_goes_on() -> None:
    # given a ready task whose last segment disappears after it was marked ready
    last = task_segments(LAYOUT, 3000)[-1]
    parts = Parts(VanishingStore(LAYOUT, {last}))
    task = parts.ready_task(3000)
    # when it is streamed, then the body is whole
    resp = parts.client.simulate_get("/myapp/fibotask", query_string=f"id={task.id}")
    assert resp.content == b"\x00" + reference_text(0, 3000)


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


def test_path_form_refuses_a_second_id(parts: Parts) -> None:
    task = parts.ready_task(10)
    other = parts.ready_task(12)
    resp = parts.client.simulate_get(f"/myapp/fibotask/id={task.id}&id={other.id}")
    assert resp.status_code == 400 and "id given twice" in resp.text
