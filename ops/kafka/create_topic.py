"""Create the fibod task topic on the Kafka cluster; fine if it exists.

Waits a bounded time until FIBOD_KAFKA_REPLICATION_FACTOR brokers answer
(one on one machine), creates FIBOD_TASK_TOPIC with FIBOD_TASK_PARTITIONS
partitions, that many replicas and min.insync.replicas =
FIBOD_KAFKA_MIN_INSYNC_REPLICAS (settings from the model, `fibod.config`),
grows the topic when it has fewer partitions than asked (Kafka cannot
shrink one), sets min.insync.replicas when it differs, and exits non-zero
with a reason when anything fails, or when the topic has another
replication factor (changing it takes a partition reassignment).

Usage: python ops/kafka/create_topic.py [--wait-s 90] [--check]
(--check only reports: brokers, partitions, replicas, in-sync replicas.)
"""

from __future__ import annotations

import argparse
import sys
import time

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    AlterConfigOpType,
    ClusterMetadata,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

from fibod.config import APP_USER, Settings, SettingsError, discover
from fibod.queue import client_config

#: Seconds one admin request may take before it counts as a failure.
REQUEST_TIMEOUT_S = 10.0
#: Seconds between two attempts to reach the broker.
RETRY_PAUSE_S = 1.0


def wait_for_brokers(admin: AdminClient, count: int, wait_s: float) -> None:
    """Return once count brokers are registered; raise after wait_s."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            brokers = admin.list_topics(timeout=min(REQUEST_TIMEOUT_S, max(wait_s, 1.0))).brokers
            if len(brokers) >= count:
                return
            problem = f"{len(brokers)} of {count} brokers registered"
        except KafkaException as exc:
            problem = f"no answer: {exc}"
        if time.monotonic() >= deadline:
            raise RuntimeError(f"brokers not ready within {wait_s:.0f} s: {problem}")
        time.sleep(RETRY_PAUSE_S)


def partition_count(admin: AdminClient, topic: str) -> int:
    """Return the topic's partition count, 0 if it does not exist."""
    meta = admin.list_topics(topic=topic, timeout=REQUEST_TIMEOUT_S).topics.get(topic)
    if meta is None or meta.error is not None:
        return 0
    return len(meta.partitions)


def min_insync(admin: AdminClient, topic: str) -> int:
    """Return the topic's min.insync.replicas.

    The broker asked may not know a topic created a moment ago on another
    one (UNKNOWN_TOPIC_OR_PART): ask again for a bounded time.
    """
    resource = ConfigResource(ResourceType.TOPIC, topic)
    deadline = time.monotonic() + REQUEST_TIMEOUT_S
    while True:
        future = admin.describe_configs([resource], request_timeout=REQUEST_TIMEOUT_S)[resource]
        try:
            return int(future.result()["min.insync.replicas"].value)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise
            if time.monotonic() >= deadline:
                raise
        time.sleep(0.2)


def ensure_min_insync(admin: AdminClient, topic: str, want: int) -> str:
    """Set the topic's min.insync.replicas to want; return what was done."""
    have = min_insync(admin, topic)
    if have == want:
        return ""
    entry = ConfigEntry(
        "min.insync.replicas", str(want), incremental_operation=AlterConfigOpType.SET
    )
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[entry])
    admin.incremental_alter_configs([resource], request_timeout=REQUEST_TIMEOUT_S)[
        resource
    ].result()
    return f", min.insync.replicas {have} -> {want}"


def settled_topic(admin: AdminClient, topic: str, partitions: int) -> ClusterMetadata:
    """Return metadata showing the topic's partitions, each with its replicas.

    A new topic reaches each broker's metadata cache a moment after it is
    created, and each request may ask another broker: wait a bounded time.
    """
    deadline = time.monotonic() + REQUEST_TIMEOUT_S
    while True:
        meta = admin.list_topics(topic=topic, timeout=REQUEST_TIMEOUT_S)
        found = meta.topics.get(topic)
        if (
            found is not None
            and found.error is None
            and len(found.partitions) >= partitions
            and all(p.replicas for p in found.partitions.values())
        ):
            return meta
        if time.monotonic() >= deadline:
            raise RuntimeError(f"topic {topic} does not show {partitions} partitions")
        time.sleep(0.2)


def describe(admin: AdminClient, topic: str) -> str:
    """Return one line on the topic: partitions, replicas, in-sync replicas."""
    meta = settled_topic(admin, topic, 1)
    partitions = meta.topics[topic].partitions.values()
    factors = sorted({len(p.replicas) for p in partitions})
    in_sync = sum(1 for p in partitions if len(p.isrs) == len(p.replicas))
    return (
        f"{len(meta.brokers)} brokers, topic {topic}: {len(partitions)} partitions, "
        f"replication factor {'/'.join(map(str, factors))}, "
        f"min.insync.replicas {min_insync(admin, topic)}, "
        f"{in_sync}/{len(partitions)} partitions with every replica in sync"
    )


def ensure_topic(admin: AdminClient, settings: Settings, topic: str, partitions: int) -> str:
    """Create or grow the topic to `partitions`; return what was done."""
    replicas = settings.kafka_replication_factor
    have = partition_count(admin, topic)
    if have == 0:
        new_topic = NewTopic(
            topic,
            num_partitions=partitions,
            replication_factor=replicas,
            config={"min.insync.replicas": str(settings.kafka_min_insync_replicas)},
        )
        future = admin.create_topics([new_topic], request_timeout=REQUEST_TIMEOUT_S)[topic]
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
    meta = settled_topic(admin, topic, partitions).topics[topic]
    have_replicas = min(len(p.replicas) for p in meta.partitions.values())
    if have_replicas != replicas:
        raise RuntimeError(
            f"topic {topic} has replication factor {have_replicas}, "
            f"FIBOD_KAFKA_REPLICATION_FACTOR is {replicas} (reassign its partitions)"
        )
    return action + ensure_min_insync(admin, topic, settings.kafka_min_insync_replicas)


#: What the apps' user may do on fibod's topics (read, write, see) and groups.
TOPIC_OPERATIONS = (AclOperation.READ, AclOperation.WRITE, AclOperation.DESCRIBE)
GROUP_OPERATIONS = (AclOperation.READ, AclOperation.DESCRIBE)


def grant_app_access(admin: AdminClient, settings: Settings) -> None:
    """Let the apps' user use the task topic and the worker group, and nothing else.

    Topics named fibod.* and groups named fibod-* are granted too (tests and
    benchmarks run workers on topics and groups of their own).
    """
    principal = f"User:{APP_USER}"
    resources = [
        (ResourceType.TOPIC, settings.task_topic, ResourcePatternType.LITERAL, TOPIC_OPERATIONS),
        (ResourceType.TOPIC, "fibod.", ResourcePatternType.PREFIXED, TOPIC_OPERATIONS),
        (ResourceType.GROUP, settings.worker_group, ResourcePatternType.LITERAL, GROUP_OPERATIONS),
        (ResourceType.GROUP, "fibod-", ResourcePatternType.PREFIXED, GROUP_OPERATIONS),
    ]
    bindings = [
        AclBinding(kind, name, pattern, principal, "*", operation, AclPermissionType.ALLOW)
        for kind, name, pattern, operations in resources
        for operation in operations
    ]
    for future in admin.create_acls(bindings, request_timeout=REQUEST_TIMEOUT_S).values():
        future.result()


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
    config = client_config(settings, admin=True) | {"bootstrap.servers": args.bootstrap}
    admin = AdminClient(config | {"log_level": 2})
    try:
        wait_for_brokers(admin, settings.kafka_replication_factor, args.wait_s)
        if not args.check:
            grant_app_access(admin, settings)
        if args.check:
            if partition_count(admin, args.topic) == 0:
                print(f"kafka: {args.bootstrap} up, topic {args.topic} missing")
                return 1
            print(f"kafka: {describe(admin, args.topic)}")
            return 0
        action = ensure_topic(admin, settings, args.topic, args.partitions)
        print(f"kafka: topic {args.topic} {action}; {describe(admin, args.topic)}")
    except (KafkaException, RuntimeError) as exc:
        print(f"kafka: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
