"""Create the fibod task topic on the Kafka broker; fine if it exists.

Waits a bounded time for the broker to answer, creates FIBOD_TASK_TOPIC
with FIBOD_TASK_PARTITIONS partitions and one replica (settings from the
model, `fibod.config`), grows the topic
when it has fewer partitions than asked (Kafka cannot shrink one), and
exits non-zero with a reason when anything fails.

Usage: python ops/kafka/create_topic.py [--wait-s 90] [--check]
"""

from __future__ import annotations

import argparse
import sys
import time

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic

from fibod.config import SettingsError, discover

#: Seconds one admin request may take before it counts as a failure.
REQUEST_TIMEOUT_S = 10.0
#: Seconds between two attempts to reach the broker.
RETRY_PAUSE_S = 1.0


def wait_for_broker(admin: AdminClient, wait_s: float) -> None:
    """Return once the broker answers list_topics; raise after wait_s."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            admin.list_topics(timeout=min(REQUEST_TIMEOUT_S, max(wait_s, 1.0)))
            return
        except KafkaException as exc:
            if time.monotonic() >= deadline:
                raise RuntimeError(f"broker did not answer within {wait_s:.0f} s: {exc}") from exc
            time.sleep(RETRY_PAUSE_S)


def partition_count(admin: AdminClient, topic: str) -> int:
    """Return the topic's partition count, 0 if it does not exist."""
    meta = admin.list_topics(topic=topic, timeout=REQUEST_TIMEOUT_S).topics.get(topic)
    if meta is None or meta.error is not None:
        return 0
    return len(meta.partitions)


def ensure_topic(admin: AdminClient, topic: str, partitions: int) -> str:
    """Create or grow the topic to `partitions`; return what was done."""
    have = partition_count(admin, topic)
    if have == 0:
        future = admin.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=1)],
            request_timeout=REQUEST_TIMEOUT_S,
        )[topic]
        try:
            future.result()
            action = "created"
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise
            action = "exists"
    elif have < partitions:
        admin.create_partitions(
            [NewPartitions(topic, partitions)], request_timeout=REQUEST_TIMEOUT_S
        )[topic].result()
        action = f"grown from {have}"
    else:
        action = "exists"
        if have > partitions:
            action += f" (with {have} partitions; Kafka cannot shrink a topic)"
    # Metadata of a new topic reaches the broker's cache a moment later.
    deadline = time.monotonic() + REQUEST_TIMEOUT_S
    while partition_count(admin, topic) < partitions:
        if time.monotonic() >= deadline:
            raise RuntimeError(f"topic {topic} does not show {partitions} partitions")
        time.sleep(0.2)
    return action


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, then wait for the broker and ensure the topic."""
    try:
        settings = discover()
    except SettingsError as exc:
        print(f"kafka: {exc}", file=sys.stderr)
        return 1
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default=settings.kafka_bootstrap)
    parser.add_argument("--topic", default=settings.task_topic)
    parser.add_argument("--partitions", type=int, default=settings.task_partitions)
    parser.add_argument(
        "--wait-s", type=float, default=90.0, help="how long to wait for the broker"
    )
    parser.add_argument("--check", action="store_true", help="only report; create nothing")
    args = parser.parse_args(argv)

    # Refused connections while the broker starts are expected: log only
    # critical librdkafka events, and report failures from the results.
    admin = AdminClient({"bootstrap.servers": args.bootstrap, "log_level": 2})
    try:
        wait_for_broker(admin, args.wait_s)
        if args.check:
            have = partition_count(admin, args.topic)
            if have == 0:
                print(f"kafka: broker {args.bootstrap} up, topic {args.topic} missing")
                return 1
            print(f"kafka: broker {args.bootstrap} up, topic {args.topic} has {have} partitions")
            return 0
        action = ensure_topic(admin, args.topic, args.partitions)
    except (KafkaException, RuntimeError) as exc:
        print(f"kafka: {exc}", file=sys.stderr)
        return 1
    have = partition_count(admin, args.topic)
    print(f"kafka: topic {args.topic} {action}, {have} partitions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
