"""Limits and security of the running stack: TTLs, passwords, loopback, nginx limits.

Eviction is covered by
test_pipeline.py::test_evicted_and_damaged_segments_are_computed_by_the_fetch
(a ready task whose segment was evicted or damaged is computed by the fetch,
never served short or wrong) and tests/test_fetch_app.py.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import requests
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from fibod import keys
from fibod.config import APP_USER, REDIS_ADMIN_USER
from fibod.ids import id_key, new_task_id
from tests.integration.clients import raw_get
from tests.integration.faults import drop_ghost_claims, ghost_claim
from tests.integration.stack import VAR, kafka_config, process_tree, wait_for
from tests.reference import reference_digest

pytestmark = pytest.mark.integration


def test_finished_task_expires_after_the_configured_ttl(
    stack, http, task_redis, task_store, sequence_redis, sequence_store, layout, settings
) -> None:
    ttl_s = int(stack.env.get("FIBOD_TASK_TTL_S", 24 * 3600))
    assert ttl_s >= 24 * 3600
    # given a queued task (stored, not yet handed to a worker) and a running one,
    # whose owner waits for a segment a silent worker claimed
    queued = task_store.create(100)
    sequence_redis.delete(sequence_store.key(0))
    ghost_claim(sequence_redis, layout, 0, hold_ms=20_000)
    try:
        running = http.submit(100)
        wait_for(lambda: http.status(running)["state"] == "running", 10, "the task running")
        # then neither expires
        assert task_redis.ttl(keys.task_key(queued.id)) == -1
        assert task_redis.ttl(keys.task_key(running)) == -1
        assert http.status(queued.id)["state"] == "queued"
    finally:
        drop_ghost_claims(sequence_redis, layout)
        task_redis.delete(keys.task_key(queued.id))
    # when the running one finishes
    assert http.wait_ready(running, 30)["state"] == "ready"
    # then its hash expires after the configured TTL (and not before)
    remaining = task_redis.ttl(keys.task_key(running))
    assert ttl_s - 60 < remaining <= ttl_s
    # and an absent id fibod issued longer than the TTL ago is reported expired on every route
    old = new_task_id(int(time.time() * 1000) - (ttl_s + 3600) * 1000, id_key(settings.id_secret))
    for path in (f"/myapp/fibotask?id={old}", f"/myapp/fibotask/id={old}"):
        resp = http.get_path(path)
        assert resp.status_code == 410 and resp.content[:1] == b"\x03", resp.content
    assert http.get_path(f"/myapp/tasks/{old}").status_code == 410
    # while one as old that fibod never issued (its MAC is wrong) is unknown
    forged = old[:20] + "0" * 12
    assert http.get_path(f"/myapp/fibotask?id={forged}").status_code == 404


@pytest.mark.parametrize("url_field", ["task_redis_url", "sequence_redis_url"])
def test_redis_refuses_clients_without_the_password(stack, url_field: str) -> None:
    url = getattr(stack, url_field)
    for user, password in (
        (None, None),
        (None, "wrong"),
        (APP_USER, "wrong"),
        (None, stack.redis_password),
    ):
        # no default user: even the apps' password without the apps' user name is refused
        client = redis.Redis.from_url(url, username=user, password=password, socket_timeout=5)
        with pytest.raises(redis.AuthenticationError):
            client.ping()
        client.close()
    good = redis.Redis.from_url(url, username=APP_USER, password=stack.redis_password)
    assert good.ping()
    good.close()


@pytest.mark.parametrize("url_field", ["task_redis_url", "sequence_redis_url"])
def test_the_apps_redis_user_cannot_flush_configure_or_reach_other_keys(
    stack, url_field: str
) -> None:
    # given the user the apps log in as
    url = getattr(stack, url_field)
    app = redis.Redis.from_url(url, username=APP_USER, password=stack.redis_password)
    admin = redis.Redis.from_url(
        url, username=REDIS_ADMIN_USER, password=stack.redis_admin_password
    )
    try:
        # then it may use fibod's keys, as the apps do
        app.set("fibod:acl-test", b"x", px=5_000)
        assert app.get("fibod:acl-test") == b"x"
        # and nothing that wipes, reconfigures or lists the server, nor other keys
        for command in (
            ("FLUSHALL",),
            ("FLUSHDB",),
            ("CONFIG", "SET", "maxmemory", "1"),
            ("KEYS", "*"),
            ("SHUTDOWN", "NOSAVE"),
            ("ACL", "LIST"),
            ("BGREWRITEAOF",),
            ("REPLICAOF", "NO", "ONE"),
            ("SET", "other:key", "x"),
        ):
            with pytest.raises(redis.exceptions.NoPermissionError):
                app.execute_command(*command)
        # while the admin user may (what `fibod cache clear` and the health checks use)
        assert admin.config_get("maxmemory")
    finally:
        app.close()
        admin.close()


#: Port settings of parts the one-machine stack does not run.
CLUSTER_ONLY_PORTS = ("FIBOD_SENTINEL_PORT",)


def test_every_service_listens_on_loopback_only(stack) -> None:
    # given every listening TCP socket of the machine and its owning processes
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    pids = process_tree(int((VAR / "run" / "supervisord.pid").read_text()))
    ours: dict[str, str] = {}
    for line in out.splitlines():
        words = line.split()
        local, users = words[3], " ".join(words[5:])
        owners = {int(p.split("=")[1]) for p in users.replace(")", ",").split(",") if "pid=" in p}
        if owners & pids:
            ours[local] = users
    # then the stack's ports are all among them (Sentinel runs only across
    # hosts: docs/DEPLOYMENT.md), and every one is bound to loopback
    ports = {
        int(stack.env[name])
        for name in stack.env
        if name.endswith("_PORT") and stack.env[name].isdigit() and name not in CLUSTER_ONLY_PORTS
    }
    assert ports <= {int(addr.rsplit(":", 1)[1]) for addr in ours}, (ports, ours)
    for addr in ours:
        host = addr.rsplit(":", 1)[0]
        assert host in ("127.0.0.1", "[::1]", "[::ffff:127.0.0.1]"), (addr, ours[addr])


def test_nginx_rate_limit_answers_429_beyond_the_burst(stack) -> None:
    # given one client address (its own, so other tests keep their allowance)
    host, port = stack.address()
    burst = int(stack.env.get("FIBOD_RATE_BURST", "400"))
    rate = int(stack.env.get("FIBOD_RATE_LIMIT", "200r/s").removesuffix("r/s"))

    def hammer(_: int) -> list[tuple[int, str, str | None]]:
        out = []
        for _ in range((burst + 400) // 8):
            status, headers, body = raw_get(host, port, "/myapp/fibo?sn=bad", source="127.0.0.61")
            out.append((status, body.decode(), headers.get("Retry-After")))
        return out

    # when it sends well beyond the burst as fast as it can (sn=bad creates no task)
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        answers = [a for part in pool.map(hammer, range(8)) for a in part]
    elapsed = time.monotonic() - started
    statuses = [a[0] for a in answers]
    # then the burst reaches the app, and beyond it no more than the rate allows over
    # the time the requests took (a loaded machine sends them slower: more pass), the
    # excess gets 429 with a JSON reason and Retry-After
    assert set(statuses) <= {400, 429}
    allowed = burst + rate * elapsed + 8
    assert burst <= statuses.count(400) <= allowed, (statuses.count(400), allowed, elapsed)
    assert statuses.count(429) >= len(statuses) - allowed > 0
    limited = next(a for a in answers if a[0] == 429)
    assert "too many requests" in limited[1] and limited[2] == "1"


def test_nginx_refuses_oversized_requests(stack) -> None:
    base = stack.base_url
    # a URL beyond nginx's request-line buffers
    assert requests.get(f"{base}/myapp/fibo?sn={'1' * 9000}", timeout=10).status_code == 414
    # a header beyond them
    resp = requests.get(f"{base}/myapp/fibo?sn=1", headers={"X-Big": "a" * 9000}, timeout=10)
    assert resp.status_code in (400, 431)
    # a request body beyond 1 KB (the API is GET only)
    resp = requests.get(f"{base}/myapp/fibo?sn=1", data=b"x" * 4096, timeout=10)
    assert resp.status_code == 413


@pytest.mark.usefixtures("streamed_by_the_app")
def test_a_result_larger_than_the_sequence_store_is_served_whole(
    http, sequence_redis, sequence_store
) -> None:
    # given a sequence store capped at 64 MB, and a task of ~190 MB of segments
    sn = 60_000
    segments = len(list(sequence_store.layout.covering(sn)))
    old_cap = sequence_redis.config_get("maxmemory")["maxmemory"]
    sequence_store.clear()
    before = sequence_store.counters()
    sequence_redis.config_set("maxmemory", "64mb")
    try:
        # when it is submitted and fetched
        task_id = http.submit(sn)
        task = http.wait_ready(task_id, timeout_s=120)
        body = http.stream_digest(task_id)
        after = sequence_store.counters()
        evicted = int(sequence_redis.info("stats")["evicted_keys"])
    finally:
        sequence_redis.config_set("maxmemory", old_cap)
    # then it is ready, every byte is right, and each segment was computed about once
    # by the workers (no loop rebuilding what eviction took), the rest by the fetch
    reference = reference_digest(sn)
    assert task["state"] == "ready"
    assert (body.status, body.first, body.size, body.sha256) == (
        200,
        b"\x00",
        reference.size,
        reference.sha256,
    )
    computed = after["segments_computed"] - before["segments_computed"]
    assert segments <= computed <= segments * 11 // 10 + 2, (computed, segments)
    assert after["segments_regenerated"] > before["segments_regenerated"]
    assert evicted > 0


def test_a_full_task_store_refuses_submissions_with_503_and_a_reason(http, task_redis) -> None:
    # given a task store whose memory cap is below what it already uses
    old_cap = task_redis.config_get("maxmemory")["maxmemory"]
    task_redis.config_set("maxmemory", "1mb")
    try:
        # when a task is submitted
        resp = http.get_path("/myapp/fibo", params={"sn": 10})
    finally:
        task_redis.config_set("maxmemory", old_cap)
    # then it is refused at once, saying why, and may be retried later
    assert resp.status_code == 503
    assert "task store is full" in resp.text
    assert resp.headers["Retry-After"] == "1"


def _end_offsets(topic: str) -> list[int]:
    consumer = Consumer(kafka_config() | {"group.id": "fibod-test-offsets"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return [
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in sorted(partitions)
        ]
    finally:
        consumer.close()


def _produce(config: dict[str, object], topic: str) -> object:
    """Produce one forged task message; return the delivery error (None if delivered)."""
    errors: list[object] = []
    producer = Producer(config | {"message.timeout.ms": 4_000, "log_level": 2})
    producer.produce(
        topic,
        b'{"v":1,"kind":"task","id":"0123456789abcdef0123","sn":5}',
        on_delivery=lambda e, _m: errors.append(e),
    )
    producer.flush(15)
    return errors[0] if errors else "no delivery report"


def test_kafka_takes_no_message_without_a_login(settings) -> None:
    # given the task topic's end offsets
    before = _end_offsets(settings.task_topic)
    # when a producer that does not log in sends a forged task
    error = _produce({"bootstrap.servers": settings.kafka_bootstrap}, settings.task_topic)
    # then it is never delivered, and the topic holds nothing more
    assert error is not None
    assert _end_offsets(settings.task_topic) == before


def test_the_apps_kafka_user_writes_only_fibods_topics(settings) -> None:
    # given a topic that is fibod's and one that is not, both made by the admin
    suffix = uuid.uuid4().hex[:8]
    ours, other = f"fibod.acl-test-{suffix}", f"other.acl-test-{suffix}"
    admin = AdminClient(kafka_config())
    for topic in (ours, other):
        admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=30)
    try:
        # when the apps' user writes to each, then only fibod's takes the message
        assert _produce(kafka_config(admin=False), ours) is None
        refused = _produce(kafka_config(admin=False), other)
        assert refused is not None and "AUTHORIZATION" in str(refused).upper(), refused
    finally:
        admin.delete_topics([ours, other])
