"""Settings every process must agree on, checked when a process starts.

A worker and a fetch with different segment sizes would each see the
other's segments as missing; a worker believing in more partitions than
the topic has would send help messages nowhere. Such a mismatch refuses
to start with a one-line reason instead.
"""

from __future__ import annotations

from typing import Protocol

import redis

from fibod import keys
from fibod.config import Settings, SettingsError
from fibod.redis_client import store_call


class TopicLister(Protocol):
    """What reads topic metadata (a confluent-kafka Consumer or AdminClient)."""

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> object: ...


def layout_text(settings: Settings) -> str:
    """Describe the segment layout the way the task store records it."""
    return f"segment_bytes={settings.segment_bytes}"


@store_call("task store")
def check_layout(task_store: redis.Redis, settings: Settings) -> None:
    """Record the layout if none is; refuse one that differs from the recorded one."""
    mine = layout_text(settings)
    task_store.set(keys.LAYOUT_KEY, mine, nx=True)
    recorded = task_store.get(keys.LAYOUT_KEY)
    if isinstance(recorded, bytes):
        recorded = recorded.decode()
    if recorded != mine:
        raise SettingsError(
            f"FIBOD_SEGMENT_BYTES={settings.segment_bytes} disagrees with the stack's "
            f"{recorded} (`fibod cache clear` empties the cache and forgets it)"
        )


def check_partitions(lister: TopicLister, settings: Settings, timeout_s: float = 10.0) -> None:
    """Refuse a FIBOD_TASK_PARTITIONS that is not the topic's partition count."""
    metadata = lister.list_topics(settings.task_topic, timeout=timeout_s)
    topic = metadata.topics.get(settings.task_topic)  # type: ignore[attr-defined]
    have = 0 if topic is None or topic.error is not None else len(topic.partitions)
    if have != settings.task_partitions:
        raise SettingsError(
            f"FIBOD_TASK_PARTITIONS={settings.task_partitions} but topic "
            f"{settings.task_topic} has {have} partitions"
        )


@store_call("task store")
def forget_layout(task_store: redis.Redis) -> None:
    """Forget the recorded layout, so the next process to start records its own."""
    task_store.delete(keys.LAYOUT_KEY)
