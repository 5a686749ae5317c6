"""Redis key names and Lua scripts, defined once for every process.

Both stores share the `fibod:` prefix so an operator can tell fibod's
keys apart; key builders are the only place that spells a key.
"""

from __future__ import annotations

#: Prefix of every fibod key in both Redis servers.
PREFIX = "fibod:"
#: Task hashes in the task store: fibod:task:<id>.
TASK_PREFIX = PREFIX + "task:"
#: Stored segments in the sequence store: fibod:seg:<segment_bytes>:<j>.
SEGMENT_PREFIX = PREFIX + "seg:"
#: Compute claims in the sequence store: fibod:claim:<segment_bytes>:<j>.
CLAIM_PREFIX = PREFIX + "claim:"
#: Worker counters (a hash) in the sequence store.
STATS_KEY = PREFIX + "stats"

#: Counter fields of STATS_KEY.
STAT_SEGMENTS_COMPUTED = "segments_computed"
STAT_SEGMENTS_REUSED = "segments_reused"
STAT_SEGMENTS_DUPLICATE = "segments_duplicate"
STAT_TASKS_COMPLETED = "tasks_completed"
STAT_FIELDS = (
    STAT_SEGMENTS_COMPUTED,
    STAT_SEGMENTS_REUSED,
    STAT_SEGMENTS_DUPLICATE,
    STAT_TASKS_COMPLETED,
)


def task_key(task_id: str) -> str:
    """Name the hash that holds one task."""
    return TASK_PREFIX + task_id


def segment_key(segment_bytes: int, j: int) -> str:
    """Name segment j of the layout for `segment_bytes`."""
    return f"{SEGMENT_PREFIX}{segment_bytes}:{j}"


def claim_key(segment_bytes: int, j: int) -> str:
    """Name the compute claim on segment j."""
    return f"{CLAIM_PREFIX}{segment_bytes}:{j}"


def parse_segment_key(key: str | bytes) -> tuple[int, int] | None:
    """Return (segment_bytes, j) of a segment key, None for other keys."""
    text = key.decode() if isinstance(key, bytes) else key
    if not text.startswith(SEGMENT_PREFIX):
        return None
    size, _, j = text[len(SEGMENT_PREFIX) :].partition(":")
    if not (size.isdigit() and j.isdigit()):
        return None
    return int(size), int(j)


# Delete a claim only while this worker still holds it: an expired claim
# may already belong to another worker.
# KEYS[1]: claim key. ARGV[1]: owner id. Returns 1 if deleted, else 0.
RELEASE_CLAIM_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""

# Update fields of a task only if its hash exists, so a late writer never
# recreates a deleted or expired task as a partial hash.
# KEYS[1]: task key. ARGV[1]: TTL seconds (0 = remove any TTL, -1 = keep),
# ARGV[2..]: field, value pairs. Returns 1 if updated, 0 if absent.
UPDATE_TASK_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then
    return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
local ttl = tonumber(ARGV[1])
if ttl > 0 then
    redis.call('EXPIRE', KEYS[1], ttl)
elseif ttl == 0 then
    redis.call('PERSIST', KEYS[1])
end
return 1
"""

# Mark a task running and keep the first start time across redeliveries.
# KEYS[1]: task key. ARGV[1]: now (ms). Returns 1 if marked, 0 if absent
# or already ready/failed.
START_TASK_LUA = """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'queued' and state ~= 'running' then
    return 0
end
redis.call('HSET', KEYS[1], 'state', 'running')
redis.call('HSETNX', KEYS[1], 'started', ARGV[1])
return 1
"""

# Put a ready task back in the queue (a segment was evicted); only one of
# several concurrent callers wins, so one task message is produced.
# KEYS[1]: task key. Returns 1 if re-queued, 0 if not ready or absent.
REQUEUE_TASK_LUA = """
if redis.call('HGET', KEYS[1], 'state') ~= 'ready' then
    return 0
end
redis.call('HSET', KEYS[1], 'state', 'queued', 'done', '0')
redis.call('HDEL', KEYS[1], 'finished', 'text_bytes')
redis.call('PERSIST', KEYS[1])
return 1
"""
