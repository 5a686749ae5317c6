"""Kafka setup in one place: message format, producer and consumer config.

Messages are small JSON objects: {"v": 1, "kind": "task"|"help", "id":
<task id>, "sn": <int>}, then "start": the first index of the run (read as 0
when absent), and "rid": the request id nginx gave the submit (optional:
older messages lack both, and readers ignore what they do not know), so a
worker's log lines name the request. A "task" message makes its consumer
the task's owner; "help" messages ask other workers to compute missing
segments of the same task. Producers are idempotent (acks=all).
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from typing import Any, Protocol, TypeGuard

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from fibod.config import ADMIN_USER, APP_USER, Settings
from fibod.errors import UnavailableError

log = logging.getLogger(__name__)

#: How clients log in to the brokers (ops/kafka/server.properties.in).
SASL_MECHANISM = "SCRAM-SHA-512"
MESSAGE_VERSION = 1
KIND_TASK = "task"
KIND_HELP = "help"
_KINDS = (KIND_TASK, KIND_HELP)
#: Longest request id kept from a message (nginx's are 32 hex digits).
REQUEST_ID_MAX = 64
#: Seconds the background thread blocks in producer.poll() per round.
_POLL_S = 0.1


@dataclass(frozen=True)
class QueueMessage:
    """One message of the task topic."""

    kind: str
    task_id: str
    sn: int
    #: nginx's X-Request-ID of the submit that made the task, if known.
    request_id: str | None = None
    #: First index of the run: the task asks for F(start)..F(start+sn-1).
    start: int = 0

    def encode(self) -> bytes:
        """Serialise as compact JSON."""
        body: dict[str, object] = {
            "v": MESSAGE_VERSION,
            "kind": self.kind,
            "id": self.task_id,
            "sn": self.sn,
            "start": self.start,
        }
        if self.request_id:
            body["rid"] = self.request_id
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes | None) -> QueueMessage:
        """Parse a message; raise ValueError on anything unexpected."""
        try:
            body = json.loads(raw or b"")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not JSON: {exc}") from None
        if not isinstance(body, dict) or body.get("v") != MESSAGE_VERSION:
            raise ValueError(f"not a version {MESSAGE_VERSION} message: {body!r:.200}")
        kind, task_id, sn = body.get("kind"), body.get("id"), body.get("sn")
        start = body.get("start", 0)
        if kind not in _KINDS or not isinstance(task_id, str):
            raise ValueError(f"bad kind or id: {body!r:.200}")
        if not _natural(sn) or not _natural(start):
            raise ValueError(f"bad sn or start: {body!r:.200}")
        rid = body.get("rid")
        request_id = rid[:REQUEST_ID_MAX] if isinstance(rid, str) else None
        return cls(kind, task_id, sn, request_id, start)


def _natural(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def client_config(settings: Settings, admin: bool = False) -> dict[str, Any]:
    """Where the brokers are, and how to log in (SASL/SCRAM, as the apps' user or the admin).

    Without a password (unit tests' settings) the client does not log in.
    """
    user, password = (
        (ADMIN_USER, settings.kafka_admin_password)
        if admin
        else (APP_USER, settings.kafka_password)
    )
    config: dict[str, Any] = {"bootstrap.servers": settings.kafka_bootstrap}
    if password:
        config |= {
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanisms": SASL_MECHANISM,
            "sasl.username": user,
            "sasl.password": password,
        }
    return config


def producer_config(settings: Settings, client_id: str) -> dict[str, Any]:
    """Configure an idempotent, low-latency producer."""
    return client_config(settings) | {
        "client.id": client_id,
        "enable.idempotence": True,  # implies acks=all, no duplicates on retry
        "acks": "all",
        "linger.ms": 1,  # a task is one small message: send it now
        "message.timeout.ms": settings.kafka_delivery_timeout_ms,
        "socket.keepalive.enable": True,
    }


def consumer_config(settings: Settings, client_id: str) -> dict[str, Any]:
    """Configure an at-least-once consumer of the worker group."""
    return client_config(settings) | {
        "group.id": settings.worker_group,
        "client.id": client_id,
        "enable.auto.commit": False,  # commit after the work is stored and marked
        "auto.offset.reset": "earliest",
        # Only moved partitions are revoked on a rebalance, so a worker
        # joining does not make every other worker abandon its unit.
        "partition.assignment.strategy": "cooperative-sticky",
        "session.timeout.ms": settings.kafka_session_timeout_ms,
        "heartbeat.interval.ms": max(settings.kafka_session_timeout_ms // 5, 500),
        "max.poll.interval.ms": settings.kafka_max_poll_interval_ms,
        # Stop prefetching a partition once 1,000 of its tasks wait here
        # (librdkafka's default is 100,000): behind a backlog the consumer
        # fetched again after every few messages, and each fetch cost the
        # broker; 0.75x the broker's CPU per submission (docs/BENCHMARKS.md).
        "queued.min.messages": 1000,
        "socket.keepalive.enable": True,
    }


class Publisher(Protocol):
    """What the web apps need of a publisher: produce, wait for the ack."""

    def publish(self, message: QueueMessage, partition: int | None = None) -> None: ...


class TaskPublisher:
    """Produce queue messages; wait for Kafka's acknowledgement if asked.

    A daemon thread serves delivery reports, so any number of request
    threads can wait on their own message without polling each other's.
    The thread starts lazily, after gunicorn has forked.
    """

    def __init__(self, producer: Producer, topic: str, timeout_s: float) -> None:
        self._producer = producer
        self._topic = topic
        self._timeout_s = timeout_s
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = threading.Event()

    @classmethod
    def from_settings(cls, settings: Settings, client_id: str) -> TaskPublisher:
        """Build a publisher on the task topic."""
        producer = Producer(producer_config(settings, client_id))
        return cls(producer, settings.task_topic, settings.kafka_delivery_timeout_ms / 1000)

    def publish(self, message: QueueMessage, partition: int | None = None) -> None:
        """Produce and wait until Kafka has it; raise UnavailableError if not."""
        done = threading.Event()
        errors: list[KafkaError] = []

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                errors.append(err)
            done.set()

        self._produce(message, partition, delivered)
        if not done.wait(self._timeout_s + 1.0):
            raise UnavailableError("task queue did not acknowledge the task in time")
        if errors:
            raise UnavailableError(f"task queue refused the task: {errors[0].str()}")

    def publish_nowait(self, message: QueueMessage, partition: int | None = None) -> None:
        """Produce without waiting (help messages); failures are logged."""

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                log.warning("could not produce %s: %s", message, err.str())

        self._produce(message, partition, delivered)

    def close(self, timeout_s: float = 5.0) -> None:
        """Flush what is in flight and stop the delivery thread."""
        self._closed.set()
        self._producer.flush(timeout_s)

    def _produce(self, message: QueueMessage, partition: int | None, callback: Any) -> None:
        self._ensure_thread()
        extra: dict[str, Any] = {} if partition is None else {"partition": partition}
        try:
            self._producer.produce(
                self._topic,
                message.encode(),
                key=message.task_id.encode(),
                on_delivery=callback,
                **extra,
            )
        except (BufferError, KafkaException) as exc:
            raise UnavailableError(f"task queue cannot take the task: {exc}") from exc

    def _ensure_thread(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._serve, name="kafka-delivery", daemon=True
                )
                self._thread.start()

    def _serve(self) -> None:
        while not self._closed.is_set():
            self._producer.poll(_POLL_S)
