"""A unit longer than max.poll.interval.ms is not redelivered.

Runs one extra `python -m fibod.worker` on a topic and group of its own
with a 6 s max.poll.interval.ms, and makes its task wait 9 s for segments
"claimed" by a worker that never finishes them. The worker must stay in
the group (paused partitions, polling), compute the segments once the
claims expire, mark the task ready and commit exactly one offset.
"""

from __future__ import annotations

import dataclasses
import time

import pytest
from confluent_kafka import Consumer, TopicPartition

from fibod.queue import KIND_TASK, QueueMessage, TaskPublisher
from fibod.tasks import TaskState
from tests.integration.faults import ghost_claim, own_topic
from tests.integration.stack import kafka_config, start_worker, stop_worker

pytestmark = pytest.mark.integration

MAX_POLL_INTERVAL_MS = 6_000
CLAIM_HOLD_MS = 9_000
#: Segments 0 and 1.
SN = 7_000


def test_long_unit_stays_in_group_and_commits_once(
    stack, settings, layout, task_store, sequence_store, sequence_redis
) -> None:
    with own_topic(settings, "long", partitions=1) as (topic, group):
        # given a worker with a short poll interval on a topic and group of our own
        worker = start_worker(
            stack,
            {
                "FIBOD_TASK_TOPIC": topic,
                "FIBOD_TASK_PARTITIONS": "1",
                "FIBOD_WORKER_GROUP": group,
                "FIBOD_KAFKA_MAX_POLL_INTERVAL_MS": str(MAX_POLL_INTERVAL_MS),
                "FIBOD_KAFKA_SESSION_TIMEOUT_MS": str(MAX_POLL_INTERVAL_MS),
            },
        )
        try:
            # and a task whose second segment is claimed by a worker that went silent
            for j in layout.covering(SN):
                sequence_redis.delete(sequence_store.key(j))
            ghost_claim(sequence_redis, layout, 1, hold_ms=CLAIM_HOLD_MS)
            task = task_store.create(SN)
            # when the task is queued on that topic
            publisher = TaskPublisher.from_settings(
                dataclasses.replace(settings, task_topic=topic), "fibod-test"
            )
            publisher.publish(QueueMessage(KIND_TASK, task.id, SN))
            publisher.close()
            # then it becomes ready after the claim expired (longer than the poll interval)
            deadline = time.monotonic() + 60
            while (got := task_store.get(task.id)) and got.state is not TaskState.READY:
                assert time.monotonic() < deadline, "task not ready in 60 s"
                time.sleep(0.2)
            assert got is not None and got.started is not None
            assert got.finished is not None and got.created is not None
            assert got.finished - got.created >= CLAIM_HOLD_MS - 1_000
            # and exactly one offset was committed by a worker that never left the group
            assert _committed(settings.kafka_bootstrap, group, topic) == 1
        finally:
            out = stop_worker(worker)
    assert worker.returncode == 0, out
    assert "abandoned" not in out and "commit of" not in out, out


def _committed(bootstrap: str, group: str, topic: str) -> int:
    deadline = time.monotonic() + 10
    consumer = Consumer(kafka_config() | {"bootstrap.servers": bootstrap, "group.id": group})
    try:
        while True:
            (tp,) = consumer.committed([TopicPartition(topic, 0)], timeout=10)
            if tp.offset >= 1 or time.monotonic() > deadline:
                return tp.offset
            time.sleep(0.2)
    finally:
        consumer.close()
