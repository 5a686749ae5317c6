"""A unit longer than max.poll.interval.ms is not redelivered.

Runs one extra `python -m fibod.worker` on a topic and group of its own
with a 6 s max.poll.interval.ms, and makes its task wait 9 s for segments
"claimed" by a worker that never finishes them. The worker must stay in
the group (paused partitions, polling), compute the segments once the
claims expire, mark the task ready and commit exactly one offset.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from fibod import keys
from fibod.config import Settings
from fibod.queue import KIND_TASK, QueueMessage, TaskPublisher
from fibod.redis_client import connect
from fibod.segments import SegmentLayout
from fibod.tasks import TaskState, TaskStore

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MAX_POLL_INTERVAL_MS = 6_000
CLAIM_HOLD_MS = 9_000


def test_long_unit_stays_in_group_and_commits_once(stack) -> None:
    # given a topic and group of our own, and a worker with a short poll interval
    settings = Settings.from_env(stack.env)
    suffix = uuid.uuid4().hex[:8]
    topic, group = f"fibod.test-long-{suffix}", f"fibod-test-long-{suffix}"
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=30)
    env = dict(os.environ)
    env.update(stack.env)
    env.update(
        FIBOD_TASK_TOPIC=topic,
        FIBOD_TASK_PARTITIONS="1",
        FIBOD_WORKER_GROUP=group,
        FIBOD_KAFKA_MAX_POLL_INTERVAL_MS=str(MAX_POLL_INTERVAL_MS),
        FIBOD_KAFKA_SESSION_TIMEOUT_MS=str(MAX_POLL_INTERVAL_MS),
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "fibod.worker"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # and a task whose one segment is claimed by a worker that went silent
        tasks = TaskStore(connect(settings.task_redis_url, settings, decode=True), 600)
        seq = connect(settings.sequence_redis_url, settings, decode=False)
        layout = SegmentLayout(settings.segment_bytes)
        sn = 7_000  # segments 0 and 1
        for j in layout.covering(sn):
            seq.delete(keys.segment_key(layout.segment_bytes, j))
        seq.set(keys.claim_key(layout.segment_bytes, 1), b"ghost", px=CLAIM_HOLD_MS)
        task = tasks.create(sn)
        # when the task is queued on that topic
        on_topic = dataclasses.replace(settings, task_topic=topic)
        publisher = TaskPublisher.from_settings(on_topic, "fibod-test")
        publisher.publish(QueueMessage(KIND_TASK, task.id, sn))
        publisher.close()
        # then it becomes ready after the claim expired (longer than the poll interval)
        deadline = time.monotonic() + 60
        while (got := tasks.get(task.id)) and got.state is not TaskState.READY:
            assert time.monotonic() < deadline, "task not ready in 60 s"
            time.sleep(0.2)
        assert got is not None and got.finished is not None and got.started is not None
        assert got.finished - got.created >= CLAIM_HOLD_MS - 1_000
        # and exactly one offset was committed by a worker that never left the group
        assert _committed(settings.kafka_bootstrap, group, topic) == 1
    finally:
        worker.terminate()
        out, _ = worker.communicate(timeout=30)
        admin.delete_topics([topic])
    assert worker.returncode == 0, out
    assert "abandoned" not in out and "commit of" not in out, out


def _committed(bootstrap: str, group: str, topic: str) -> int:
    deadline = time.monotonic() + 10
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        while True:
            (tp,) = consumer.committed([TopicPartition(topic, 0)], timeout=10)
            if tp.offset >= 1 or time.monotonic() > deadline:
                return tp.offset
            time.sleep(0.2)
    finally:
        consumer.close()
