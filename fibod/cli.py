"""The `fibod` command: print Fibonacci runs and numbers, run services.

Errors print one line on stderr and exit with the error's exit code
(2 for bad input); a closed stdout pipe ends the command quietly.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from fibod.config import Settings, SettingsError, discover
from fibod.errors import FibodError, InputError
from fibod.kernel import get_kernel
from fibod.protocol import TEXT_FORMATS

if TYPE_CHECKING:  # imported lazily: redis costs ~150 ms of start-up `seq` need not pay
    from fibod.sequences import SequenceStore

_DIGITS = re.compile(r"[0-9]+")


def parse_count(text: str, name: str, maximum: int) -> int:
    """Parse a non-negative ASCII decimal integer no larger than `maximum`."""
    stripped = text.strip()
    if not _DIGITS.fullmatch(stripped):
        raise InputError(f"{name} must be a non-negative integer, got {text!r}")
    if len(stripped) > 30 or int(stripped) > maximum:
        raise InputError(f"{name} must be at most {maximum}, got {stripped}")
    return int(stripped)


def write_all(fd: int, blocks: Iterable[memoryview | bytes]) -> None:
    """Write every block to fd, retrying short writes."""
    for block in blocks:
        view = memoryview(block)
        while view:
            written = os.write(fd, view)
            view = view[written:]


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise InputError(message)


def build_parser() -> argparse.ArgumentParser:
    """Describe the command line."""
    parser = _Parser(
        prog="fibod",
        description="Compute and stream Fibonacci numbers.",
        epilog="Settings: FIBOD_* variables over --env-file FILE, FIBOD_ENV_FILE, or, in a "
        "checkout after `make up`, var/conf/fibod.env (found by itself).",
    )
    parser.add_argument(
        "--env-file", metavar="FILE", help="read settings from FILE (KEY=VALUE lines)"
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    seq = sub.add_parser("seq", help="print F(A)..F(A+SN-1), F(0) first by default")
    seq.add_argument("sn", metavar="SN", help="how many numbers to print")
    seq.add_argument("--from", dest="start", default="0", metavar="A", help="first index")
    seq.add_argument(
        "--format",
        choices=list(TEXT_FORMATS),
        default="text",
        help="text: a space after each number (default); lines: a newline",
    )
    seq.set_defaults(handler=run_seq)

    fib = sub.add_parser("fib", help="print F(N)")
    fib.add_argument("n", metavar="N")
    fib.set_defaults(handler=run_fib)

    cache = sub.add_parser("cache", help="inspect or empty the sequence store")
    cache_sub = cache.add_subparsers(dest="cache_command", required=True, parser_class=_Parser)
    stats = cache_sub.add_parser("stats", help="show stored segments, numbers, bytes, counters")
    stats.add_argument("--json", action="store_true", help="print one JSON object")
    stats.set_defaults(handler=run_cache_stats)
    clear = cache_sub.add_parser("clear", help="delete every stored segment and claim")
    clear.add_argument("--reset-stats", action="store_true", help="also zero the counters")
    clear.set_defaults(handler=run_cache_clear)
    return parser


def run_seq(args: argparse.Namespace, settings: Settings) -> None:
    """Stream the run as text to stdout without holding it in memory."""
    sn = parse_count(args.sn, "SN", settings.max_sn)
    start = parse_count(args.start, "--from", settings.max_fib_n)
    blocks = get_kernel().iter_run_text(
        start, sn, TEXT_FORMATS[args.format], settings.write_chunk_bytes
    )
    write_all(sys.stdout.fileno(), blocks)


def run_fib(args: argparse.Namespace, settings: Settings) -> None:
    """Print one Fibonacci number in decimal."""
    n = parse_count(args.n, "N", settings.max_fib_n)
    import gmpy2  # imported here: `seq` need not pay for it at start-up

    digits = gmpy2.mpz(get_kernel().fib(n)).digits(10)
    write_all(sys.stdout.fileno(), [digits.encode("ascii"), b"\n"])


def _sequence_store(settings: Settings) -> SequenceStore:
    """Open the sequence store as its admin user (scans and deletes need it)."""
    from fibod.sequences import SequenceStore

    return SequenceStore.from_settings(settings, admin=bool(settings.redis_admin_password))


def run_cache_stats(args: argparse.Namespace, settings: Settings) -> None:
    """Print what the sequence store holds and the worker counters."""
    stats = _sequence_store(settings).stats()
    if args.json:
        print(json.dumps(dataclasses.asdict(stats), sort_keys=True))
        return
    rows: list[tuple[str, object]] = [
        ("segment_bytes", stats.segment_bytes),
        ("segments", stats.segments),
        ("numbers", stats.numbers),
        ("bytes", stats.bytes),
        ("prefix_sn", stats.prefix_sn),
        ("claims", stats.claims),
        ("other_layout_segments", stats.other_layouts),
        *sorted(stats.counters.items()),
    ]
    rows += [
        (f"node {node.address}", f"{node.keys} keys, {node.used_memory} bytes used")
        for node in stats.nodes
    ]
    width = max(len(name) for name, _ in rows)
    print("\n".join(f"{name:<{width}}  {value}" for name, value in rows))


def run_cache_clear(args: argparse.Namespace, settings: Settings) -> None:
    """Delete every segment and claim; optionally zero the counters."""
    from fibod import agreement
    from fibod.redis_client import connect_task_store

    deleted = _sequence_store(settings).clear(reset_counters=args.reset_stats)
    # with no segment left, the next process to start may record another layout
    agreement.forget_layout(connect_task_store(settings, admin=bool(settings.redis_admin_password)))
    extra = " and reset the counters" if args.reset_stats else ""
    print(f"deleted {deleted} keys{extra}")


Handler = Callable[[argparse.Namespace, Settings], None]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return its exit status."""
    try:
        args = build_parser().parse_args(argv)
        handler: Handler = args.handler
        handler(args, discover(explicit=args.env_file))
    except BrokenPipeError:
        # the reader went away (`| head`): stop quietly, and keep Python's
        # exit-time flush of stdout from complaining about the same pipe
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except FibodError as exc:
        print(f"fibod: {exc}", file=sys.stderr)
        return exc.exit_code
    except SettingsError as exc:
        print(f"fibod: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
