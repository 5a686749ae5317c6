"""The fetch app with stub stores: status bytes, formats, self-repair."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import falcon.testing
import pytest

from fibod import keys
from fibod.config import Settings, SettingsError
from fibod.fetch import create_app
from fibod.ids import new_task_id
from fibod.planner import task_segments
from fibod.ranges import http_date
from fibod.segments import SegmentLayout, encode_segment
from fibod.taskmodel import Task, TaskState
from fibod.testing import TEST_ID_KEY, MemorySequenceStore, MemoryTaskStore
from tests.reference import reference_text

LAYOUT = SegmentLayout(4096)
SETTINGS = Settings(segment_bytes=4096, write_chunk_bytes=64 * 1024, fetch_max_wait_s=1)


class Parts:
    """The fetch app on stand-in stores."""

    def __init__(self, sequences: MemorySequenceStore | None = None) -> None:
        self.tasks = MemoryTaskStore()
        self.sequences = sequences or MemorySequenceStore(LAYOUT)
        self.client = falcon.testing.TestClient(create_app(SETTINGS, self.tasks, self.sequences))

    def ready_task(self, sn: int, start: int = 0) -> Task:
        for j in task_segments(LAYOUT, sn, start):
            self.sequences.put(j, encode_segment(*LAYOUT.bounds(j)))
        task = self.tasks.create(sn, start)
        self.tasks.mark_ready(task.id, len(reference_text(start, sn)))
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


def test_long_polls_beyond_the_cap_answer_at_once(parts: Parts) -> None:
    # given a fetch process that holds at most 2 long-polls, and a task that stays queued
    settings = Settings(
        segment_bytes=4096, write_chunk_bytes=64 * 1024, fetch_max_wait_s=5, fetch_max_waiting=2
    )
    client = falcon.testing.TestClient(create_app(settings, parts.tasks, parts.sequences))
    task = parts.tasks.create(500)
    query = f"id={task.id}&wait=1.5"

    def poll() -> tuple[int, str | None, float]:
        started = time.monotonic()
        resp = client.simulate_get("/myapp/fibotask", query_string=query)
        return resp.status_code, resp.headers.get("x-fibod-wait"), time.monotonic() - started

    # when 2 long-polls wait and a third comes while they do
    with ThreadPoolExecutor(2) as pool:
        waiting = [pool.submit(poll) for _ in range(2)]
        time.sleep(0.3)
        third = poll()
        held = [f.result() for f in waiting]
    # then the third is answered at once (pending, marked busy), the two waited their time
    assert third[:2] == (202, "busy") and third[2] < 0.5
    assert all(code == 202 and mark is None and took >= 1.4 for code, mark, took in held)
    # and once they are done a long-poll waits again
    assert poll()[1:] == (None, pytest.approx(1.5, abs=0.4))


def test_long_polls_may_not_take_every_fetch_thread() -> None:
    with pytest.raises(SettingsError, match="FIBOD_FETCH_MAX_WAITING"):
        Settings(fetch_threads=8, fetch_max_waiting=8)


def test_failed_task_is_500_with_status_byte_2_and_its_reason(parts: Parts) -> None:
    task = parts.tasks.create(5)
    parts.tasks.mark_failed(task.id, "boom")
    resp = parts.client.simulate_get("/myapp/fibotask", query_string=f"id={task.id}")
    assert (resp.status_code, resp.content) == (500, b"\x02boom")


def test_absent_task_older_than_the_ttl_is_410_with_status_byte_3(parts: Parts) -> None:
    old = new_task_id(parts.tasks.clock - 2 * parts.tasks.ttl_s * 1000, TEST_ID_KEY)
    resp = parts.client.simulate_get("/myapp/fibotask", query_string=f"id={old}")
    assert resp.status_code == 410
    assert resp.content.startswith(b"\x03")


def test_an_old_id_fibod_never_issued_is_unknown_not_expired(parts: Parts) -> None:
    # given ids older than the TTL: one made with another key, one without a MAC
    when = parts.tasks.clock - 2 * parts.tasks.ttl_s * 1000
    forged, legacy = new_task_id(when, b"another key"), new_task_id(when, TEST_ID_KEY)[:20]
    for task_id in (forged, legacy):
        # then every route says unknown (404), not expired
        for path in (f"/myapp/fibotask/id={task_id}", f"/myapp/tasks/{task_id}"):
            resp = parts.client.simulate_get(path)
            assert resp.status_code == 404, (path, resp.text)


def test_unknown_id_is_404_and_malformed_id_400(parts: Parts) -> None:
    young = new_task_id(parts.tasks.clock, TEST_ID_KEY)
    assert parts.client.simulate_get(f"/myapp/fibotask/id={young}").status_code == 404
    assert parts.client.simulate_get(f"/myapp/tasks/{young}").status_code == 404
    for bad in ("xyz", young.upper(), young + "0", young[:-1], young[:21]):
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
    assert (resp.json["progress"], resp.json["eta_s"]) == (1.0, 0.0)
    assert resp.json["text_bytes"] == len(reference_text(0, 10))
    assert set(resp.json) >= {"id", "sn", "from", "state", "created", "started", "finished"}


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


def test_a_ready_body_carries_validators_and_cache_headers(parts: Parts) -> None:
    # given a ready task that finished now, and a TTL of an hour
    task = parts.ready_task(1000)
    resp = parts.client.simulate_get("/myapp/fibotask", query_string=f"id={task.id}")
    # then its ETag is strong, ranges are offered and caches may keep it while the task lives
    assert resp.headers["etag"] == '"v1-text-0-1000"'
    assert resp.headers["accept-ranges"] == "bytes"
    assert resp.headers["cache-control"] == f"public, max-age={parts.tasks.ttl_s}"
    assert resp.headers["last-modified"] == http_date(parts.tasks.clock)
    # and as time passes, the age left shrinks
    parts.tasks.clock += 600_000
    later = parts.client.simulate_head("/myapp/fibotask", query_string=f"id={task.id}")
    assert later.headers["cache-control"] == f"public, max-age={parts.tasks.ttl_s - 600}"


def test_head_answers_the_headers_of_get_without_a_body(parts: Parts) -> None:
    task = parts.ready_task(3000)
    for path in (f"/myapp/fibotask/id={task.id}", f"/myapp/fibotask?id={task.id}&format=lines"):
        resp = parts.client.simulate_head(path)
        assert resp.status_code == 200 and resp.content == b""
        assert int(resp.headers["content-length"]) == 1 + len(reference_text(0, 3000))
    assert parts.sequences.gets == []  # no segment was read
    pending = parts.tasks.create(10)
    resp = parts.client.simulate_head("/myapp/fibotask", query_string=f"id={pending.id}")
    assert resp.status_code == 202 and resp.headers["x-fibod-progress"] == "0.0000"


def test_if_none_match_answers_304_with_the_validators(parts: Parts) -> None:
    task = parts.ready_task(100)
    etag = parts.client.simulate_head(f"/myapp/fibotask/id={task.id}").headers["etag"]
    for header in (etag, f'"other", {etag}', "*"):
        resp = parts.client.simulate_get(
            f"/myapp/fibotask/id={task.id}", headers={"If-None-Match": header}
        )
        assert (resp.status_code, resp.content, resp.headers["etag"]) == (304, b"", etag)
    other = parts.client.simulate_get(
        f"/myapp/fibotask/id={task.id}", headers={"If-None-Match": '"v1-text-0-99"'}
    )
    assert other.status_code == 200


@pytest.mark.parametrize(("start", "fmt"), [(0, "text"), (2500, "lines"), (0, "binary")])
def test_a_range_is_206_with_exactly_those_bytes(parts: Parts, start: int, fmt: str) -> None:
    # given a ready task and its whole body
    task = parts.ready_task(3000, start)
    query = f"id={task.id}&format={fmt}"
    whole = parts.client.simulate_get("/myapp/fibotask", query_string=query).content
    # when ranges across segment boundaries are asked for
    for first, last in [(0, 0), (0, 9), (1, 1), (5, 70_000), (len(whole) - 3, len(whole) - 1)]:
        resp = parts.client.simulate_get(
            "/myapp/fibotask", query_string=query, headers={"Range": f"bytes={first}-{last}"}
        )
        # then each is 206 with those bytes and where they lie
        last = min(last, len(whole) - 1)
        assert resp.status_code == 206
        assert resp.content == whole[first : last + 1]
        assert resp.headers["content-range"] == f"bytes {first}-{last}/{len(whole)}"
        assert int(resp.headers["content-length"]) == last - first + 1


def test_a_range_past_the_end_is_416_and_a_stale_if_range_gets_the_whole_body(
    parts: Parts,
) -> None:
    task = parts.ready_task(100)
    path = f"/myapp/fibotask/id={task.id}"
    length = 1 + len(reference_text(0, 100))
    resp = parts.client.simulate_get(path, headers={"Range": f"bytes={length}-"})
    assert resp.status_code == 416
    assert resp.headers["content-range"] == f"bytes */{length}"
    assert "range not satisfiable" in resp.text
    etag = resp.headers["etag"]
    stale = parts.client.simulate_get(path, headers={"Range": "bytes=5-", "If-Range": '"v0"'})
    assert (stale.status_code, len(stale.content)) == (200, length)
    fresh = parts.client.simulate_get(path, headers={"Range": "bytes=5-", "If-Range": etag})
    assert (fresh.status_code, len(fresh.content)) == (206, length - 5)


def test_a_run_from_a_streams_exactly_those_numbers(parts: Parts) -> None:
    task = parts.ready_task(700, start=4321)
    resp = parts.client.simulate_get(f"/myapp/fibotask/id={task.id}")
    assert resp.content == b"\x00" + reference_text(4321, 700)
    assert resp.headers["etag"] == '"v1-text-4321-700"'


def test_a_cancelled_task_is_410_with_status_byte_4(parts: Parts) -> None:
    task = parts.tasks.create(500)
    resp = parts.client.simulate_delete(f"/myapp/tasks/{task.id}")
    assert (resp.status_code, resp.json["state"]) == (200, "cancelled")
    again = parts.client.simulate_delete(f"/myapp/tasks/{task.id}")
    assert (again.status_code, again.json["state"]) == (200, "cancelled")
    fetched = parts.client.simulate_get("/myapp/fibotask", query_string=f"id={task.id}")
    assert (fetched.status_code, fetched.content[:1]) == (410, b"\x04")
    assert b"cancelled" in fetched.content


def test_cancelling_a_ready_task_is_409_and_an_unknown_one_404(parts: Parts) -> None:
    task = parts.ready_task(10)
    resp = parts.client.simulate_delete(f"/myapp/tasks/{task.id}")
    assert resp.status_code == 409 and "already ready" in resp.text
    unknown = new_task_id(parts.tasks.clock, TEST_ID_KEY)
    assert parts.client.simulate_delete(f"/myapp/tasks/{unknown}").status_code == 404
    assert parts.client.simulate_delete("/myapp/tasks/xyz").status_code == 400


def test_tasks_are_listed_newest_first_a_page_at_a_time(parts: Parts) -> None:
    # given five tasks created a millisecond apart, two of them ready
    made = []
    for sn in (10, 20, 30, 40, 50):
        made.append(parts.ready_task(sn) if sn in (20, 40) else parts.tasks.create(sn))
        parts.tasks.clock += 1
    get = parts.client.simulate_get
    # when listed two at a time
    first = get("/myapp/tasks", query_string="limit=2").json
    second = get("/myapp/tasks", query_string=f"limit=2&cursor={first['next_cursor']}").json
    third = get("/myapp/tasks", query_string=f"limit=2&cursor={second['next_cursor']}").json
    # then every task comes once, newest first, and the last page says there is no more
    listed = [t["id"] for page in (first, second, third) for t in page["tasks"]]
    assert listed == [t.id for t in reversed(made)]
    assert third["next_cursor"] is None
    ready = get("/myapp/tasks", query_string="state=ready").json
    assert [t["sn"] for t in ready["tasks"]] == [40, 20]


@pytest.mark.parametrize(
    "query",
    [
        "state=done",
        "limit=0",
        "limit=101",
        "limit=x",
        "limit=",
        "cursor=xyz",
        "cursor=",
        "state=a&state=b",
    ],
)
def test_a_bad_listing_parameter_is_400_naming_it(parts: Parts, query: str) -> None:
    resp = parts.client.simulate_get("/myapp/tasks", query_string=query)
    assert resp.status_code == 400
    assert query.split("=")[0] in resp.text


def test_a_pending_answer_gives_progress_in_bytes_and_an_eta(parts: Parts) -> None:
    # given a running task, a tenth of its bytes stored, started 2 s ago
    task = parts.tasks.create(1000)
    parts.tasks.mark_running(task.id, "w")
    parts.tasks.set_progress(task.id, len(reference_text(0, 1000)) // 10, "w")
    parts.tasks.clock += 2000
    # then the fetch and the status say so
    resp = parts.client.simulate_get("/myapp/fibotask", query_string=f"id={task.id}")
    assert resp.status_code == 202
    assert resp.headers["x-fibod-progress"] == "0.1000; eta=18"
    status = parts.client.simulate_get(f"/myapp/tasks/{task.id}").json
    assert (status["progress"], status["eta_s"]) == (pytest.approx(0.1, abs=1e-4), 18.0)


def test_the_document_names_exactly_the_methods_the_fetch_app_answers(parts: Parts) -> None:
    import yaml

    from fibod.openapi import openapi_yaml

    spec = yaml.safe_load(openapi_yaml())
    task = parts.ready_task(10)
    routes = [p for p in spec["paths"] if p.startswith(("/myapp/fibotask", "/myapp/tasks"))]
    assert len(routes) == 4
    for path in routes:
        concrete = path.replace("{id}", task.id)
        for method in ("GET", "HEAD", "DELETE", "POST", "PUT", "PATCH"):
            resp = parts.client.simulate_request(method, concrete, query_string=f"id={task.id}")
            documented = method.lower() in spec["paths"][path]
            assert (resp.status_code != 405) == documented, (method, path, resp.status_code)


def _running_task(parts: Parts, sn: int) -> Task:
    task = parts.tasks.create(sn)
    parts.tasks.mark_running(task.id, "worker-a")
    return parts.tasks.tasks[task.id]


def _store_later(parts: Parts, js: list[int], every_s: float, then_ready: Task | None = None):
    """Store segments js one by one from a thread, as a worker would; maybe mark ready."""

    def work() -> None:
        for j in js:
            time.sleep(every_s)
            parts.sequences.put(j, encode_segment(*LAYOUT.bounds(j)))
        if then_ready is not None:
            parts.tasks.mark_ready(then_ready.id, 1, "worker-a")

    pool = ThreadPoolExecutor(1)
    return pool, pool.submit(work)


def test_a_long_poll_on_a_running_task_streams_each_segment_as_it_is_stored(
    parts: Parts,
) -> None:
    # given a running task whose segments a worker stores one by one
    task = _running_task(parts, 3000)
    js = task_segments(LAYOUT, 3000)
    pool, work = _store_later(parts, js, 0.01, then_ready=task)
    # when a long-poll asks for it
    resp = parts.client.simulate_get("/myapp/fibotask", query_string=f"id={task.id}&wait=5")
    work.result()
    pool.shutdown()
    # then it got the whole body at once, marked running, with the ready answer's ETag
    assert resp.status_code == 200 and resp.headers["x-fibod-state"] == "running"
    assert resp.content == b"\x00" + reference_text(0, 3000)
    assert int(resp.headers["content-length"]) == len(resp.content)
    assert resp.headers["etag"] == '"v1-text-0-3000"' and "last-modified" not in resp.headers
    assert resp.headers["cache-control"] == "no-store"
    # and waited for the worker: it computed nothing itself
    assert parts.sequences.counters[keys.STAT_SEGMENTS_REGENERATED] == 0
    ready = parts.client.simulate_get("/myapp/fibotask", query_string=f"id={task.id}")
    assert ready.headers["etag"] == resp.headers["etag"]


def test_an_early_stream_gives_its_long_poll_slot_back(parts: Parts) -> None:
    # given as many early streams as there are long-poll slots, each read and closed
    for _ in range(SETTINGS.fetch_max_waiting + 2):
        task = _running_task(parts, 50)
        pool, work = _store_later(parts, task_segments(LAYOUT, 50), 0.0)
        resp = parts.client.simulate_get("/myapp/fibotask", query_string=f"id={task.id}&wait=2")
        work.result()
        pool.shutdown()
        # then every one started early: no slot was kept by the ones before
        assert resp.headers.get("x-fibod-state") == "running", resp.status
        assert resp.content == b"\x00" + reference_text(0, 50)


def test_a_range_or_head_long_poll_on_a_running_task_waits_for_ready(parts: Parts) -> None:
    task = _running_task(parts, 500)
    query = f"id={task.id}&wait=0.05"
    ranged = parts.client.simulate_get(
        "/myapp/fibotask", query_string=query, headers={"Range": "bytes=0-0"}
    )
    assert (ranged.status_code, ranged.content) == (202, b"\x01running")
    assert parts.client.simulate_head("/myapp/fibotask", query_string=query).status_code == 202


def test_an_early_stream_computes_what_stuck_workers_never_store(parts: Parts) -> None:
    # given a running task whose worker stored its first segment, then stopped
    task = _running_task(parts, 3000)
    js = task_segments(LAYOUT, 3000)
    parts.sequences.put(js[0], encode_segment(*LAYOUT.bounds(js[0])))
    # when a long-poll asks for it
    started = time.monotonic()
    resp = parts.client.simulate_get("/myapp/fibotask", query_string=f"id={task.id}&wait=1")
    # then after the patience (one second, for the whole stream) the fetch computed the rest
    assert resp.content == b"\x00" + reference_text(0, 3000)
    assert 1 <= time.monotonic() - started < 3
    assert parts.sequences.counters[keys.STAT_SEGMENTS_REGENERATED] == len(js) - 1


def test_an_early_stream_of_a_task_cancelled_midway_stops_short(parts: Parts) -> None:
    from fibod.early import StreamAbandoned

    # given a running task with only its first segment stored, cancelled soon after
    task = _running_task(parts, 3000)
    js = task_segments(LAYOUT, 3000)
    parts.sequences.put(js[0], encode_segment(*LAYOUT.bounds(js[0])))
    pool = ThreadPoolExecutor(1)
    pool.submit(lambda: (time.sleep(0.2), parts.tasks.cancel(task.id)))
    # when a long-poll streams it, the stream stops with an error (gunicorn closes
    # the connection: the client has fewer bytes than Content-Length)
    with pytest.raises(StreamAbandoned, match="cancelled"):
        parts.client.simulate_get("/myapp/fibotask", query_string=f"id={task.id}&wait=5")
    pool.shutdown()
    assert parts.sequences.counters[keys.STAT_SEGMENTS_REGENERATED] == 0
