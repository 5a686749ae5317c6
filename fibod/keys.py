"""Redis key names, defined once for every process.

Both stores share the `fibod:` prefix so an operator can tell fibod's
keys apart; key builders are the only place that spells a key. The Lua
scripts that use them sit beside the store that runs them.
"""

from __future__ import annotations

#: Prefix of every fibod key in both Redis servers.
PREFIX = "fibod:"
#: Task hashes in the task store: fibod:task:<id>.
TASK_PREFIX = PREFIX + "task:"
#: Stored segments in the sequence store: fibod:seg:{<segment_bytes>:<j>}.
SEGMENT_PREFIX = PREFIX + "seg:"
#: Compute claims in the sequence store: fibod:claim:{<segment_bytes>:<j>}. The
#: braces put a segment and its claim in one Redis Cluster slot (one pipeline
#: checks and claims both), while segments still spread over every slot.
CLAIM_PREFIX = PREFIX + "claim:"
#: Index of task ids for listing (a sorted set, all scores 0, so members sort
#: by id and ids by creation time) in the task store: fibod/tasks.py.
TASK_INDEX_KEY = PREFIX + "tasks"
#: A task's segments still to hand out (a list, in the task store).
TODO_PREFIX = PREFIX + "todo:"
#: A task's segments stored by helpers, for its owner to wait on (a list).
DONE_PREFIX = PREFIX + "done:"
#: Counters (a hash) in the task store: fibod/counters.py.
STATS_KEY = PREFIX + "stats"
#: The segment layout every process must share, in the task store: fibod/agreement.py.
LAYOUT_KEY = PREFIX + "layout"

#: Queued and running tasks (a sorted set scored by creation ms): fibod/task_index.py.
LIVE_KEY = PREFIX + "live"
#: The newest tasks of any state (a sorted set scored by creation ms, trimmed).
RECENT_KEY = PREFIX + "recent"
#: Counters per time bucket (hashes fibod:rate:<bucket start s>), for throughput charts.
RATE_PREFIX = PREFIX + "rate:"
#: Live workers (a sorted set scored by last heartbeat ms) and each one's status hash.
WORKERS_KEY = PREFIX + "workers"
WORKER_PREFIX = PREFIX + "worker:"

#: Counter fields of STATS_KEY.
STAT_SEGMENTS_COMPUTED = "segments_computed"
STAT_SEGMENTS_REUSED = "segments_reused"
STAT_SEGMENTS_DUPLICATE = "segments_duplicate"
STAT_TASKS_COMPLETED = "tasks_completed"
#: Segments a fetch found missing and computed again to stream on.
STAT_SEGMENTS_REGENERATED = "segments_regenerated"
#: Segments a fetch found damaged, deleted and computed again.
STAT_SEGMENTS_REPAIRED = "segments_repaired"
#: Tasks a worker marked failed.
STAT_TASKS_FAILED = "tasks_failed"
#: Bytes of sequence (status byte excluded) the fetch app streamed.
STAT_BYTES_STREAMED = "bytes_streamed"
STAT_FIELDS = (
    STAT_SEGMENTS_COMPUTED,
    STAT_SEGMENTS_REUSED,
    STAT_SEGMENTS_DUPLICATE,
    STAT_TASKS_COMPLETED,
    STAT_SEGMENTS_REGENERATED,
    STAT_SEGMENTS_REPAIRED,
    STAT_TASKS_FAILED,
    STAT_BYTES_STREAMED,
)


def task_key(task_id: str) -> str:
    """Name the hash that holds one task."""
    return TASK_PREFIX + task_id


def segment_key(segment_bytes: int, j: int) -> str:
    """Name segment j of the layout for `segment_bytes`."""
    return f"{SEGMENT_PREFIX}{{{segment_bytes}:{j}}}"


def claim_key(segment_bytes: int, j: int) -> str:
    """Name the compute claim on segment j (in the same cluster slot as the segment)."""
    return f"{CLAIM_PREFIX}{{{segment_bytes}:{j}}}"


def segment_pattern(segment_bytes: int) -> str:
    """Match every segment key of one layout (a SCAN pattern)."""
    return f"{SEGMENT_PREFIX}{{{segment_bytes}:*"


def todo_key(task_id: str) -> str:
    """Name the list of a task's segments still to hand out."""
    return TODO_PREFIX + task_id


def done_key(task_id: str) -> str:
    """Name the list of a task's segments stored by its helpers."""
    return DONE_PREFIX + task_id


def parse_segment_key(key: str | bytes) -> tuple[int, int] | None:
    """Return (segment_bytes, j) of a segment key, None for other keys."""
    return _parse(SEGMENT_PREFIX, key)


def parse_claim_key(key: str | bytes) -> tuple[int, int] | None:
    """Return (segment_bytes, j) of a claim key, None for other keys."""
    return _parse(CLAIM_PREFIX, key)


def _parse(prefix: str, key: str | bytes) -> tuple[int, int] | None:
    text = key.decode() if isinstance(key, bytes) else key
    if not (text.startswith(prefix + "{") and text.endswith("}")):
        return None
    size, _, j = text[len(prefix) + 1 : -1].partition(":")
    if not (size.isdigit() and j.isdigit()):
        return None
    return int(size), int(j)


def rate_key(bucket_s: int) -> str:
    """Name the counters of the time bucket starting at bucket_s (epoch seconds)."""
    return f"{RATE_PREFIX}{bucket_s}"


def worker_key(worker_id: str) -> str:
    """Name the status hash of one worker."""
    return WORKER_PREFIX + worker_id
