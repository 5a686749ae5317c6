"""Settings that every process must share are checked when a process starts."""

from __future__ import annotations

import pytest

from tests.integration.stack import start_worker


@pytest.mark.parametrize("setting", ["FIBOD_SEGMENT_BYTES", "FIBOD_TASK_PARTITIONS"])
def test_a_worker_whose_settings_disagree_refuses_to_start(stack, settings, setting: str) -> None:
    # given the running stack (its workers recorded the layout when they started)
    reasons = {
        "FIBOD_SEGMENT_BYTES": (
            "4096",
            f"FIBOD_SEGMENT_BYTES=4096 disagrees with the stack's "
            f"segment_bytes={settings.segment_bytes} (`fibod cache clear` empties the cache "
            "and forgets it)",
        ),
        "FIBOD_TASK_PARTITIONS": (
            str(settings.task_partitions + 1),
            f"FIBOD_TASK_PARTITIONS={settings.task_partitions + 1} but topic "
            f"{settings.task_topic} has {settings.task_partitions} partitions",
        ),
    }
    value, reason = reasons[setting]
    # when one more worker starts with a setting the stack does not share
    worker = start_worker(stack, env={setting: value})
    out, _ = worker.communicate(timeout=60)
    # then it exits at once with EX_CONFIG and one line naming the setting
    assert worker.returncode == 78
    assert out.strip().splitlines()[-1] == f"fibod worker: {reason}"
