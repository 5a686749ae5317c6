"""gunicorn settings every fibod app shares: `gunicorn -c python:fibod.gunicorn_conf`.

The command line in each supervisor program keeps what differs per app
(bind, workers, threads, timeouts); this module adds the hooks of the
metrics files (fibod/metrics.py) and logs gunicorn's own lines in
fibod's format (FIBOD_LOG_FORMAT).
"""

from __future__ import annotations

import contextlib
from typing import Any

from fibod import metrics
from fibod.config import Settings, SettingsError
from fibod.logs import gunicorn_logconfig

# bad settings: the app refuses them itself, with one line, when it loads
with contextlib.suppress(SettingsError):
    logconfig_dict = gunicorn_logconfig(Settings.from_env())

# No control socket (gunicorn 25.1+): supervisor manages the processes, and
# its default path, $HOME/.gunicorn/gunicorn.ctl, is root's home (supervisor
# switches the user, not HOME) and one path for all four apps.
control_socket_disable = True


def on_starting(_server: Any) -> None:
    """Start the program's metrics from zero: empty its folder before any worker forks."""
    metrics.reset_multiproc_dir()


def child_exit(_server: Any, worker: Any) -> None:
    """Drop a dead process's live gauges (requests in flight)."""
    metrics.mark_process_dead(worker.pid)
