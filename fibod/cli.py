"""The `fibod` command: print Fibonacci runs and numbers, use and inspect the service.

Errors print one line on stderr and exit with the error's exit code
(2 for bad input); a closed stdout pipe ends the command quietly. The
commands that talk to the service (get, status, tasks, cancel) are in
fibod/cli_tasks.py; shell completion scripts come from fibod/completion.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from fibod.cli_tasks import add_task_commands
from fibod.cliutil import CliParser, parse_count, write_all
from fibod.config import Settings, SettingsError, discover
from fibod.errors import FibodError
from fibod.kernel import get_kernel
from fibod.protocol import TEXT_FORMATS

if TYPE_CHECKING:  # imported lazily: redis costs ~150 ms of start-up `seq` need not pay
    from fibod.sequences import SequenceStore

EPILOG = """\
examples:
  fibod get 100000 -o fib.txt      compute on the service, download with a progress bar
  fibod tasks --state running      what the service is doing
  fibod seq 10                     0 1 1 2 3 5 8 13 21 34, computed here
  fibod completion bash > /etc/bash_completion.d/fibod

Settings: FIBOD_* variables over --env-file FILE, FIBOD_ENV_FILE, or, in a
checkout after `make up`, var/conf/fibod.env (found by itself). `fibod
COMMAND --help` gives each command's examples and limits.
"""


class VersionAction(argparse.Action):
    """Print the version and exit; read only when asked (importlib.metadata is slow)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_args: Any, **_kwargs: Any) -> None:
        import fibod

        print(f"fibod {fibod.__version__}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """Describe the command line."""
    parser = CliParser(
        prog="fibod",
        description="Compute and stream Fibonacci numbers.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=VersionAction)
    parser.add_argument(
        "--env-file", metavar="FILE", help="read settings from FILE (KEY=VALUE lines)"
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=CliParser)
    add_task_commands(sub)

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
    cache_sub = cache.add_subparsers(dest="cache_command", required=True, parser_class=CliParser)
    stats = cache_sub.add_parser("stats", help="show stored segments, numbers, bytes, counters")
    stats.add_argument("--json", action="store_true", help="print one JSON object")
    stats.set_defaults(handler=run_cache_stats)
    clear = cache_sub.add_parser(
        "clear", help="delete every stored segment and claim, and this host's text cache"
    )
    clear.add_argument("--reset-stats", action="store_true", help="also zero the counters")
    clear.set_defaults(handler=run_cache_clear)

    completion = sub.add_parser(
        "completion",
        help="print a shell completion script",
        description="Print the completion script of bash or zsh.",
        epilog="bash: fibod completion bash > ~/.local/share/bash-completion/completions/fibod\n"
        "zsh:  fibod completion zsh > ~/.zfunc/_fibod   (with ~/.zfunc on $fpath)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    completion.add_argument("shell", choices=["bash", "zsh"])
    completion.set_defaults(handler=run_completion)
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
    # this host's text cache too: a "cold" fetch after a clear is cold
    files = 0
    if os.path.isdir(settings.text_cache_dir):
        from fibod.textcache import TextCache

        files = TextCache(settings.text_cache_dir, settings.text_cache_bytes).clear()
    print(f"deleted {deleted} keys{extra}, {files} text cache files")


def run_completion(args: argparse.Namespace, _settings: Settings) -> None:
    """Print the completion script of a shell, made from this parser."""
    from fibod.completion import bash_script, zsh_script

    script = bash_script if args.shell == "bash" else zsh_script
    sys.stdout.write(script(build_parser()))


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
