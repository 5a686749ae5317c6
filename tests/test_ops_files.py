"""The operators' files: Prometheus config and alerts, systemd units, log rotation.

Checked with the tools that read them: Debian's promtool (make deps
installs it), systemd-analyze, logrotate.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from render_conf import ROOT, render_all

from fibod.config import Settings

PROMETHEUS = ROOT / "ops" / "prometheus"
SYSTEMD = ROOT / "ops" / "systemd"


def run(*argv: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus-cluster.yml"])
def test_promtool_accepts_the_scrape_configs(config: str) -> None:
    result = run("promtool", "check", "config", config, cwd=PROMETHEUS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_alert_rules_are_valid_and_fire_as_their_unit_tests_say() -> None:
    checked = run("promtool", "check", "rules", "fibod-rules.yml", cwd=PROMETHEUS)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = run("promtool", "test", "rules", "fibod-rules.test.yml", cwd=PROMETHEUS)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_one_machine_config_scrapes_the_default_entry_url() -> None:
    text = (PROMETHEUS / "prometheus.yml").read_text()
    defaults = Settings()
    assert f'"{defaults.listen_address}:{defaults.http_port}"' in text


def test_systemd_accepts_the_units_and_they_name_scripts_that_exist(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    units = []
    for unit in SYSTEMD.iterdir():
        # as if installed with the checkout in /opt/fibod: here, this checkout;
        # a template is verified as one of its instances
        target = tmp_path / unit.name.replace("@.", "@worker-a.")
        target.write_text(unit.read_text().replace("/opt/fibod", str(ROOT)))
        units.append(str(target))
        for script in re.findall(r"/opt/fibod/(scripts/[\w./-]+)", unit.read_text()):
            assert (ROOT / script).is_file(), f"{unit.name} runs {script}, which is missing"
    result = run("systemd-analyze", "verify", *units)
    assert result.returncode == 0, result.stdout + result.stderr


def test_logrotate_accepts_the_rendered_config_and_covers_the_logs_nginx_and_redis_write(
    tmp_path: Path,
) -> None:
    # given: the stack's configs rendered into a fresh state dir
    settings = Settings(state_dir=str(tmp_path), redis_password="c" * 48)
    render_all(settings)
    conf = tmp_path / "conf" / "logrotate.conf"
    # then: logrotate parses it (debug mode changes nothing) ...
    result = run("logrotate", "-d", "--state", str(tmp_path / "state"), str(conf))
    assert result.returncode == 0, result.stdout + result.stderr
    # ... and every log file a rendered config names is rotated by it
    text = conf.read_text()
    rendered = "".join(p.read_text() for p in (tmp_path / "conf").glob("*.conf") if p != conf)
    written = set(re.findall(rf"{tmp_path}/log/[\w.-]+\.log", rendered))
    assert written, "no log file found in the rendered configs"
    assert {path for path in written if path not in text} == set()


def test_every_fibod_header_sent_is_in_the_api_description() -> None:
    # given every X-Fibod-* header the apps or nginx's configs set
    sources = [*(ROOT / "fibod").glob("*.py"), *(ROOT / "ops").glob("*.in")]
    sent = {
        name.lower()
        for path in sources
        for name in re.findall(r"X-Fibod-[A-Za-z]+", path.read_text())
    }
    assert {"x-fibod-progress", "x-fibod-wait", "x-fibod-cache"} <= sent, sent
    # then each is declared on some response of the OpenAPI document
    described = (ROOT / "fibod" / "openapi.yaml").read_text()
    declared = {name.lower() for name in re.findall(r"^\s+(X-Fibod-[A-Za-z]+):", described, re.M)}
    assert sent <= declared, f"sent but not described: {sorted(sent - declared)}"


def _log_format(conf: str, name: str) -> str:
    """The format string of nginx's `log_format name ...;`: its quoted pieces joined."""
    block = re.search(rf"log_format {name} (?:escape=\w+ )?((?:'[^']*'\s*)+);", conf)
    assert block, f"no log_format {name} in nginx.conf"
    return "".join(re.findall(r"'([^']*)'", block.group(1)))


def test_nginx_access_lines_name_the_submitted_task_in_both_formats(tmp_path: Path) -> None:
    # given: nginx.conf rendered for the one-machine stack
    render_all(dataclasses.replace(Settings(), state_dir=str(tmp_path)))
    conf = (tmp_path / "conf" / "nginx.conf").read_text()
    # then: the text line carries the upstream's Location (a submit's task status URL)
    assert "loc=$upstream_http_location" in _log_format(conf, "fibod")
    # and the JSON line, with every variable given a value, is one JSON object with it
    sample = {
        "$time_iso8601": "2026-11-30T07:00:00+00:00",
        "$status": "202",
        "$body_bytes_sent": "24",
        "$request_time": "0.002",
    }
    line = re.sub(r"\$\w+", lambda m: sample.get(m.group(0), "x"), _log_format(conf, "fibod_json"))
    record = json.loads(line)
    assert record["location"] == "x" and record["status"] == 202
