"""Faults against the real stack: no accepted task is lost, no wrong byte served.

Each test injects one fault into the running stack (kill -9, SIGSTOP,
a stopped broker or store, workers joining and leaving) while a task
spanning ~90 segments is being computed, checks that the fault landed
where the test says (a claim held by the stopped worker, a unit still
running when its partition moved, ...), then checks the outcome against
references that do not use fibod's kernel: the streamed body's sha256
against gmpy2 `.digits()`, every stored segment validated, a sample of
them decoded by hand and compared with gmpy2. The `supervisor` fixture
here brings every program back even when a test fails. Measured figures
go to var/log/fault-figures.jsonl (docs/RELIABILITY.md quotes one run's,
committed as docs/figures/faults.jsonl).

Some tests make a task run for a known time with a "ghost" claim: a
segment claimed by a worker that went silent, so the task's owner waits
for the claim to expire (as after a real crash) while the fault happens.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import re
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import requests
from confluent_kafka import Consumer

from fibod import keys
from fibod.config import Settings
from fibod.queue import KIND_TASK, QueueMessage, TaskPublisher
from fibod.segments import SegmentLayout
from fibod.sequences import SequenceStore
from fibod.tasks import TaskState, TaskStore
from fibod.textcache import TextCache
from tests.integration.clients import Client, StreamReader
from tests.integration.faults import (
    SETTLE_S,
    check_segments,
    drop_ghost_claims,
    ghost_claim,
    group_members,
    held_claim,
    own_topic,
    record,
    stop_holding_a_claim,
    task_on_every_partition,
    worker_owner,
)
from tests.integration.stack import (
    Supervisor,
    inject_signal,
    kafka_config,
    program_log,
    start_worker,
    stop_worker,
    wait_for,
)
from tests.reference import reference_digest, reference_prefix, reference_text_bytes

pytestmark = pytest.mark.integration

#: The task every fault hits: F(0)..F(59,999), 90 segments, 376 MB of text.
FAULT_SN = 60_000
#: A ghost claim holds the segment of this index: every sn above it needs it.
GHOST_INDEX = 41_000
#: A claim on this segment or a later one is "in the middle" of the task.
MID_TASK_SEGMENT = 10
#: Longest a faulted task may take to complete, seconds (a wait, not a figure).
RECOVERY_TIMEOUT_S = 60
#: Most a killed or frozen worker's task may take: about 3x the 10.1 s that
#: docs/RELIABILITY.md reports (a claim's lease and the session timeout, 10 s).
RECOVERY_BOUND_S = 30
#: Longest a worker may be frozen: beyond session timeout (10 s) and claim lease (10 s).
FREEZE_S = 14
#: Most a 503 may take while the task store is down: 2-4 ms reported, and 14-18 ms
#: seen on a loaded machine or a fetch app just restarted; 50 ms is still 100x below
#: the 5 s connect timeout a hanging answer would wait for (FIBOD_REDIS_TIMEOUT_S).
QUICK_503_S = 0.05
#: The finished task of the store tests: F(0)..F(29,999), its segments.
DONE_SN = 30_000
DONE_SEGMENTS = 23
#: Most the sequence store may take to answer again after kill -9: supervisord
#: notices a dead child on its next tick (up to 1 s), then the store starts
#: empty with nothing to replay (0.2-1.0 s measured).
SEQUENCE_RESTART_BOUND_S = 3.0


@pytest.fixture
def supervisor(supervisor: Supervisor, settings: Settings, http: Client) -> Iterator[Supervisor]:
    """The stack's supervisor, restored before and after: every program RUNNING and usable."""
    supervisor.restore()
    yield supervisor
    supervisor.restore()
    _wait_usable(settings, http)


def _wait_usable(settings: Settings, http: Client) -> None:
    """A task queued on each partition completes: every partition is read again."""
    ids = wait_for(lambda: task_on_every_partition(settings), 60, "queueing on every partition", 1)
    for task_id in ids:
        assert http.wait_ready(task_id, 60)["state"] == "ready"


@pytest.fixture
def store(
    sequence_store: SequenceStore,
    sequence_redis: redis.Redis,
    layout: SegmentLayout,
    text_cache: TextCache,
) -> Iterator[SequenceStore]:
    """The sequence store and the text cache, emptied; ghost claims are dropped afterwards."""
    sequence_store.clear()
    text_cache.clear()
    yield sequence_store
    drop_ghost_claims(sequence_redis, layout)


@pytest.fixture(scope="module", autouse=True)
def _reference() -> None:
    """Compute the gmpy2 reference once, before any fault is timed."""
    reference_digest(FAULT_SN)


def _check_task_bytes(http: Client, task_id: str, sn: int) -> None:
    """The task is ready and streams exactly the gmpy2 reference."""
    ref = reference_digest(sn)
    got = http.stream_digest(task_id)
    assert (got.status, got.first) == (200, b"\x00")
    assert got.size == ref.size and got.sha256 == ref.sha256
    assert got.content_length == str(1 + ref.size)


def _check_stored(sequence_redis: redis.Redis, layout: SegmentLayout, sn: int) -> int:
    """Every stored segment of F(0..sn-1) is whole and right; return how many."""
    report = check_segments(sequence_redis, layout, sn)
    assert report.problems == []
    assert len(report.compared_with_gmpy2) >= 2
    return report.checked


def _hold_ghost_claim(sequence_redis: redis.Redis, layout: SegmentLayout, hold_ms: int) -> None:
    """Make tasks above GHOST_INDEX wait hold_ms for a claim nobody works on."""
    ghost_claim(sequence_redis, layout, layout.index_of(GHOST_INDEX), hold_ms)


def _wait_running(http: Client, *task_ids: str) -> None:
    """Wait until a worker has started one of the tasks."""
    wait_for(
        lambda: any(http.status(t)["state"] == "running" for t in task_ids),
        10,
        "a big task running",
    )


def test_worker_killed_while_computing_a_segment(
    supervisor, http, store, sequence_redis, layout
) -> None:
    # given an empty sequence store, a 90-segment task and 3 more queued behind it
    victim = supervisor.pid("worker:worker-0")
    before = store.counters()
    task_id = http.submit(FAULT_SN)
    others = {http.submit(sn): sn for sn in (30_000, 45_000, 59_000)}
    # when worker-0 is killed (kill -9) while it holds a claim mid-task: stopped
    # first, so the claim is seen held and its segment absent before the kill
    held = stop_holding_a_claim(sequence_redis, layout, victim, FAULT_SN, MID_TASK_SEGMENT)
    inject_signal(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    # then the dead worker still holds the claim and the segment is not stored
    time.sleep(SETTLE_S)
    assert held_claim(sequence_redis, layout, held.j, worker_owner(victim)) is not None
    # and nobody stores that segment before the dead claim's lease runs out
    stored_at = wait_for(
        lambda: sequence_redis.exists(store.key(held.j)) and time.monotonic(),
        RECOVERY_TIMEOUT_S,
        f"segment {held.j} stored after the kill",
        step_s=0.01,
    )
    assert stored_at >= held.expires_by - 0.01, (stored_at - killed_at, held.expires_by - killed_at)
    # and the task completes within about 3x the recovery reported
    task = http.wait_ready(task_id, RECOVERY_TIMEOUT_S)
    recovery_s = time.monotonic() - killed_at
    assert task["state"] == "ready"
    assert task["text_bytes"] == reference_digest(FAULT_SN).size
    assert recovery_s < RECOVERY_BOUND_S
    # and so does every other accepted task
    for other, sn in others.items():
        done = http.wait_ready(other, RECOVERY_TIMEOUT_S)
        assert (done["state"], done["text_bytes"]) == ("ready", reference_text_bytes(sn, FAULT_SN))
    # and the streamed bytes are the reference's, no segment is wrong or stored twice
    _check_task_bytes(http, task_id, FAULT_SN)
    checked = _check_stored(sequence_redis, layout, FAULT_SN)
    after = store.counters()
    assert after["segments_duplicate"] == before["segments_duplicate"]
    # and supervisor started a new worker-0
    supervisor.wait_running(["worker:worker-0"])
    assert supervisor.pid("worker:worker-0") != victim
    record(
        "test_worker_killed_while_computing_a_segment",
        killed_holding_segment=held.j,
        stops_too_late=held.misses,
        lease_left_at_kill_s=round(held.expires_by - killed_at, 2),
        segment_stored_after_kill_s=round(stored_at - killed_at, 2),
        recovery_s=round(recovery_s, 2),
        segments_checked=checked,
        segments_computed=after["segments_computed"] - before["segments_computed"],
        segments_duplicate=after["segments_duplicate"] - before["segments_duplicate"],
    )


def test_worker_frozen_beyond_session_timeout(
    supervisor, http, store, sequence_redis, layout, settings, stack
) -> None:
    # given an empty sequence store and a big task
    victim = supervisor.pid("worker:worker-0")
    log = program_log("worker:worker-0")
    before = store.counters()
    assert settings.kafka_session_timeout_ms < FREEZE_S * 1000
    assert settings.claim_lease_ms < FREEZE_S * 1000
    task_id = http.submit(FAULT_SN)
    # when worker-0 is frozen (SIGSTOP) while it holds a claim mid-task
    held = stop_holding_a_claim(sequence_redis, layout, victim, FAULT_SN, MID_TASK_SEGMENT)
    frozen_at = time.monotonic()
    try:
        # and more tasks are queued while it is frozen
        small = {http.submit(sn): sn for sn in (2_001, 2_002, 2_003, 2_004, 2_005, 2_006)}
        # then worker-1 takes its work over and completes everything while it is frozen
        task = http.wait_ready(task_id, RECOVERY_TIMEOUT_S)
        takeover_s = time.monotonic() - frozen_at
        for small_id in small:
            http.wait_ready(small_id, RECOVERY_TIMEOUT_S)
        time.sleep(max(0.0, FREEZE_S - (time.monotonic() - frozen_at)))
    finally:
        os.kill(victim, signal.SIGCONT)
    frozen_s = time.monotonic() - frozen_at
    assert task["state"] == "ready" and takeover_s < RECOVERY_BOUND_S
    # when it resumes: it ends its unit, storing its old segment late
    wait_for(
        lambda: store.counters()["segments_duplicate"] > before["segments_duplicate"],
        30,
        "the resumed worker's late write counted",
        step_s=0.2,
    )
    # then its unit stayed uncommitted: it gave the unit up (it learnt of the
    # revocation first), dropped the unit's noted offset when it learnt its
    # partitions were lost (fibod/commits.py), or the broker refused its
    # commit (the group had moved on without it); its late write was
    # refused, counted once
    given_up = wait_for(
        lambda: (
            log.matching("abandoned", "uncommitted")
            or log.matching("partitions lost before commit")
            or log.matching("commit of", "failed", "UNKNOWN_MEMBER_ID")
        ),
        30,
        "unit abandoned, its offset dropped, or its commit refused",
    )
    after = store.counters()
    assert after["segments_duplicate"] - before["segments_duplicate"] == 1
    assert any(f"task={task_id}" in line for line in given_up), given_up
    # and the late write did no harm: the bytes are right, every segment is right
    _check_task_bytes(http, task_id, FAULT_SN)
    for small_id, sn in small.items():
        done = http.status(small_id)
        assert (done["state"], done["text_bytes"]) == ("ready", reference_text_bytes(sn))
    checked = _check_stored(sequence_redis, layout, FAULT_SN)
    # and the resumed worker is still the same process, back in the group
    assert supervisor.pid("worker:worker-0") == victim
    wait_for(
        lambda: f"fibod-worker-{victim}" in group_members(stack.kafka_bootstrap, "fibod-workers"),
        30,
        "the resumed worker back in the consumer group",
        step_s=0.5,
    )
    record(
        "test_worker_frozen_beyond_session_timeout",
        frozen_holding_segment=held.j,
        stops_too_late=held.misses,
        frozen_s=round(frozen_s, 1),
        takeover_s=round(takeover_s, 2),
        segments_checked=checked,
        late_duplicate_refused=after["segments_duplicate"] - before["segments_duplicate"],
        unit_given_up=given_up[0].split(": ", 1)[-1],
    )


def test_kafka_killed_while_tasks_queued_and_running(
    supervisor, http, store, sequence_redis, layout, stack
) -> None:
    # given tasks that run (their owners wait for a claimed segment) and more queued behind
    _hold_ghost_claim(sequence_redis, layout, hold_ms=20_000)
    sns = [FAULT_SN, 42_000, 44_000, 46_000, 48_000, 50_000, 52_000, 54_000]
    accepted = {http.submit(sn): sn for sn in sns}
    _wait_running(http, next(iter(accepted)))
    # when the broker is killed (kill -9) and kept down
    killed_at = time.monotonic()
    supervisor.kill_and_hold("kafka")
    # then submissions during the outage get 503 with a reason, never 202
    with ThreadPoolExecutor(4) as pool:
        outage = list(pool.map(_timed_submit, [stack.base_url] * 4, [1000, 2000, 3000, 4000]))
    for status, text, retry_after, _elapsed in outage:
        assert status == 503, text
        assert "task queue" in text and retry_after == "1"
    # when the broker is started again
    supervisor.start("kafka")
    down_s = time.monotonic() - killed_at
    restarted_at = time.monotonic()
    first_202 = wait_for(
        lambda: _timed_submit(stack.base_url, 1_500)[0] == 202, 60, "a 202 after the restart", 0.5
    )
    back_s = time.monotonic() - restarted_at
    # then every accepted task completes, with the right bytes
    for task_id, sn in accepted.items():
        done = http.wait_ready(task_id, RECOVERY_TIMEOUT_S)
        assert (done["state"], done["text_bytes"]) == ("ready", reference_text_bytes(sn, FAULT_SN))
    all_ready_s = time.monotonic() - killed_at
    _check_task_bytes(http, next(iter(accepted)), FAULT_SN)
    checked = _check_stored(sequence_redis, layout, FAULT_SN)
    record(
        "test_kafka_killed_while_tasks_queued_and_running",
        accepted=len(accepted),
        broker_down_s=round(down_s, 1),
        outage_answers=[(s, round(e, 2)) for s, _, _, e in outage],
        outage_reason=outage[0][1].strip(),
        first_202_after_start_s=round(back_s, 1),
        all_ready_after_kill_s=round(all_ready_s, 1),
        segments_checked=checked,
        probe_ok=bool(first_202),
    )


def _timed_submit(base_url: str, sn: int) -> tuple[int, str, str | None, float]:
    started = time.monotonic()
    resp = requests.get(f"{base_url}/myapp/fibo", params={"sn": sn}, timeout=30)
    return resp.status_code, resp.text, resp.headers.get("Retry-After"), time.monotonic() - started


def test_task_store_killed_and_held_down(
    supervisor, http, store, task_redis, sequence_redis, layout, stack
) -> None:
    # given a finished task, a task still running (its owner waits for a ghost claim)
    done_id = http.submit(DONE_SN)
    assert http.wait_ready(done_id, RECOVERY_TIMEOUT_S)["state"] == "ready"
    done_fields = task_redis.hgetall(keys.task_key(done_id))
    _hold_ghost_claim(sequence_redis, layout, hold_ms=8_000)
    running_id = http.submit(FAULT_SN)
    _wait_running(http, running_id)
    # and a task accepted just now: its 202 came inside the append-only file's fsync second
    last_id = http.submit(300)
    # when the store is killed (kill -9) at once, and supervisor restarts it
    restart_s = _kill_and_wait_restarted(supervisor, "task-redis", task_redis)
    # then the finished task is unchanged, and the other two complete by themselves
    assert task_redis.hgetall(keys.task_key(done_id)) == done_fields
    finished = http.wait_ready(running_id, RECOVERY_TIMEOUT_S)
    assert (finished["state"], finished["text_bytes"]) == ("ready", reference_digest(FAULT_SN).size)
    assert http.wait_ready(last_id, RECOVERY_TIMEOUT_S)["state"] == "ready"
    _check_task_bytes(http, running_id, FAULT_SN)
    # when the store is held down
    supervisor.fault_stop("task-redis")
    try:
        probes = _probe_api(stack.base_url, done_id)
    finally:
        supervisor.start("task-redis")
    # then submit, fetch and status each answer 503 at once, with a reason and Retry-After
    for name, (status, text, retry_after, elapsed) in probes.items():
        assert (status, retry_after) == (503, "1"), (name, status, text)
        assert "task store unavailable" in text, (name, text)
        assert elapsed < QUICK_503_S, (name, elapsed)
    record(
        "test_task_store_killed_and_held_down",
        restart_s=round(restart_s, 2),
        probes={k: (v[0], round(v[3], 4), v[1].strip()[:80]) for k, v in probes.items()},
    )


def test_sequence_store_killed_and_held_down(
    supervisor, http, store, sequence_redis, layout, stack
) -> None:
    # given a finished task's segments, with the workers stopped (nothing writes them)
    done_id = http.submit(DONE_SN)
    assert http.wait_ready(done_id, RECOVERY_TIMEOUT_S)["state"] == "ready"
    supervisor.stop("worker:*")
    js = list(layout.covering(DONE_SN))
    assert len(js) == DONE_SEGMENTS
    assert None not in _segment_hashes(sequence_redis, store, js).values()
    # when the store is killed (kill -9), and supervisor restarts it
    restart_s = _kill_and_wait_restarted(supervisor, "sequence-redis", sequence_redis)
    # then it is back at once and empty: a cache without persistence (docs/OPERATIONS.md),
    # so there is no file to replay however much it held
    assert restart_s < SEQUENCE_RESTART_BOUND_S
    assert set(_segment_hashes(sequence_redis, store, js).values()) == {None}
    # when the workers are back and the store is held down
    supervisor.start("worker:*")
    supervisor.fault_stop("sequence-redis")
    try:
        before = store.counters()
        probes = _probe_api(stack.base_url, done_id)
        regenerated = store.counters()["segments_regenerated"] - before["segments_regenerated"]
        queued = http.status(probes["submit"][1])["state"] if probes["submit"][0] == 202 else None
    finally:
        supervisor.start("sequence-redis")
    # then a ready task still streams whole, every segment computed by the fetch
    assert probes["fetch"][:2] == (200, reference_digest(DONE_SN).sha256)
    assert regenerated == DONE_SEGMENTS
    # and the status is answered, and a submission accepted (not done until the store is back)
    assert probes["status"][0] == 200
    assert probes["submit"][0] == 202, probes["submit"]
    assert queued in ("queued", "running")
    # and the task accepted meanwhile completes once the store is back
    accepted = http.wait_ready(probes["submit"][1], RECOVERY_TIMEOUT_S)
    assert (accepted["state"], accepted["text_bytes"]) == ("ready", reference_text_bytes(300))
    record(
        "test_sequence_store_killed_and_held_down",
        restart_s=round(restart_s, 2),
        segments_computed_by_the_fetch=regenerated,
        probes={k: (v[0], round(v[3], 3), v[1].strip()[:80]) for k, v in probes.items()},
    )


def _segment_hashes(
    sequence_redis: redis.Redis, store: SequenceStore, js: list[int]
) -> dict[int, str | None]:
    """Return each segment's sha256 as stored (None where missing)."""
    with sequence_redis.pipeline(transaction=False) as pipe:
        for j in js:
            pipe.get(store.key(j))
        found = pipe.execute()
    return {j: hashlib.sha256(v).hexdigest() if v else None for j, v in zip(js, found, strict=True)}


def _kill_and_wait_restarted(supervisor: Supervisor, program: str, client: redis.Redis) -> float:
    """Kill a Redis server with SIGKILL; return the seconds until it answers again."""
    victim = supervisor.pid(program)
    inject_signal(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    wait_for(lambda: client.ping(), 30, f"{program} answering again", step_s=0.02)
    restart_s = time.monotonic() - killed_at
    assert supervisor.pid(program) != victim
    return restart_s


def _probe_api(base_url: str, task_id: str) -> dict[str, tuple[int, str, str | None, float]]:
    """Submit, fetch and status once each; return status, text, Retry-After, seconds."""
    out = {}
    for name, path in (
        ("submit", "/myapp/fibo?sn=300"),
        ("fetch", f"/myapp/fibotask?id={task_id}"),
        ("status", f"/myapp/tasks/{task_id}"),
    ):
        started = time.monotonic()
        resp = requests.get(base_url + path, timeout=30)
        # a ready fetch is summed up by its body's hash (it may be 40 MB)
        text = (
            hashlib.sha256(resp.content[1:]).hexdigest()
            if resp.status_code == 200 and name == "fetch"
            else resp.text
        )
        out[name] = (
            resp.status_code,
            text,
            resp.headers.get("Retry-After"),
            time.monotonic() - started,
        )
    return out


#: Bytes a client has read of a stream when the fault strikes (~2 of 90 segments).
READ_BEFORE_FAULT_BYTES = 8 << 20


@pytest.mark.usefixtures("streamed_by_the_app")
def test_a_stream_cut_by_a_dead_fetch_process_ends_short_of_its_length(
    supervisor, http, stack
) -> None:
    # given a ready task of 376 MB, and a client that has read the start of it through nginx
    task_id = http.submit(FAULT_SN)
    assert http.wait_ready(task_id, RECOVERY_TIMEOUT_S)["state"] == "ready"
    reader = StreamReader(stack.base_url, f"/myapp/fibotask?id={task_id}")
    assert reader.read(READ_BEFORE_FAULT_BYTES) > 0
    # when the fetch app's worker processes die (kill -9) in the middle of the stream
    master = supervisor.pid("fetch")
    killed = supervisor.processes("fetch") - {master}
    for pid in killed:
        inject_signal(pid, signal.SIGKILL)
    # then the client's connection ends short of Content-Length
    reader.read_to_end()
    assert (reader.status, reader.first) == (200, b"\x00")
    assert reader.length == 1 + reference_digest(FAULT_SN).size
    assert READ_BEFORE_FAULT_BYTES <= reader.received < reader.length
    # and every byte it got was right
    text = reference_prefix(reader.received - 1)
    assert reader.sha256 == hashlib.sha256(text).hexdigest()
    # and the fetch app's master started new workers, which stream the task whole
    wait_for(
        lambda: len(supervisor.processes("fetch") - {master} - killed) == len(killed),
        30,
        "new fetch workers",
    )
    _check_task_bytes(http, task_id, FAULT_SN)
    record(
        "test_a_stream_cut_by_a_dead_fetch_process_ends_short_of_its_length",
        content_length=reader.length,
        received_before_kill=READ_BEFORE_FAULT_BYTES,
        received=reader.received,
    )


def test_a_store_failure_mid_stream_still_yields_the_whole_answer(
    supervisor, http, stack, store
) -> None:
    # given a ready task of 376 MB, its 90 segments stored, and a client that has
    # read the start of it through nginx
    task_id = http.submit(FAULT_SN)
    assert http.wait_ready(task_id, RECOVERY_TIMEOUT_S)["state"] == "ready"
    before = store.counters()
    reader = StreamReader(stack.base_url, f"/myapp/fibotask?id={task_id}")
    assert reader.read(READ_BEFORE_FAULT_BYTES) > 0
    # when the sequence store is killed (kill -9) and held down
    supervisor.kill_and_hold("sequence-redis")
    try:
        reader.read_to_end()
        after = store.counters()
    finally:
        supervisor.start("sequence-redis")
    # then the stream goes on to its last byte, every byte right
    reference = reference_digest(FAULT_SN)
    assert (reader.status, reader.first) == (200, b"\x00")
    assert (reader.received, reader.length) == (1 + reference.size, 1 + reference.size)
    assert reader.sha256 == reference.sha256
    # and the segments it could no longer read were computed by the fetch
    regenerated = after["segments_regenerated"] - before["segments_regenerated"]
    assert 0 < regenerated <= len(store.layout.covering(FAULT_SN))
    record(
        "test_a_store_failure_mid_stream_still_yields_the_whole_answer",
        received=reader.received,
        segments_computed_by_the_fetch=regenerated,
    )


#: Tasks of the rebalance test, one per partition: six wait for the ghost claim
#: (one huge); those on partitions 0 and 4 complete at once, so units also run on
#: partitions a newcomer does not take (it took the lowest in the runs seen).
REBALANCE_SNS = [7, FAULT_SN, 45_000, 47_000, 7, 51_000, 55_000, 57_000]
#: "abandoned fibod.tasks[3]@12 uncommitted: partition revoked" -> 3
REVOKED_UNIT = re.compile(r"abandoned \S+\[(\d+)\]@\d+ uncommitted: partition revoked")


def test_workers_join_and_leave_while_a_huge_task_runs(
    supervisor, http, store, sequence_redis, layout, stack, settings
) -> None:
    group = settings.worker_group
    # given a task on each partition, six waiting for a claimed segment, one of them huge
    _hold_ghost_claim(sequence_redis, layout, hold_ms=15_000)
    ids = task_on_every_partition(settings, REBALANCE_SNS)
    accepted = dict(zip(ids, REBALANCE_SNS, strict=True))
    running = wait_for(
        lambda: len(found := _running_partitions(http, ids)) == 2 and found,
        10,
        "a unit running on each worker",
    )
    before_join = group_members(stack.kafka_bootstrap, group)
    logs = {name: program_log(name) for name in ("worker:worker-0", "worker:worker-1")}
    before = store.counters()
    extra = start_worker(stack, cpu=0)
    newcomer = f"fibod-worker-{extra.pid}"
    try:
        # when a third worker joins the group
        started = time.monotonic()
        members = wait_for(
            lambda: (found := group_members(stack.kafka_bootstrap, group)).get(newcomer) and found,
            30,
            "the third worker in the group with partitions",
            step_s=0.2,
        )
        join_s = time.monotonic() - started
        # then only moved partitions were taken away: each member kept the rest of its
        # own, and a unit on a partition that stayed went on (cooperative-sticky)
        assert sorted(p for parts in members.values() for p in parts) == list(range(8))
        moved = set(members[newcomer])
        for member, parts in before_join.items():
            assert set(members[member]) == set(parts) - moved, (before_join, members)
        time.sleep(1)  # a unit notices a revocation at its next check (0.2 s)
        revoked_units = [
            int(match.group(1))
            for log in logs.values()
            for line in log.lines()
            if (match := REVOKED_UNIT.search(line))
        ]
        assert set(revoked_units) <= moved, (revoked_units, moved)
        # when worker-1 leaves it (supervisorctl stop: SIGTERM)
        leaver = f"fibod-worker-{supervisor.pid('worker:worker-1')}"
        supervisor.fault_stop("worker:worker-1")
        stopped_at = time.monotonic()
        # then it left cleanly: it said so, exited 0, and was out of the group at once,
        # not after the session timeout
        wait_for(
            lambda: leaver not in group_members(stack.kafka_bootstrap, group),
            30,
            "worker-1 out of the group",
            step_s=0.1,
        )
        left_s = time.monotonic() - stopped_at
        assert left_s < settings.kafka_session_timeout_ms / 1000 / 3, left_s
        assert logs["worker:worker-1"].matching("leaving the group")
        assert supervisor.exit_line("worker-1").endswith("(exit status 0)")
        # and every task completes, right
        for task_id, sn in accepted.items():
            done = http.wait_ready(task_id, RECOVERY_TIMEOUT_S)
            assert (done["state"], done["text_bytes"]) == (
                "ready",
                reference_text_bytes(sn, FAULT_SN),
            )
    finally:
        out = stop_worker(extra)
    assert extra.returncode == 0, out[-3000:]
    # and the third worker completed some of them itself
    completed_by_newcomer = out.count(" ready: sn=")
    assert completed_by_newcomer >= 1, out[-3000:]
    _check_task_bytes(http, ids[1], FAULT_SN)
    checked = _check_stored(sequence_redis, layout, FAULT_SN)
    after = store.counters()
    assert after["segments_duplicate"] == before["segments_duplicate"]
    record(
        "test_workers_join_and_leave_while_a_huge_task_runs",
        join_s=round(join_s, 2),
        members_before_join=before_join,
        members_after_join=members,
        units_running_at_join=running,
        units_revoked_at_join=revoked_units,
        leaver_out_of_group_s=round(left_s, 2),
        tasks_completed_by_newcomer=completed_by_newcomer,
        newcomer_abandoned=out.count("abandoned"),
        segments_checked=checked,
    )


def _running_partitions(http: Client, ids: list[str]) -> list[int]:
    """Return the partitions whose task (one per partition, in order) is running."""
    return [p for p, task_id in enumerate(ids) if http.status(task_id)["state"] == "running"]


def test_partition_moved_away_and_back_during_a_unit_is_read_again(
    stack, settings, store, sequence_redis, layout, task_store
) -> None:
    """Regression: librdkafka kept a revoked partition paused when it came back."""
    with own_topic(settings, "moved", partitions=2) as (topic, group):
        # given a worker of its own group on a 2-partition topic of its own
        on_topic = dataclasses.replace(settings, task_topic=topic, task_partitions=2)
        env = {"FIBOD_TASK_TOPIC": topic, "FIBOD_TASK_PARTITIONS": "2", "FIBOD_WORKER_GROUP": group}
        worker = start_worker(stack, env)
        member = f"fibod-worker-{worker.pid}"
        publisher = TaskPublisher.from_settings(on_topic, "fibod-test-moved")
        try:
            _wait_assigned_both(settings, group, member, "the worker assigned both partitions")
            # and busy with a unit on partition 0 (both partitions paused) that waits
            # for a ghost-claimed segment
            ghost_claim(sequence_redis, layout, 1, hold_ms=PARTITION_GHOST_MS)
            busy = task_store.create(7_000)  # segments 0 and 1
            publisher.publish(QueueMessage(KIND_TASK, busy.id, busy.sn), 0)
            wait_for(
                lambda: _state(task_store, busy.id) is TaskState.RUNNING, 10, "the unit running"
            )
            # when another member takes one partition away
            with _one_partition_taken(settings, topic, group) as taken:
                # then the unit was still running, waiting for the ghost's segment
                assert _state(task_store, busy.id) is TaskState.RUNNING
                assert sequence_redis.pttl(keys.claim_key(layout.segment_bytes, 1)) > 0
                # and it ends while the partition is away: given up if its partition
                # moved, else completed once the ghost's lease runs out
                if taken == 0:
                    time.sleep(1)  # the unit notices the revocation at its next check
                else:
                    wait_for(
                        lambda: _state(task_store, busy.id) is TaskState.READY,
                        30,
                        "the busy task ready while partition 1 is away",
                    )
            # when that member leaves again, giving the partition back
            _wait_assigned_both(settings, group, member, "both partitions back with the worker")
            assert wait_for(
                lambda: _state(task_store, busy.id) is TaskState.READY, 30, "the busy task ready"
            )
            # then a task queued on each partition afterwards is read and completed
            later = []
            for partition in (0, 1):
                task = task_store.create(50 + partition)
                publisher.publish(QueueMessage(KIND_TASK, task.id, task.sn), partition)
                later.append(task.id)
            for task_id in later:
                wait_for(
                    lambda task_id=task_id: _state(task_store, task_id) is TaskState.READY,
                    20,
                    f"task {task_id} read from its partition",
                )
        finally:
            publisher.close()
            out = stop_worker(worker)
    assert worker.returncode == 0, out[-3000:]


#: The ghost claim of the partition test: longer than a rebalance takes here.
PARTITION_GHOST_MS = 8_000


def _state(tasks: TaskStore, task_id: str) -> TaskState | None:
    task = tasks.get(task_id)
    return task.state if task is not None else None


def _wait_assigned_both(settings: Settings, group: str, member: str, what: str) -> None:
    """Wait until `member` holds partitions 0 and 1 of its group's topic."""
    wait_for(
        lambda: group_members(settings.kafka_bootstrap, group).get(member) == [0, 1],
        30,
        what,
        step_s=0.2,
    )


@contextlib.contextmanager
def _one_partition_taken(settings: Settings, topic: str, group: str) -> Iterator[int]:
    """Join the group as a second member; yield the partition it got; leave."""
    other = Consumer(
        kafka_config(admin=False)
        | {
            "group.id": group,
            "partition.assignment.strategy": "cooperative-sticky",
            "enable.auto.commit": False,
        }
    )
    try:
        other.subscribe([topic])
        wait_for(lambda: other.poll(0.2) is None and len(other.assignment()) == 1, 30, "a move")
        yield other.assignment()[0].partition
    finally:
        other.close()
