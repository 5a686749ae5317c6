"""The executor: consume -> plan -> compute -> store -> mark -> commit.

Run as `python -m fibod.worker`, one process per core. A "task" message
makes this worker the task's owner: it publishes the task's missing
segments on a work list (fibod/worklist.py), asks other workers for
help, takes and computes segments from the list under claims, then
waits for its helpers' reports (blocking reads, no polling), looks at
the store itself only when no report came for a while (a helper died,
or another task's worker holds a claim), marks the task ready with its
text length (known from the indices alone, fibod/lengths.py) and only
then notes the offset for commit (at-least-once; noted offsets are
committed in batches, fibod/commits.py). A "help" message takes
segments from the task's list, computes and reports them, and is noted.
During long units every assigned partition is paused and the consumer
keeps polling, so Kafka never evicts the worker for exceeding
max.poll.interval.ms.

Stopping. The first SIGTERM or SIGINT drains: the worker takes no new
message, gives its current unit up uncommitted at the next check (Kafka
redelivers it; stored segments are reused), closes the consumer so its
partitions move at once, and flushes its help messages. The handler only
sets a flag, which the loop notices between steps: within a poll (1 s at
most), one segment's computation, or one Redis call (up to
FIBOD_REDIS_TIMEOUT_S against a frozen server). Draining itself can
block far longer where the other side does not answer: leaving the group
when the broker is gone, a synchronous commit, the producer's flush. So
the first signal also gives SIGTERM and SIGINT back their default action:
a second one ends the process at once, whatever it is blocked in (as
rq's cold shutdown does). Nothing is lost by that: the unit was never
committed, its claims expire after FIBOD_CLAIM_LEASE_MS, and the group
reassigns its partitions after the session timeout.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import time
import types
from collections.abc import Callable
from typing import Any, Literal, Protocol

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from fibod import agreement, keys, lengths, logs, metrics, planner
from fibod.affinity import lower_priority, pin_to_core
from fibod.commits import OffsetBatch
from fibod.config import EX_CONFIG, Settings, SettingsError, startup_settings
from fibod.errors import UnavailableError
from fibod.logs import configure_logging
from fibod.queue import KIND_HELP, KIND_TASK, QueueMessage, TaskPublisher, consumer_config
from fibod.redis_client import connect_task_store
from fibod.segments import encode_segment
from fibod.sequences import SequenceStore
from fibod.taskmodel import FINAL_STATES, Task, TaskState, now_ms
from fibod.tasks import TaskStore
from fibod.worker_view import operator_view
from fibod.worklist import WorkList

log = logging.getLogger("fibod.worker")

#: Seconds an idle consumer blocks in poll().
POLL_TIMEOUT_S = 1.0
#: Longest wait for a helper's report before the owner looks at the store
#: itself (a helper may have died holding a segment).
WAIT_REPORT_S = 0.5
#: Seconds between consumer polls (paused) during a long unit.
KEEPALIVE_EVERY_S = 0.2
#: Seconds between progress updates of a running task.
PROGRESS_EVERY_S = 0.5
#: Seconds to back off after a first store or broker failure; doubled on each
#: failure in a row up to BACKOFF_MAX_S (kept below max.poll.interval.ms).
BACKOFF_S = 1.0
BACKOFF_MAX_S = 16.0
#: Longest step of a back-off sleep, so a stop request is noticed.
BACKOFF_STEP_S = 0.2
#: Exit status when the stack cannot be reached to check the settings (EX_TEMPFAIL).
EX_TEMPFAIL = 75
#: Signals that stop a worker: the first drains, a second ends it at once.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


#: What librdkafka calls on a rebalance with the consumer and its partitions.
RebalanceCallback = Callable[[Any, list[TopicPartition]], None]


class TaskConsumer(Protocol):
    """The part of a Kafka consumer the worker uses."""

    def subscribe(
        self,
        topics: list[str],
        *,
        on_assign: RebalanceCallback | None = None,
        on_revoke: RebalanceCallback | None = None,
        on_lost: RebalanceCallback | None = None,
    ) -> None: ...

    def poll(self, timeout: float = -1) -> Message | None: ...

    def assignment(self) -> list[TopicPartition]: ...

    def pause(self, partitions: list[TopicPartition]) -> None: ...

    def resume(self, partitions: list[TopicPartition]) -> None: ...

    def seek(self, partition: TopicPartition) -> None: ...

    def commit(
        self, *, offsets: list[TopicPartition], asynchronous: Literal[False]
    ) -> list[TopicPartition] | None: ...

    def close(self) -> None: ...


class HelpPublisher(Protocol):
    """The part of the Kafka publisher the worker uses."""

    def publish_nowait(self, message: QueueMessage, partition: int | None = None) -> None: ...

    def close(self) -> None: ...


class TaskUpdater(Protocol):
    """The part of the task store the worker uses."""

    def get(self, task_id: str) -> Task | None: ...

    def mark_running(self, task_id: str, owner: str) -> bool: ...

    def set_progress(self, task_id: str, done: int, owner: str) -> bool: ...

    def mark_ready(self, task_id: str, text_bytes: int, owner: str = "") -> bool: ...

    def mark_failed(self, task_id: str, error: str, owner: str = "") -> bool: ...


class WorkQueue(Protocol):
    """A task's work list (fibod/worklist.py): hands segments out, carries reports."""

    def publish(self, task_id: str, js: list[int]) -> None: ...

    def take(self, task_id: str) -> list[int]: ...

    def report_and_take(self, task_id: str, js: list[int]) -> list[int]: ...

    def wait(self, task_id: str, timeout_s: float) -> list[int]: ...

    def finish(self, task_id: str) -> None: ...


class SegmentWriter(planner.SegmentStore, Protocol):
    """The part of the sequence store the worker uses."""


class Abandoned(Exception):
    """The current unit must stop uncommitted (shutdown or revocation)."""


class Cancelled(Exception):
    """The unit's task was cancelled: stop computing, commit the unit."""


class Worker:
    """One consumer of the worker group and the loop that drives it."""

    def __init__(
        self,
        settings: Settings,
        consumer: TaskConsumer,
        publisher: HelpPublisher,
        tasks: TaskUpdater,
        sequences: SegmentWriter,
        work: WorkQueue,
        owner_id: str,
        sleep: Callable[[float], None] = time.sleep,
        name: str = "worker-0",
    ) -> None:
        self.settings = settings
        self.consumer = consumer
        self.publisher = publisher
        self.tasks = tasks
        self.sequences = sequences
        self.layout = sequences.layout
        self.owner_id = owner_id
        self.work = work
        #: The supervisor process name (worker-N): the label of this worker's metrics.
        self.name = name
        self.builder = planner.SegmentBuilder(
            sequences, owner_id, settings.claim_lease_ms, encode=self._encode_timed
        )
        self._last_progress = 0.0
        self.stopping = False
        #: A message of a partition still held could not be read again: the
        #: worker stopped, so that the group reads it from the last commit.
        self.rewind_failed = False
        self._unit: TopicPartition | None = None
        self._revoked = False
        self._paused = False
        self._last_keepalive = 0.0
        self._sleep = sleep
        #: Units in a row that met an unavailable store or broker.
        self._failures = 0
        #: What the roster and /readyz show: partitions held, the unit in hand.
        self.assigned: set[int] = set()
        self.assignment_received = False
        self.current: QueueMessage | None = None
        self.current_since = now_ms()
        self.units_done = 0
        #: Finished units whose offsets are not committed yet (fibod/commits.py).
        self.offsets = OffsetBatch(settings.worker_commit_interval_ms / 1000)

    def request_stop(self) -> None:
        """Ask the loop to drain: give up the unit, leave the group, exit."""
        self.stopping = True

    def run(self) -> None:
        """Consume until asked to stop, then leave the group cleanly."""
        self.consumer.subscribe(
            [self.settings.task_topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        log.info("worker %s consuming %s", self.owner_id, self.settings.task_topic)
        try:
            while not self.stopping:
                # with units noted, nothing to read for an interval commits them
                msg = self.consumer.poll(self.offsets.poll_wait_s(POLL_TIMEOUT_S))
                if msg is None:
                    self._commit_noted()
                    continue
                if msg.error():
                    log.warning("consumer error: %s", msg.error())
                    continue
                self.handle(msg)
        finally:
            if self.stopping:
                log.info("stop requested: draining (a second SIGTERM or SIGINT ends at once)")
            log.info("worker %s leaving the group", self.owner_id)
            self._commit_noted()
            self.consumer.close()
            self.publisher.close()

    def handle(self, msg: Message) -> None:
        """Run one message's unit; commit it only if the unit finished."""
        self._unit = _partition_of(msg)
        self._revoked = False
        outcome, kind, task_id = "done", "malformed", None
        try:
            try:
                message = QueueMessage.decode(msg.value())
            except ValueError as exc:
                log.error("skipping malformed message at %s: %s", _where(msg), exc)
            else:
                kind, task_id = message.kind, message.task_id
                self._begin(message)
                self._run_unit(message, msg)
            self._finished(msg, task_id)
            self._failures = 0
        except Abandoned as exc:
            outcome = "abandoned"
            log.info("abandoned %s uncommitted: %s", _where(msg), exc)
        except UnavailableError as exc:
            # not the task's fault (a store full or down, the broker away):
            # the message is read again after a back-off, never failed
            outcome = "retried"
            self._rewind(msg)
            self._commit_noted()  # what is done is not held back by the wait
            if not self.stopping:
                self._back_off(f"{_where(msg)}: {exc}")
        finally:
            self._unit = None
            self._end(kind, outcome)
            self._resume()

    def _begin(self, message: QueueMessage) -> None:
        """Show the unit in hand: in the roster, the metrics and every log line."""
        self.current, self.current_since = message, now_ms()
        # a unit shorter than KEEPALIVE_EVERY_S never pauses its partitions:
        # librdkafka fetches a resumed partition only at its next wake-up, so
        # a task queued just after such a unit waited 0.3-0.9 s (3-19 ms now)
        self._last_keepalive = time.monotonic()
        logs.request_id.set(message.request_id)
        logs.task_id.set(message.task_id)
        metrics.WORKER_BUSY.labels(self.name).set(1)

    def _end(self, kind: str, outcome: str) -> None:
        metrics.WORKER_UNITS.labels(self.name, kind, outcome).inc()
        metrics.WORKER_BUSY.labels(self.name).set(0)
        if outcome == "done":
            self.units_done += 1
        self.current, self.current_since = None, now_ms()
        logs.request_id.set(None)
        logs.task_id.set(None)

    def _encode_timed(self, start: int, count: int) -> bytes:
        began = time.perf_counter()
        segment = encode_segment(start, count)
        metrics.WORKER_SEGMENT_SECONDS.labels(self.name).observe(time.perf_counter() - began)
        return segment

    def _back_off(self, reason: str) -> None:
        """Wait before retrying, longer after each failure in a row; say so."""
        self._failures += 1
        delay = min(BACKOFF_S * 2 ** (self._failures - 1), BACKOFF_MAX_S)
        log.warning("retrying in %.0f s (failure %d in a row): %s", delay, self._failures, reason)
        left = delay
        while left > 0 and not self.stopping:
            step = min(left, BACKOFF_STEP_S)
            self._sleep(step)
            left -= step

    def _run_unit(self, message: QueueMessage, msg: Message) -> None:
        try:
            if message.kind == KIND_TASK:
                self.run_task(message)
            else:
                self.run_help(message)
        except (Abandoned, UnavailableError):
            raise
        except Exception as exc:  # a bug or bad data: fail the task, do not loop on it
            log.exception("unit %s failed", message)
            if message.kind == KIND_TASK:
                self._fail(message.task_id, f"{type(exc).__name__}: {exc}")

    def run_task(self, message: QueueMessage) -> None:
        """Own a task: get all its segments stored, then mark it ready."""
        task = self.tasks.get(message.task_id)
        if task is None or task.state in FINAL_STATES:
            log.info("task %s is %s: nothing to do", message.task_id, task and task.state)
            return
        if (task.sn, task.start) != (message.sn, message.start) or not self._within_limits(task):
            stored = f"stored {task.sn} from {task.start}"
            self._fail(task.id, f"invalid task: sn {message.sn} from {message.start} ({stored})")
            return
        self.tasks.mark_running(task.id, self.owner_id)
        sn, start = task.sn, task.start
        js = planner.task_segments(self.layout, sn, start)
        missing = self.sequences.missing(js)
        self.sequences.count(**{keys.STAT_SEGMENTS_REUSED: len(js) - len(missing)})
        if missing:
            self.work.publish(task.id, missing)
            if len(missing) > 1:
                self._ask_for_help(message, len(missing))
            # Each missing segment is built (or waited for) once. One evicted
            # afterwards is not built again: the fetch computes what it lacks,
            # so a result larger than the store never makes a worker loop.
            try:
                self._build_all(task.id, sn, start, missing)
            except Cancelled:
                self.work.finish(task.id)
                log.info("task %s cancelled: stopped building it", task.id)
                return
            self.work.finish(task.id)
        text_bytes = lengths.text_bytes(start, sn)
        if self.tasks.mark_ready(task.id, text_bytes, owner=self.owner_id):
            self.sequences.count(**{keys.STAT_TASKS_COMPLETED: 1})
            log.info("task %s ready: sn=%d, %d text bytes", task.id, sn, text_bytes)
        else:
            # another worker took the task over (this one was cut off or too
            # slow) or finished it: its state is theirs to write, not ours
            log.warning("task %s: built here, but no longer ours to mark ready", task.id)

    def _fail(self, task_id: str, error: str) -> None:
        if self.tasks.mark_failed(task_id, error, owner=self.owner_id):
            self.sequences.count(**{keys.STAT_TASKS_FAILED: 1})

    def run_help(self, message: QueueMessage) -> None:
        """Compute segments of someone else's task, taken from its work list.

        A cancel empties the list (CANCEL_TASK_LUA), so a helper stops
        after the segments it holds, without reading the task.
        """
        try:
            batch = self.work.take(message.task_id)
            while batch:
                self._keep_alive()
                # report what got stored; a segment another worker holds is
                # reported by nobody: the owner finds it when it looks itself
                built = [j for j in batch if self.builder.build(j)]
                if built:
                    batch = self.work.report_and_take(message.task_id, built)
                else:
                    batch = self.work.take(message.task_id)
        finally:
            self.builder.flush()

    def _within_limits(self, task: Task) -> bool:
        return task.sn <= self.settings.max_sn and task.start <= self.settings.max_from

    def _build_all(self, task_id: str, sn: int, start: int, missing: list[int]) -> None:
        """As the owner, get every missing segment stored: compute, or wait for helpers.

        Raises Cancelled once the task is cancelled: its list is emptied
        then, and a progress report refused says so.
        """
        pending = set(missing)
        self._last_progress = time.monotonic()
        try:
            while batch := self.work.take(task_id):
                for j in batch:
                    self._keep_alive()
                    if self.builder.build(j):
                        pending.discard(j)
                self._report_progress(task_id, sn, start, pending)
            while pending:
                self._keep_alive()
                reported = self.work.wait(task_id, WAIT_REPORT_S)
                pending.difference_update(reported)
                if not reported and pending:
                    # nobody reported for a while: a helper died holding a
                    # segment, another task's worker holds its claim, or the
                    # task was cancelled (its list emptied)
                    self._stop_if_cancelled(task_id)
                    pending = self._build_unheld(sorted(pending))
                self._report_progress(task_id, sn, start, pending)
        finally:
            self.builder.flush()

    def _build_unheld(self, pending: list[int]) -> set[int]:
        """Build the pending segments nobody holds; return those still missing."""
        left = set()
        for j in self.sequences.missing(pending):
            self._keep_alive()
            if not self.builder.build(j):
                left.add(j)
        return left

    def _stop_if_cancelled(self, task_id: str) -> None:
        """Raise Cancelled if the task was cancelled (one HGETALL)."""
        task = self.tasks.get(task_id)
        if task is not None and task.state is TaskState.CANCELLED:
            raise Cancelled(task_id)

    def _report_progress(self, task_id: str, sn: int, start: int, pending: set[int]) -> None:
        """Record the bytes stored (every PROGRESS_EVERY_S); a refusal may mean cancelled."""
        if time.monotonic() - self._last_progress < PROGRESS_EVERY_S:
            return
        self._last_progress = time.monotonic()
        present = [j for j in planner.task_segments(self.layout, sn, start) if j not in pending]
        done = planner.bytes_done(self.layout, sn, present, start)
        if not self.tasks.set_progress(task_id, done, self.owner_id):
            self._stop_if_cancelled(task_id)

    def _ask_for_help(self, message: QueueMessage, missing: int) -> None:
        try:
            own = [tp.partition for tp in self.consumer.assignment()]
        except KafkaException as exc:
            raise UnavailableError(f"task queue: {exc}") from exc
        help_msg = QueueMessage(
            KIND_HELP, message.task_id, message.sn, message.request_id, message.start
        )
        for partition in planner.help_partitions(self.settings.task_partitions, own, missing):
            self.publisher.publish_nowait(help_msg, partition)

    def _keep_alive(self) -> None:
        """Stay in the group during a long unit: pause all, poll, check flags."""
        if self.stopping:
            raise Abandoned("stop requested")
        now = time.monotonic()
        if now - self._last_keepalive < KEEPALIVE_EVERY_S:
            return
        if self.offsets.due():  # earlier units' offsets wait no longer than this one runs
            self._commit_noted()
        self._last_keepalive = now
        try:
            assigned = self.consumer.assignment()
            if assigned:
                self.consumer.pause(assigned)  # also pauses partitions assigned meanwhile
                self._paused = True
            stray = self.consumer.poll(0)
        except KafkaException as exc:  # the broker's trouble, not the task's
            raise UnavailableError(f"task queue: {exc}") from exc
        if stray is not None and not stray.error():
            self._rewind(stray)  # from a partition assigned just now: read it later
        if self._revoked:
            raise Abandoned("partition revoked")
        if self.stopping:
            raise Abandoned("stop requested")

    def _resume(self) -> None:
        if self._paused:
            self._paused = False
            try:
                self.consumer.resume(self.consumer.assignment())
            except KafkaException as exc:
                log.warning("resume failed: %s", exc)

    def _on_assign(self, _consumer: object, partitions: list[TopicPartition]) -> None:
        # cooperative rebalancing: these partitions are added to those held
        self.assigned |= {p.partition for p in partitions}
        self.assignment_received = True
        metrics.WORKER_PARTITIONS.labels(self.name).set(len(self.assigned))
        log.info("assigned partitions %s (now %s)", _numbers(partitions), sorted(self.assigned))

    def _on_revoke(self, _consumer: object, partitions: list[TopicPartition]) -> None:
        # still ours until this returns: what they finished is committed now
        self._commit_noted(partitions)
        self._let_go(partitions)

    def _on_lost(self, _consumer: object, partitions: list[TopicPartition]) -> None:
        # no longer ours: a commit would be refused, their next owner redoes those units
        for noted in self.offsets.take(partitions):
            log.warning("partitions lost before commit: %s", noted.describe())
        self._let_go(partitions)

    def _let_go(self, partitions: list[TopicPartition]) -> None:
        self.assigned -= {p.partition for p in partitions}
        metrics.WORKER_PARTITIONS.labels(self.name).set(len(self.assigned))
        unit = self._unit
        if unit is not None and any(
            (p.topic, p.partition) == (unit.topic, unit.partition) for p in partitions
        ):
            self._revoked = True
        # librdkafka keeps the application's pause flag across assignments:
        # a partition revoked or lost while a unit paused it would come back
        # paused, and its tasks would never be read again.
        try:
            self.consumer.resume(partitions)
        except KafkaException as exc:
            log.warning("resume of revoked partitions failed: %s", exc)

    def _finished(self, msg: Message, task_id: str | None) -> None:
        """Note a finished unit's offset; commit the notes once they are due."""
        if self._revoked:
            raise Abandoned("partition revoked before commit")
        self.offsets.note(msg, task_id)
        if self.offsets.due():
            self._commit_noted()

    def _commit_noted(self, partitions: list[TopicPartition] | None = None) -> None:
        """Commit the noted offsets (of these partitions only, if given), synchronously."""
        noted = self.offsets.take(partitions)
        if not noted:
            return
        try:
            self.consumer.commit(offsets=[n.partition for n in noted], asynchronous=False)
        except KafkaException as exc:
            # e.g. a rebalance took the partition: the new owner redoes the
            # units, which find the segments stored and the tasks ready.
            # librdkafka fails the whole commit on any partition's error.
            log.warning("commit of %s failed: %s", "; ".join(n.describe() for n in noted), exc)

    def _rewind(self, msg: Message) -> None:
        """Read msg again next; if that fails on a partition still held, stop.

        Going on would commit a later unit's offset past the message, which
        nobody would then read: stopping commits only what came before it,
        and the group (this worker restarted, or another) reads it again.
        """
        here = _partition_of(msg)
        try:
            self.consumer.seek(TopicPartition(here.topic, here.partition, msg.offset() or 0))
        except KafkaException as exc:
            if here.partition not in self.assigned:  # its next owner reads it from the commit
                log.warning("could not rewind to %s, no longer ours: %s", _where(msg), exc)
                return
            log.error(
                "could not rewind to %s: %s; stopping, so that it is read again from the "
                "last commit",
                _where(msg),
                exc,
            )
            self.rewind_failed = True
            self.stopping = True


def _partition_of(msg: Message) -> TopicPartition:
    """The topic partition of a consumed message (which always has one)."""
    topic, partition = msg.topic(), msg.partition()
    if topic is None or partition is None:
        raise ValueError("message without topic or partition")
    return TopicPartition(topic, partition)


def _numbers(partitions: list[TopicPartition]) -> list[int]:
    return sorted(p.partition for p in partitions)


def _where(msg: Message) -> str:
    return f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"


def build_worker(settings: Settings, name: str = "worker-0") -> Worker:
    """Wire a worker from settings (the real Kafka and Redis), checking they agree.

    Raises SettingsError when the settings disagree with the stack's.
    """
    owner_id = f"{socket.gethostname()}:{os.getpid()}"
    consumer = Consumer(consumer_config(settings, f"fibod-worker-{os.getpid()}"))
    try:
        agreement.check_partitions(consumer, settings)
        agreement.check_layout(connect_task_store(settings), settings)
    except BaseException:
        consumer.close()  # now, not at exit, where librdkafka would log after our reason
        raise
    publisher = TaskPublisher.from_settings(settings, f"fibod-worker-{os.getpid()}")
    tasks = TaskStore.from_settings(settings)
    sequences = SequenceStore.from_settings(settings)
    work = WorkList(connect_task_store(settings))
    return Worker(settings, consumer, publisher, tasks, sequences, work, owner_id, name=name)


def stop_on_signals(worker: Worker) -> None:
    """Drain on a first SIGTERM or SIGINT; let a second one end the process."""

    def first_signal(_signum: int, _frame: types.FrameType | None) -> None:
        for signum in STOP_SIGNALS:  # the next one gets the default action: exit now
            signal.signal(signum, signal.SIG_DFL)
        worker.request_stop()

    for signum in STOP_SIGNALS:
        signal.signal(signum, first_signal)


def main(argv: list[str] | None = None) -> int:
    """Run one worker until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="fibod.worker", description=main.__doc__)
    parser.add_argument("--index", type=int, default=0, help="worker number, pins to core N")
    args = parser.parse_args(argv)
    metrics.reset_multiproc_dir()
    settings = startup_settings("worker", EX_CONFIG)
    configure_logging(settings)
    pinned = pin_to_core(args.index, bool(settings.worker_pin))
    log.info("worker %d %s, %s", args.index, pinned, lower_priority(settings.worker_nice))
    try:
        worker = build_worker(settings, f"worker-{args.index}")
    except SettingsError as exc:
        print(f"fibod worker: {exc}", file=sys.stderr)
        return EX_CONFIG
    except (UnavailableError, KafkaException) as exc:
        print(f"fibod worker: cannot check the settings against the stack: {exc}", file=sys.stderr)
        return EX_TEMPFAIL
    stop_on_signals(worker)
    with operator_view(worker, settings, args.index):
        worker.run()
    return EX_TEMPFAIL if worker.rewind_failed else 0  # supervisor starts it again


if __name__ == "__main__":
    raise SystemExit(main())
