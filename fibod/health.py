"""Readiness checks: does each store and Kafka answer, now and quickly.

A check returns None when its part answers and a one-line reason when
not. /readyz runs the checks of what a process depends on (the monitor
app at the entry URL: all of them) and answers 503 naming each part that
failed. Checks use their own clients with short timeouts, so a frozen
store makes /readyz slow by at most PROBE_TIMEOUT_S, never by the apps'
longer store timeout.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka.admin import AdminClient

from fibod.config import Settings
from fibod.errors import UnavailableError
from fibod.queue import client_config
from fibod.redis_client import connect_sequence_store, connect_task_store, unavailable_on_error

#: Seconds one probe (a PING, a metadata request) may take.
PROBE_TIMEOUT_S = 2
#: Names of the parts, as /readyz says them.
TASK_STORE, SEQUENCE_STORE, KAFKA = "task store", "sequence store", "kafka"

#: A check: None when the part answers, else why not.
Check = Callable[[], str | None]


def probe_settings(settings: Settings) -> Settings:
    """Return the settings with Redis timeouts short enough for a probe."""
    timeout_s = max(PROBE_TIMEOUT_S, settings.task_redis_wait_ms // 1000 + 1)
    return dataclasses.replace(settings, redis_timeout_s=timeout_s)


def redis_check(client: Any, name: str) -> Check:
    """Return a check that PINGs a store's server (or every node of a cluster)."""

    def check() -> str | None:
        try:
            with unavailable_on_error(name):
                client.ping()
        except UnavailableError as exc:
            return str(exc)
        return None

    return check


def kafka_admin(settings: Settings) -> AdminClient:
    """Open an admin client of the stack's brokers (metadata, offsets, groups)."""
    return AdminClient(
        client_config(settings)  # the apps' user: it may describe fibod's topics and groups
        | {
            "socket.keepalive.enable": True,
            "log_level": 4,  # warnings and worse: not its info lines on close
        }
    )


class KafkaAdmin:
    """An admin client that is replaced after a failure.

    A long-lived librdkafka admin client was seen to keep timing out
    after the broker restarted, while a new one answered at once; a
    failed call therefore drops it, and the next call opens a new one.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: AdminClient | None = None

    def get(self) -> AdminClient:
        """Return the current client, opening one if needed."""
        if self._client is None:
            self._client = kafka_admin(self._settings)
        return self._client

    def failed(self) -> None:
        """Forget the client after a failed call."""
        self._client = None


def kafka_check(admin: KafkaAdmin, topic: str) -> Check:
    """Return a check that the brokers answer and know the task topic."""

    def check() -> str | None:
        try:
            meta = admin.get().list_topics(topic=topic, timeout=PROBE_TIMEOUT_S)
        except Exception as exc:  # KafkaException and librdkafka's own errors
            admin.failed()
            return f"{KAFKA} unavailable: {exc}"
        found = meta.topics.get(topic)
        if found is None or found.error is not None:
            return f"{KAFKA}: topic {topic} is not there ({found and found.error})"
        return None

    return check


def stack_checks(settings: Settings, parts: tuple[str, ...]) -> dict[str, Check]:
    """Build the checks of the named parts from the settings."""
    probe = probe_settings(settings)
    checks: dict[str, Check] = {}
    if TASK_STORE in parts:
        checks[TASK_STORE] = redis_check(connect_task_store(probe), TASK_STORE)
    if SEQUENCE_STORE in parts:
        checks[SEQUENCE_STORE] = redis_check(connect_sequence_store(probe), SEQUENCE_STORE)
    if KAFKA in parts:
        checks[KAFKA] = kafka_check(KafkaAdmin(settings), settings.task_topic)
    return checks


def failures(checks: Mapping[str, Check]) -> list[str]:
    """Run every check; return the reasons of those that failed."""
    reasons = []
    for check in checks.values():
        reason = check()
        if reason is not None:
            reasons.append(reason)
    return reasons
