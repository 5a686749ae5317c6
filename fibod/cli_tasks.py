"""The user's commands of `fibod`: get, status, tasks, cancel (on fibod.client).

`fibod get` submits, waits (long-poll, the task's progress on a
terminal), streams the result to a file or stdout with a progress bar,
checks its length, and with --resume continues a cut download with a
Range checked by the result's ETag. What a download needs to resume is
kept beside the file, in FILE.fibod, until the file is whole.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from fibod.cliutil import parse_count, write_all
from fibod.config import Settings
from fibod.errors import DownloadCutError, ExpiredError, InputError, NotFoundError
from fibod.progress import ProgressLine, human_bytes, human_seconds
from fibod.protocol import FORMATS

if TYPE_CHECKING:  # imported when a command runs: `fibod seq` need not pay ~50 ms for HTTP
    from fibod.client import FibodClient, ResultStream, TaskInfo

#: Task states, as `--state` takes them (fibod.taskmodel.TaskState's values).
STATES = ("queued", "running", "ready", "failed", "cancelled")

#: Largest number the command line takes for SN or A; the service applies its own limits.
_ANY = 10**12
#: Suffix of the file that records a download in progress.
SIDECAR_SUFFIX = ".fibod"

GET_EPILOG = """\
examples:
  fibod get 10                       0 1 1 2 3 5 8 13 21 34 (on stdout)
  fibod get 100000 -o fib.txt        1.05 GB to fib.txt, a progress bar on a terminal
  fibod get 5 --from 1000000 --format lines
  fibod get 100000 -o fib.txt --resume   continue a cut download of the same request

limits: SN up to FIBOD_MAX_SN (default 200,000: 4.2 GB of text), A up to
FIBOD_MAX_FROM (default 1,000,000), as the service is configured. A result
is kept FIBOD_TASK_TTL_S (default 24 h) after it is ready. Exit status: 0
done, 1 the task failed, expired or was cancelled, 2 bad input, 75 the
service is unavailable or the download was cut (--resume continues it).
"""

STATUS_EPILOG = """\
examples:
  fibod status 01a2283e6b67547d46f975a6d8924b56
  fibod status 01a2283e6b67547d46f975a6d8924b56 --json
"""

TASKS_EPILOG = """\
examples:
  fibod tasks                        the 20 newest tasks
  fibod tasks --state running --limit 100
  fibod tasks --cursor ID            the page after the one that ended at ID
"""

CANCEL_EPILOG = """\
examples:
  fibod cancel 01a2283e6b67547d46f975a6d8924b56

Workers stop after the segments they hold (the task's work list is
emptied); fetching the task then answers 410 with the status byte 0x04.
A ready or failed task cannot be cancelled.
"""


def add_task_commands(sub: argparse._SubParsersAction[Any]) -> None:
    """Add get, status, tasks and cancel to the command line."""
    url = argparse.ArgumentParser(add_help=False)
    url.add_argument(
        "--url",
        metavar="URL",
        help="the service (default: FIBOD_BASE_URL, http://127.0.0.1:8080 after make up)",
    )

    def command(name: str, summary: str, epilog: str, **kwargs: Any) -> argparse.ArgumentParser:
        return cast(
            argparse.ArgumentParser,
            sub.add_parser(
                name,
                parents=[url],
                help=summary,
                epilog=epilog,
                formatter_class=argparse.RawDescriptionHelpFormatter,
                **kwargs,
            ),
        )

    get = command(
        "get",
        "compute F(A)..F(A+SN-1) on the service and download it",
        GET_EPILOG,
        description="Submit a task, wait for it, and stream its result to FILE or stdout.",
    )
    get.add_argument("sn", metavar="SN", help="how many numbers")
    get.add_argument("-o", "--output", metavar="FILE", help="write to FILE (default: stdout)")
    get.add_argument("--from", dest="start", default="0", metavar="A", help="first index")
    get.add_argument(
        "--format",
        choices=list(FORMATS),
        default="text",
        help="text: a space after each number (default); lines: a newline; binary: "
        "the stored segments (docs/FORMAT.md)",
    )
    get.add_argument(
        "--resume", action="store_true", help="continue a cut download of FILE (needs -o)"
    )
    get.set_defaults(handler=run_get)

    status = command("status", "show a task: state, progress, ETA, size", STATUS_EPILOG)
    status.add_argument("task_id", metavar="ID")
    status.add_argument("--json", action="store_true", help="print the task as JSON")
    status.set_defaults(handler=run_status)

    tasks = command("tasks", "list tasks, newest first", TASKS_EPILOG)
    tasks.add_argument("--state", choices=STATES, help="only this state")
    tasks.add_argument("--limit", default="20", metavar="N", help="tasks per page (1..100)")
    tasks.add_argument("--cursor", metavar="ID", help="start after this task (a page's end)")
    tasks.set_defaults(handler=run_tasks)

    cancel = command("cancel", "cancel a queued or running task", CANCEL_EPILOG)
    cancel.add_argument("task_id", metavar="ID")
    cancel.set_defaults(handler=run_cancel)


def _client(args: argparse.Namespace, settings: Settings) -> FibodClient:
    from fibod.client import FibodClient

    return FibodClient(args.url or settings.base_url)


@dataclass
class Sidecar:
    """What FILE.fibod records of a download in progress."""

    url: str
    id: str
    sn: int
    start: int
    format: str
    etag: str
    length: int

    @staticmethod
    def path_of(output: Path) -> Path:
        """Return where the record of a download to `output` is kept."""
        return output.with_name(output.name + SIDECAR_SUFFIX)

    @classmethod
    def load(cls, output: Path) -> Sidecar | None:
        """Read the record; None if there is none."""
        try:
            return cls(**json.loads(cls.path_of(output).read_text()))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as exc:
            raise InputError(
                f"{cls.path_of(output)} is not a fibod download record: {exc}"
            ) from None

    def save(self, output: Path) -> None:
        """Write the record (before the first byte of the file)."""
        path = self.path_of(output)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(dataclasses.asdict(self)) + "\n")
        tmp.replace(path)


def run_get(args: argparse.Namespace, settings: Settings) -> None:
    """Submit, wait, download to FILE or stdout, check the length."""
    sn = parse_count(args.sn, "SN", _ANY)
    start = parse_count(args.start, "--from", _ANY)
    if args.resume and not args.output:
        raise InputError("--resume needs -o FILE: what went to stdout cannot be continued")
    line = ProgressLine(sys.stderr, sys.stderr.isatty())
    with _client(args, settings) as client:
        if args.output is None:
            _to_stdout(client, line, sn, start, args.format)
        else:
            _to_file(client, line, Path(args.output), sn, start, args.format, args.resume)


def _ready_task(
    client: FibodClient, line: ProgressLine, sn: int, start: int, task_id: str | None = None
) -> str:
    """Return a ready task of the request: `task_id` if it still lives, else a new one."""
    if task_id is not None:
        try:
            if client.status(task_id).state in ("queued", "running", "ready"):
                client.wait(task_id, on_progress=line.waiting)
                return task_id
        except (NotFoundError, ExpiredError):
            pass  # gone: the same request again gives the same bytes (the ETag checks it)
    task_id = client.submit(sn, start)
    client.wait(task_id, on_progress=line.waiting)
    return task_id


def _to_stdout(client: FibodClient, line: ProgressLine, sn: int, start: int, fmt: str) -> None:
    task_id = _ready_task(client, line, sn, start)
    stream = client.open_result(task_id, fmt)
    line.start(stream.length)
    try:
        write_all(sys.stdout.fileno(), _counted(stream, line))
    finally:
        stream.close()
        line.finish()


def _to_file(
    client: FibodClient,
    line: ProgressLine,
    output: Path,
    sn: int,
    start: int,
    fmt: str,
    resume: bool,
) -> None:
    record = Sidecar.load(output) if resume else None
    if resume and record is None and output.exists():
        raise InputError(
            f"{output} exists but no cut download of it is recorded "
            f"({Sidecar.path_of(output).name}): remove it or run without --resume"
        )
    if record is not None and (record.sn, record.start, record.format) != (sn, start, fmt):
        raise InputError(
            f"{Sidecar.path_of(output)} records SN {record.sn} --from {record.start} "
            f"--format {record.format}: ask for the same to resume it"
        )
    have = output.stat().st_size if record is not None and output.exists() else 0
    if record is not None and have > record.length:
        raise InputError(f"{output} is longer than the result it records: remove both")
    if record is not None and have == record.length:
        Sidecar.path_of(output).unlink()
        print(f"fibod: {output} is already whole ({human_bytes(have)})", file=sys.stderr)
        return
    task_id = _ready_task(client, line, sn, start, record.id if record else None)
    stream = client.open_result(task_id, fmt, offset=have, if_range=record.etag if record else None)
    if have and not stream.partial:
        print(f"fibod: the result of {output} changed: starting over", file=sys.stderr)
    url = client.base_url
    Sidecar(url, task_id, sn, start, fmt, stream.etag, stream.length).save(output)
    _write_file(output, stream, line)
    Sidecar.path_of(output).unlink()


def _write_file(output: Path, stream: ResultStream, line: ProgressLine) -> None:
    """Write the stream into output at its offset; cut it there; check the length."""
    mode = "r+b" if stream.offset and output.exists() else "wb"
    line.start(stream.length, stream.offset)
    try:
        with open(output, mode) as out:
            out.seek(stream.offset)
            out.truncate()
            _copy(stream, out, line)
    except DownloadCutError as exc:
        raise DownloadCutError(
            f"{exc}; run the same command with --resume to continue", exc.at
        ) from None
    finally:
        stream.close()
        line.finish()
    size = output.stat().st_size
    if size != stream.length:
        raise DownloadCutError(f"{output} has {size} bytes, the result {stream.length}", size)


def _copy(stream: ResultStream, out: IO[bytes], line: ProgressLine) -> None:
    for chunk in _counted(stream, line):
        out.write(chunk)


def _counted(stream: ResultStream, line: ProgressLine) -> Iterator[bytes]:
    for chunk in stream.chunks():
        yield chunk
        line.advance(len(chunk))


def run_status(args: argparse.Namespace, settings: Settings) -> None:
    """Print one task."""
    with _client(args, settings) as client:
        task = client.status(args.task_id)
    if args.json:
        print(json.dumps(dataclasses.asdict(task), sort_keys=True))
        return
    rows = [
        ("id", task.id),
        ("state", task.state),
        ("numbers", f"{task.sn} from F({task.start})"),
        ("size", f"{human_bytes(task.text_bytes)} of text ({task.text_bytes} bytes)"),
        ("progress", f"{task.progress:.1%}"),
        ("eta", human_seconds(task.eta_s)),
        ("created", _when(task.created)),
        ("started", _when(task.started)),
        ("finished", _when(task.finished)),
    ]
    if task.error:
        rows.append(("error", task.error))
    print("\n".join(f"{name:<9} {value}" for name, value in rows))


def run_tasks(args: argparse.Namespace, settings: Settings) -> None:
    """Print up to --limit tasks, newest first; say how to get the ones after.

    A page of a rare state may come short (the service looks at so many
    tasks per request): the pages after it are read until the limit.
    """
    limit = max(parse_count(args.limit, "--limit", 100), 1)
    shown, cursor = 0, args.cursor
    with _client(args, settings) as client:
        while True:
            page = client.tasks(args.state, limit - shown, cursor)
            for task in page.tasks:
                print(_task_row(task))
            shown, cursor = shown + len(page.tasks), page.next_cursor
            if cursor is None or shown >= limit:
                break
    if cursor is not None:
        print(f"more: fibod tasks --cursor {cursor}", file=sys.stderr)


def run_cancel(args: argparse.Namespace, settings: Settings) -> None:
    """Cancel a task and say so."""
    with _client(args, settings) as client:
        task = client.cancel(args.task_id)
    print(f"{task.id} {task.state}")


def _task_row(task: TaskInfo) -> str:
    return (
        f"{task.id}  {task.state:<9}  sn={task.sn:<7} from={task.start:<7} "
        f"{task.progress:6.1%}  {human_bytes(task.text_bytes):>10}  {_when(task.created)}"
    )


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ms / 1000))
