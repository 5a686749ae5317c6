"""The whole pipeline through nginx: submit, Kafka, workers, Redis, fetch.

Runs against the real stack (scripts/up.sh) via the `stack` fixture; no
part is mocked. Byte checks compare with plain Python ints and str().
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from fibod.ids import id_key, new_task_id
from tests.integration.clients import Client
from tests.reference import binary_body_numbers, reference_text

pytestmark = pytest.mark.integration

#: Spans 10 default (2 MiB) segments, ~42 MB of text.
BIG_SN = 20_000


@pytest.mark.parametrize("sn", [0, 1, 2, 10, 1000])
def test_small_sequences_end_to_end(http, sn: int) -> None:
    # given a submitted task
    task_id = http.submit(sn)
    # when it is fetched with a long-poll
    resp = http.fetch(task_id)
    # then the body is 0x00 and exactly F(0)..F(sn-1), each followed by a space
    assert resp.status_code == 200
    assert resp.content == b"\x00" + reference_text(0, sn)
    assert int(resp.headers["Content-Length"]) == 1 + len(reference_text(0, sn))


def test_many_segments_cold_and_both_url_forms(http, sequence_store) -> None:
    # given an empty sequence store
    sequence_store.clear()
    # when a task spanning many segments is submitted and fetched
    task_id = http.submit(BIG_SN)
    resp = http.fetch(task_id)
    # then the whole body matches the reference byte for byte
    assert resp.status_code == 200
    assert resp.content == b"\x00" + reference_text(0, BIG_SN)
    # and the original path form streams the same bytes
    again = http.get_path(f"/myapp/fibotask/id={task_id}")
    assert again.status_code == 200
    assert again.content == resp.content


def test_original_client_flow(http) -> None:
    # given a submit asking for JSON
    resp = http.get_path(
        "/myapp/fibo", params={"sn": "3000"}, headers={"Accept": "application/json"}
    )
    assert resp.status_code == 202
    body = resp.json()
    assert (body["sn"], body["state"]) == (3000, 1)
    assert resp.headers["Location"] == f"/myapp/tasks/{body['id']}"
    # when the client polls the query form until the first byte is 0
    deadline = time.monotonic() + 30
    while True:
        got = http.get_path(f"/myapp/fibotask?id={body['id']}")
        if got.content[:1] == b"\x00" or time.monotonic() > deadline:
            break
        assert got.content[:1] == b"\x01"
        assert got.status_code == 202 and "Retry-After" in got.headers
        time.sleep(0.05)
    # then the rest is the sequence
    assert got.content[1:] == reference_text(0, 3000)


def test_concurrent_overlapping_requests_compute_each_segment_once(
    stack, sequence_store, layout
) -> None:
    # given an empty store and clients asking for the same and overlapping ranges at once
    sequence_store.clear()
    before = sequence_store.counters()
    sns = [BIG_SN, BIG_SN, 15_000, 12_000, 18_000, BIG_SN]

    def client(sn: int) -> bytes:
        with Client(stack.base_url) as session:
            return session.fetch(session.submit(sn)).content

    # when they run in parallel
    with ThreadPoolExecutor(len(sns)) as pool:
        bodies = list(pool.map(client, sns))
    # then every answer is right
    for sn, body in zip(sns, bodies, strict=True):
        assert body == b"\x00" + reference_text(0, sn)
    # and each needed segment was computed exactly once, across all workers
    after = sequence_store.counters()
    assert after["segments_computed"] - before["segments_computed"] == len(layout.covering(BIG_SN))
    assert after["segments_duplicate"] == before["segments_duplicate"]


def test_stored_prefix_is_reused(http, sequence_store, layout) -> None:
    # given the first BIG_SN numbers stored
    sequence_store.clear()
    assert http.fetch(http.submit(BIG_SN)).content[:1] == b"\x00"
    before = sequence_store.counters()
    # when a longer sequence is asked for
    longer = BIG_SN + 5_000
    resp = http.fetch(http.submit(longer))
    # then the stored segments were reused and only the new ones computed
    after = sequence_store.counters()
    stored, needed = len(layout.covering(BIG_SN)), len(layout.covering(longer))
    assert after["segments_reused"] - before["segments_reused"] == stored
    assert after["segments_computed"] - before["segments_computed"] == needed - stored
    # and the whole answer, the reused head and the newly computed tail, is right
    assert resp.content == b"\x00" + reference_text(0, longer)
    assert int(resp.headers["Content-Length"]) == len(resp.content)


def test_formats_lines_and_binary(http) -> None:
    task_id = http.submit(5000)
    lines = http.fetch(task_id, format="lines")
    assert lines.content == b"\x00" + reference_text(0, 5000, "\n")
    binary = http.fetch(task_id, format="binary")
    assert binary.status_code == 200
    assert binary.headers["Content-Type"] == "application/octet-stream"
    numbers = binary_body_numbers(binary.content[1:])
    assert " ".join(map(str, numbers[:5000])).encode() + b" " == reference_text(0, 5000)


def test_evicted_and_damaged_segments_are_computed_by_the_fetch(
    http, sequence_store, sequence_redis, layout
) -> None:
    # given a ready task: one segment evicted, another damaged in the store
    task_id = http.submit(12_000)
    assert http.fetch(task_id).content[:1] == b"\x00"
    evicted, damaged = layout.index_of(9_000), layout.index_of(3_000)
    sequence_redis.delete(sequence_store.key(evicted))
    sequence_redis.setrange(sequence_store.key(damaged), 40, b"\xff")
    before = sequence_store.counters()
    # when it is fetched through nginx, at once (no waiting), streamed by the app
    # whatever the text cache holds (a fill the fetch above began may still land):
    # the app never hands a conditional GET to nginx's file (UNCACHED_CONDITIONS)
    resp = http.get_path("/myapp/fibotask", params={"id": task_id}, headers={"If-Match": "*"})
    assert "X-Fibod-Cache" not in resp.headers
    # then the answer is ready, whole and exact, the damage is gone, and both were counted
    assert resp.content == b"\x00" + reference_text(0, 12_000)
    assert int(resp.headers["Content-Length"]) == len(resp.content)
    assert sequence_redis.exists(sequence_store.key(damaged)) == 0
    after = sequence_store.counters()
    assert after["segments_regenerated"] - before["segments_regenerated"] == 1
    assert after["segments_repaired"] - before["segments_repaired"] == 1
    assert http.status(task_id)["state"] == "ready"


@pytest.mark.parametrize(
    "query",
    ["sn=-1", "sn=1.5", "sn=", "sn=99999999999999999999", "sn=1&sn=2", "sn=%D9%A3", "sn=abc", ""],
)
def test_bad_sn_is_400_with_reason(http, query: str) -> None:
    resp = http.get_path(f"/myapp/fibo?{query}")
    assert resp.status_code == 400
    assert "sn" in resp.text


def test_unknown_malformed_and_expired_ids(http, settings) -> None:
    now_ms = int(time.time() * 1000)
    key = id_key(settings.id_secret)
    unknown = new_task_id(now_ms, key)
    expired = new_task_id(now_ms - 400 * 86400 * 1000, key)  # as fibod issued it long ago
    forged = f"{now_ms - 400 * 86400 * 1000:012x}{'0' * 20}"  # as old, but never issued
    for task_id in (unknown, forged):
        for url in (f"/myapp/fibotask?id={task_id}", f"/myapp/fibotask/id={task_id}"):
            resp = http.get_path(url)
            assert resp.status_code == 404 and task_id in resp.text
        assert http.get_path(f"/myapp/tasks/{task_id}").status_code == 404
    for url in ("/myapp/fibotask?id=xyz", "/myapp/fibotask/id=XYZ", "/myapp/tasks/123"):
        resp = http.get_path(url)
        assert resp.status_code == 400 and "malformed" in resp.text
    resp = http.get_path(f"/myapp/fibotask?id={expired}")
    assert resp.status_code == 410 and resp.content[:1] == b"\x03"
    assert http.get_path(f"/myapp/tasks/{expired}").status_code == 410


def test_task_status_json(http) -> None:
    task_id = http.submit(1000)
    http.fetch(task_id)
    resp = http.get_path(f"/myapp/tasks/{task_id}")
    assert resp.status_code == 200
    body = resp.json()
    assert (body["id"], body["sn"], body["from"], body["state"]) == (task_id, 1000, 0, "ready")
    assert (body["progress"], body["eta_s"]) == (1.0, 0.0)
    assert body["text_bytes"] == len(reference_text(0, 1000))
    assert body["created"] <= body["started"] <= body["finished"]


def test_path_form_takes_options_after_ampersand(http) -> None:
    # given a task fetched the original way, with options appended to the path
    task_id = http.submit(12)
    resp = http.get_path(f"/myapp/fibotask/id={task_id}&wait=20&format=lines")
    # then the options apply as they do in the query form
    assert resp.status_code == 200
    assert resp.content == b"\x00" + reference_text(0, 12, "\n")
