"""Faults against the real stack: no accepted task is lost, no wrong byte served.

Each test injects one fault into the running stack (kill -9, SIGSTOP,
a stopped broker or store, workers joining and leaving) while a task
spanning ~90 segments is being computed, then checks the outcome against
references that do not use fibod's kernel: the streamed body's sha256
against gmpy2 `.digits()`, every stored segment validated, a sample of
them decoded by hand and compared with gmpy2. The `supervisor` fixture
here brings every program back even when a test fails. Measured figures
go to var/log/fault-figures.jsonl (docs/RELIABILITY.md quotes them).

Some tests make a task run for a known time with a "ghost" claim: a
segment claimed by a worker that went silent, so the task's owner waits
for the claim to expire (as after a real crash) while the fault happens.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
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
from tests.integration.clients import Client
from tests.integration.faults import (
    check_segments,
    claims,
    drop_ghost_claims,
    ghost_claim,
    group_members,
    own_topic,
    reading,
    record,
    task_on_every_partition,
    worker_owner,
)
from tests.integration.stack import (
    VAR,
    Supervisor,
    kafka_config,
    start_worker,
    stop_worker,
    wait_for,
)
from tests.reference import reference_digest, reference_text_bytes

pytestmark = pytest.mark.integration

#: The task every fault hits: F(0)..F(59,999), 90 segments, 376 MB of text.
FAULT_SN = 60_000
#: A ghost claim holds the segment of this index: every sn above it needs it.
GHOST_INDEX = 41_000
#: A claim on this segment or a later one is "in the middle" of the task.
MID_TASK_SEGMENT = 10
#: Longest a faulted task may take to complete, seconds.
RECOVERY_TIMEOUT_S = 60
#: Longest a worker may be frozen: beyond session timeout (10 s) and claim lease (10 s).
FREEZE_S = 14


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
    sequence_store: SequenceStore, sequence_redis: redis.Redis, layout: SegmentLayout
) -> Iterator[SequenceStore]:
    """The sequence store, emptied; ghost claims are dropped afterwards."""
    sequence_store.clear()
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


def _wait_running(http: Client, task_id: str) -> None:
    """Wait until a task's owner has started it."""
    wait_for(lambda: http.status(task_id)["state"] == "running", 10, "the big task running")


def test_worker_killed_while_computing_a_segment(
    supervisor, http, store, sequence_redis, layout
) -> None:
    # given an empty sequence store and worker-0's claim owner id
    victim = supervisor.pid("worker:worker-0")
    owner = worker_owner(victim)
    before = store.counters()
    with reading(sequence_redis, layout, FAULT_SN) as reader:
        # when a 90-segment task runs and worker-0 is killed while it holds a
        # claim, i.e. between claiming a segment and storing it
        task_id = http.submit(FAULT_SN)
        others = [http.submit(sn) for sn in (30_000, 45_000, 59_000)]
        held = _wait_computing(sequence_redis, layout, owner)
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        # then the task completes (the dead claim expires, its work is redone)
        task = http.wait_ready(task_id, RECOVERY_TIMEOUT_S)
        recovery_s = time.monotonic() - killed_at
    assert task["state"] == "ready"
    assert task["text_bytes"] == reference_digest(FAULT_SN).size
    # and so does every other accepted task
    for other, sn in zip(others, (30_000, 45_000, 59_000), strict=True):
        done = http.wait_ready(other, RECOVERY_TIMEOUT_S)
        assert (done["state"], done["text_bytes"]) == ("ready", reference_text_bytes(sn, FAULT_SN))
    # and the streamed bytes are the reference's
    _check_task_bytes(http, task_id, FAULT_SN)
    # and no reader saw a partial segment, no segment is wrong or stored twice
    assert reader.bad == [] and reader.reads > 0
    checked = _check_stored(sequence_redis, layout, FAULT_SN)
    after = store.counters()
    assert after["segments_duplicate"] == before["segments_duplicate"]
    # and supervisor started a new worker-0
    supervisor.wait_running(["worker:worker-0"])
    assert supervisor.pid("worker:worker-0") != victim
    record(
        "test_worker_killed_while_computing_a_segment",
        killed_holding_segments=held,
        recovery_s=round(recovery_s, 2),
        segments_checked=checked,
        reader_reads=reader.reads,
        segments_computed=after["segments_computed"] - before["segments_computed"],
        segments_duplicate=after["segments_duplicate"] - before["segments_duplicate"],
    )


def _wait_computing(sequence_redis: redis.Redis, layout: SegmentLayout, owner: str) -> list[int]:
    """Wait until `owner` holds a claim past the first few segments; return them."""

    def held() -> list[int]:
        found = claims(sequence_redis, layout.segment_bytes)
        return [j for j, o in found.items() if o == owner and j >= MID_TASK_SEGMENT]

    return wait_for(held, 20, f"{owner} computing a segment mid-task", step_s=0.001)


def test_worker_frozen_beyond_session_timeout(
    supervisor, http, store, sequence_redis, layout, settings, stack
) -> None:
    # given an empty sequence store and worker-0's claim owner id
    victim = supervisor.pid("worker:worker-0")
    owner = worker_owner(victim)
    before = store.counters()
    assert settings.kafka_session_timeout_ms < FREEZE_S * 1000
    assert settings.claim_lease_ms < FREEZE_S * 1000
    with reading(sequence_redis, layout, FAULT_SN) as reader:
        # when worker-0 is frozen (SIGSTOP) while it computes a segment of a big task
        task_id = http.submit(FAULT_SN)
        held = _wait_computing(sequence_redis, layout, owner)
        os.kill(victim, signal.SIGSTOP)
        frozen_at = time.monotonic()
        try:
            # and more tasks are queued while it is frozen
            small = {http.submit(sn): sn for sn in (2_001, 2_002, 2_003, 2_004, 2_005, 2_006)}
            # then worker-1 takes its work over while it is still frozen
            task = http.wait_ready(task_id, FREEZE_S + 20)
            takeover_s = time.monotonic() - frozen_at
            for small_id in small:
                http.wait_ready(small_id, FREEZE_S + 20)
            time.sleep(max(0.0, FREEZE_S - (time.monotonic() - frozen_at)))
        finally:
            os.kill(victim, signal.SIGCONT)
        # when the stale worker resumes: it may store its old segment late or commit late
        time.sleep(3)
    assert task["state"] == "ready"
    # then its late writes did no harm: the bytes are right, every segment is right
    _check_task_bytes(http, task_id, FAULT_SN)
    for small_id, sn in small.items():
        done = http.status(small_id)
        assert (done["state"], done["text_bytes"]) == ("ready", reference_text_bytes(sn))
    assert reader.bad == [] and reader.reads > 0
    checked = _check_stored(sequence_redis, layout, FAULT_SN)
    # and a late SET NX of its segment was refused (counted as a duplicate), at most once
    after = store.counters()
    duplicates = after["segments_duplicate"] - before["segments_duplicate"]
    assert duplicates in (0, 1)
    # and the resumed worker is still the same process, back in the group
    assert supervisor.pid("worker:worker-0") == victim
    wait_for(
        lambda: f"fibod-worker-{victim}" in group_members(stack.kafka_bootstrap, "fibod-workers"),
        30,
        "the resumed worker back in the consumer group",
        step_s=0.5,
    )
    log_tail = (VAR / "log" / "worker-0.log").read_text()[-4000:]
    record(
        "test_worker_frozen_beyond_session_timeout",
        frozen_holding_segments=held,
        takeover_s=round(takeover_s, 2),
        segments_checked=checked,
        late_duplicate_refused=duplicates,
        stale_worker_abandoned="abandoned" in log_tail,
        stale_commit_refused="commit of" in log_tail,
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


@pytest.mark.parametrize("program", ["task-redis", "sequence-redis"])
def test_redis_killed_and_held_down(
    program, supervisor, http, store, task_redis, sequence_redis, layout, stack
) -> None:
    client = task_redis if program == "task-redis" else sequence_redis
    # given a finished task, its segments stored, and a task still running (a ghost claim)
    done_id = http.submit(30_000)
    ready = http.wait_ready(done_id, RECOVERY_TIMEOUT_S)
    segments_before = _stored_segments(sequence_redis, layout)
    _hold_ghost_claim(sequence_redis, layout, hold_ms=8_000)
    running_id = http.submit(FAULT_SN)
    _wait_running(http, running_id)
    time.sleep(1.5)  # past appendfsync everysec: what was written is on disk
    # when the store is killed (kill -9) and supervisor restarts it
    restart_s = _kill_and_wait_restarted(supervisor, program, client)
    # then the finished task and its segments survived
    assert http.status(done_id)["text_bytes"] == ready["text_bytes"]
    assert _stored_segments(sequence_redis, layout) >= segments_before
    # and the running task completes by itself (workers recover)
    finished = http.wait_ready(running_id, RECOVERY_TIMEOUT_S)
    assert finished["text_bytes"] == reference_digest(FAULT_SN).size
    # when the store is held down
    supervisor.stop(program)
    try:
        probes = _probe_api(stack.base_url, done_id)
    finally:
        supervisor.start(program)
    # then each answer is quick: 503 with a reason and Retry-After where the store is needed
    for name, (status, text, retry_after, elapsed) in probes.items():
        assert elapsed < 6, (name, elapsed)
        assert status in (200, 202, 503), (name, status, text)
        if status == 503:
            assert "unavailable" in text and retry_after == "1", (name, text)
    if program == "task-redis":
        assert {p[0] for p in probes.values()} == {503}
    else:
        # a ready task streams whole without the sequence store: the fetch computes it
        assert probes["fetch"][:2] == (200, reference_digest(30_000).sha256)
        assert probes["status"][0] == 200
    # and anything accepted meanwhile completes; the result streams right after
    accepted = [text for status, text, _, _ in [probes["submit"]] if status == 202]
    for task_id in accepted:
        assert http.wait_ready(task_id, RECOVERY_TIMEOUT_S)["state"] == "ready"
    _check_task_bytes(http, running_id, FAULT_SN)
    record(
        f"test_redis_killed_and_held_down[{program}]",
        restart_s=round(restart_s, 2),
        segments_survived=segments_before,
        probes={k: (v[0], round(v[3], 3), v[1].strip()[:80]) for k, v in probes.items()},
    )


def _kill_and_wait_restarted(supervisor: Supervisor, program: str, client: redis.Redis) -> float:
    """Kill a Redis server with SIGKILL; return the seconds until it answers again."""
    victim = supervisor.pid(program)
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    wait_for(lambda: client.ping(), 30, f"{program} answering again", step_s=0.02)
    restart_s = time.monotonic() - killed_at
    assert supervisor.pid(program) != victim
    return restart_s


def _stored_segments(sequence_redis: redis.Redis, layout: SegmentLayout) -> int:
    pattern = keys.segment_pattern(layout.segment_bytes)
    return sum(1 for _ in sequence_redis.scan_iter(match=pattern, count=1000))


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


def test_workers_join_and_leave_while_a_huge_task_runs(
    supervisor, http, store, sequence_redis, layout, stack
) -> None:
    # given a big task and others queued, all waiting for a claimed segment
    _hold_ghost_claim(sequence_redis, layout, hold_ms=15_000)
    sns = [FAULT_SN, 43_000, 47_000, 51_000, 55_000, 57_000]
    accepted = {http.submit(sn): sn for sn in sns}
    _wait_running(http, next(iter(accepted)))
    before = store.counters()
    extra = start_worker(stack, cpu=0)
    try:
        # when a third worker joins the group
        started = time.monotonic()
        wait_for(
            lambda: (
                f"fibod-worker-{extra.pid}" in group_members(stack.kafka_bootstrap, "fibod-workers")
            ),
            30,
            "the third worker in the group",
            step_s=0.2,
        )
        join_s = time.monotonic() - started
        members = group_members(stack.kafka_bootstrap, "fibod-workers")
        # and worker-1 leaves it
        supervisor.stop("worker:worker-1")
        # then every task completes, right
        for task_id, sn in accepted.items():
            done = http.wait_ready(task_id, RECOVERY_TIMEOUT_S)
            assert (done["state"], done["text_bytes"]) == (
                "ready",
                reference_text_bytes(sn, FAULT_SN),
            )
    finally:
        out = stop_worker(extra)
    assert extra.returncode == 0, out[-3000:]
    _check_task_bytes(http, next(iter(accepted)), FAULT_SN)
    checked = _check_stored(sequence_redis, layout, FAULT_SN)
    after = store.counters()
    assert after["segments_duplicate"] == before["segments_duplicate"]
    record(
        "test_workers_join_and_leave_while_a_huge_task_runs",
        join_s=round(join_s, 2),
        members_after_join=members,
        extra_worker_units=out.count(" ready: sn="),
        extra_worker_abandoned=out.count("abandoned"),
        segments_checked=checked,
    )


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
            # and busy with a unit (both partitions paused) that waits for a ghost-claimed segment
            ghost_claim(sequence_redis, layout, 1, hold_ms=6_000)
            busy = task_store.create(7_000)  # segments 0 and 1
            publisher.publish(QueueMessage(KIND_TASK, busy.id, busy.sn), 0)
            wait_for(
                lambda: _state(task_store, busy.id) is TaskState.RUNNING, 10, "the unit running"
            )
            # when another member takes one partition away and then leaves again
            _take_one_partition_and_leave(settings, topic, group)
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


def _take_one_partition_and_leave(settings: Settings, topic: str, group: str) -> None:
    """Join the group as a second member until it has a partition, then leave."""
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
    finally:
        other.close()
