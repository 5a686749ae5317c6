"""The settings model: one declaration per setting, ranges refused with a reason."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from fibod.config import (
    DOC_BEGIN,
    DOC_END,
    Settings,
    SettingsError,
    discover_env_file,
    env_name,
    load,
    markdown_table,
    specs,
)

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_need_no_environment() -> None:
    settings = load({})
    assert settings.max_sn == Settings().max_sn
    assert settings.kafka_bootstrap == "127.0.0.1:9092"


def test_every_setting_has_a_doc_and_a_range_or_pattern() -> None:
    for name, (default, kind, spec) in specs().items():
        assert spec.doc, name
        if kind is int:
            assert spec.minimum is not None and spec.maximum is not None, name
            assert spec.minimum <= default <= spec.maximum, name
        else:
            assert spec.pattern is not None, name


@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        ("FIBOD_MAX_SN", "-5", "FIBOD_MAX_SN must be at least 0, got -5"),
        ("FIBOD_TASK_PARTITIONS", "0", "FIBOD_TASK_PARTITIONS must be at least 1, got 0"),
        ("FIBOD_HTTP_PORT", "70000", "FIBOD_HTTP_PORT must be at most 65535, got 70000"),
        ("FIBOD_MAX_SN", "many", "FIBOD_MAX_SN must be an integer, got 'many'"),
        ("FIBOD_LOG_LEVEL", "LOUD", "FIBOD_LOG_LEVEL='LOUD' does not match"),
        ("FIBOD_MAX_SM", "5", "unknown setting FIBOD_MAX_SM (did you mean FIBOD_MAX_SN?)"),
    ],
)
def test_bad_values_are_refused_with_one_line(variable: str, value: str, reason: str) -> None:
    with pytest.raises(SettingsError) as excinfo:
        load({variable: value})
    assert reason in str(excinfo.value)
    assert "\n" not in str(excinfo.value)


def test_a_secret_out_of_pattern_is_not_echoed() -> None:
    with pytest.raises(SettingsError) as excinfo:
        load({"FIBOD_REDIS_PASSWORD": "short pw"})
    assert "short pw" not in str(excinfo.value)


def test_environment_wins_over_the_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / "fibod.env"
    env_file.write_text("FIBOD_MAX_SN=100\nFIBOD_TASK_TOPIC='from.file'\n")
    settings = load({"FIBOD_MAX_SN": "7"}, env_file)
    assert (settings.max_sn, settings.task_topic) == (7, "from.file")


def test_derived_settings_follow_their_sources_unless_set() -> None:
    settings = load({"FIBOD_LISTEN_ADDRESS": "10.77.0.21", "FIBOD_KAFKA_PORT": "9192"})
    assert settings.kafka_bootstrap == "10.77.0.21:9192"
    assert settings.task_redis_url == "redis://10.77.0.21:6391/0"
    pinned = load({"FIBOD_KAFKA_BOOTSTRAP": "a:1,b:2", "FIBOD_KAFKA_PORT": "9192"})
    assert pinned.kafka_bootstrap == "a:1,b:2"


def test_to_env_round_trips() -> None:
    settings = load({"FIBOD_MAX_SN": "12345", "FIBOD_REDIS_PASSWORD": "a" * 32})
    assert load(settings.to_env()) == settings
    assert set(settings.to_env()) == {env_name(f.name) for f in fields(Settings)}


def test_an_unreadable_env_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot read settings file"):
        load({}, tmp_path / "absent.env")


def test_explicit_env_file_beats_fibod_env_file(tmp_path: Path) -> None:
    chosen = discover_env_file({"FIBOD_ENV_FILE": "/from/env"}, explicit=str(tmp_path))
    assert chosen == str(tmp_path)
    assert discover_env_file({"FIBOD_ENV_FILE": "/from/env"}) == "/from/env"


def test_operations_doc_holds_the_generated_settings_table() -> None:
    doc = (ROOT / "docs" / "OPERATIONS.md").read_text()
    _head, _begin, rest = doc.partition(DOC_BEGIN)
    table, end, _tail = rest.partition(DOC_END)
    assert end, "docs/OPERATIONS.md lacks the settings table markers"
    assert table.strip() == markdown_table().strip(), "run `make settings-doc`"


def test_each_daemon_refuses_a_bad_setting_at_start() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIBOD_")}
    result = subprocess.run(
        [sys.executable, "-m", "fibod.worker"],
        env=env | {"FIBOD_MAX_SN": "-5"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 78
    assert result.stderr.strip() == "fibod worker: FIBOD_MAX_SN must be at least 0, got -5"
