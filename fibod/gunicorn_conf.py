"""gunicorn settings every fibod app shares: `gunicorn -c python:fibod.gunicorn_conf`.

The command line in each supervisor program keeps what differs per app
(bind, workers, threads, timeouts); this module adds the hooks of the
metrics files (fibod/metrics.py) and logs gunicorn's own lines in
fibod's format (FIBOD_LOG_FORMAT), and bounds every send: gthread
sockets otherwise block without a timeout, so a reader that stopped would
hold its thread for good.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
from typing import Any

from gunicorn.glogging import Logger

from fibod import metrics
from fibod.config import Settings, SettingsError
from fibod.logs import gunicorn_logconfig

# bad settings: the app refuses them itself, with one line, when it loads
#: Seconds a send may wait for the peer to take a byte (FIBOD_SEND_TIMEOUT_S).
send_timeout_s = Settings.send_timeout_s
with contextlib.suppress(SettingsError):
    _settings = Settings.from_env()
    logconfig_dict = gunicorn_logconfig(_settings)
    send_timeout_s = _settings.send_timeout_s


class QuietAccessLogger(Logger):
    """gunicorn's logger, skipping the access line's work when nobody reads it.

    nginx logs every request with its id; gunicorn.access is at WARNING
    (fibod/logs.py), yet gunicorn still formats each line's atoms before
    the level drops it: about 6% of a submit process's CPU.
    """

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        """Log the access line only if gunicorn.access takes INFO."""
        if self.access_log.isEnabledFor(logging.INFO):
            super().access(resp, req, environ, request_time)


logger_class = QuietAccessLogger

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


def post_worker_init(worker: Any) -> None:
    """Give each accepted socket a send timeout (SO_SNDTIMEO is inherited).

    A send that waits send_timeout_s for room fails, and gunicorn closes
    the connection and frees the thread (a sendall may wait a few times).
    Behind nginx, nginx cuts its stalled client first, which ends the stream.
    """
    value = struct.pack("ll", send_timeout_s, 0)
    for listener in worker.sockets:
        listener.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)
