"""Kafka across three hosts: one quorum, the task topic replicated."""

from __future__ import annotations

import json

from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType
from inventory import state_dir

from fibod.queue import client_config
from tests.cluster.conftest import Rehearsal

TIMEOUT_S = 10.0


def admin(rehearsal: Rehearsal) -> AdminClient:
    """An AdminClient on the bootstrap list the apps get."""
    settings = rehearsal.settings(rehearsal.inventory.with_role("worker")[0])
    return AdminClient(client_config(settings, admin=True))


def test_three_brokers_form_one_quorum(rehearsal: Rehearsal) -> None:
    # given the Kafka hosts of the inventory
    kafka_hosts = rehearsal.inventory.with_role("kafka")
    # when the cluster is described, and each node's view of the quorum read
    client = admin(rehearsal)  # kept: a collected client cancels its futures
    cluster = client.describe_cluster(request_timeout=TIMEOUT_S).result()
    views = [
        json.loads((state_dir(h) / "kafka/data/__cluster_metadata-0/quorum-state").read_text())
        for h in kafka_hosts
    ]
    # then every broker is registered at its host's address
    assert sorted(f"{n.host}:{n.port}" for n in cluster.nodes) == sorted(
        f"{h.address}:9092" for h in kafka_hosts
    )
    # and the three voters follow one leader in one epoch
    assert {(v["leaderId"], v["leaderEpoch"]) for v in views} == {
        (views[0]["leaderId"], views[0]["leaderEpoch"])
    }
    assert views[0]["leaderId"] in (1, 2, 3)


def test_the_task_topic_has_three_replicas_and_two_must_acknowledge(
    rehearsal: Rehearsal,
) -> None:
    client = admin(rehearsal)
    settings = rehearsal.settings(rehearsal.inventory.with_role("kafka")[0])
    topic = settings.task_topic
    meta = client.list_topics(topic=topic, timeout=TIMEOUT_S).topics[topic]
    assert len(meta.partitions) == settings.task_partitions
    for partition in meta.partitions.values():
        assert len(partition.replicas) == 3
        assert sorted(partition.isrs) == sorted(partition.replicas)
    resource = ConfigResource(ResourceType.TOPIC, topic)
    configs = client.describe_configs([resource], request_timeout=TIMEOUT_S)[resource].result()
    assert configs["min.insync.replicas"].value == "2"
