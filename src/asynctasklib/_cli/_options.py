"""The options of ``asynctasklib run``: argparse, their checks, and ``--backoff``."""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from .. import __version__
from ..task import ExponentialBackoff
from ._errors import PROG, UsageError, show
from ._replace import RENAME_OPTIONS, Names, rename
from ._template import PARALLEL_SEPARATORS, Template

DEFAULT_GRACE: Final = 2.0
FOREVER: Final = sys.maxsize  # --retries 0: GNU parallel's "n=0 means infinite"


@dataclass(frozen=True, slots=True)
class Options:
    """What the command line asks for, checked."""

    command: list[str]
    inputs: list[str] | None  # from ::: (None: read --arg-file or stdin)
    arg_file: str | None
    jobs: int  # 0: as many as the open-file limit allows (-j 0)
    retries: int  # retries after the first attempt (--retries N: N - 1)
    backoff: float | Callable[[int], float]
    timeout: float | None
    delay: float
    grace: float
    halt_on_error: bool
    keep_order: bool
    joblog: str | None
    json: bool
    dry_run: bool
    shell: bool
    progress: bool | None
    names: Names  # the replacement strings' names (-I and the like)


def _number(kind: Callable[[str], Any], low: float, strict: bool) -> Callable[[str], Any]:
    bound = f"> {low:g}" if strict else f">= {low:g}"
    noun = "an integer" if kind is int else "a number of seconds"

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text!r}")
        return value

    return parse


def cpu_count() -> int:
    """The CPUs as GNU parallel counts them: the CPU threads this process may run on (it
    takes the fewer of the threads and of ``Cpus_allowed``, the affinity mask). Not
    ``os.process_cpu_count()``: the same on Linux, but it follows PYTHON_CPU_COUNT."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1  # pragma: no cover - no affinity mask (macOS)


_JOBS = re.compile(r"(?P<sign>[+-]?)(?P<n>[0-9]+)|(?P<pct>[0-9]+(?:\.[0-9]+)?)%")


def _jobs(text: str) -> int:
    """-j as GNU parallel reads it: N; 0 (as many as possible, 0 here); +N and -N (the CPU
    count plus or minus N); N% (of the CPU count, rounded up); at least 1."""
    match = _JOBS.fullmatch(text)
    if match is None:
        if os.path.isfile(text):
            raise argparse.ArgumentTypeError(f"{text!r}: GNU parallel's -j FILE is not supported")
        raise argparse.ArgumentTypeError(f"expected N, +N, -N or N%, got {text!r}")
    if match["pct"] is not None:
        return max(1, math.ceil(cpu_count() * float(match["pct"]) / 100))
    n = int(match["n"])
    if match["sign"] == "+":
        return cpu_count() + n
    if match["sign"] == "-":
        # GNU parallel documents this floor of 1; 20221122 says "Cannot run any jobs" instead.
        return max(1, cpu_count() - n)
    return n


def _value(text: str) -> str:
    """An option's text value: not the ::: that starts the inputs (the value is missing)."""
    if text == ":::" or text in PARALLEL_SEPARATORS:
        raise argparse.ArgumentTypeError(f"expected a value, got {text!r}")
    return text


_EPILOG = """\
inputs: one job per input, taken from `::: a b c` after the command, from --arg-file, or
from standard input (one per line). GNU parallel's :::: and :::+ are not supported.

replacement strings, as GNU parallel's: {} the input, {.} without its extension, {/} its
basename, {//} its dirname, {/.} its basename without extension, {#} the job number, {%}
the job slot; {1} {2} {-1} the first, second, last argument, also as {1.} {1/} {1//} {1/.}.
A command without any gets the input appended. Perl expressions ({= =}) are refused.

no input ever runs as code: as a plain argument it goes in as it is; in shell code (the
--shell script, or the -c script of sh, bash, dash, zsh, ksh... in the command) it is
quoted to be exactly one word wherever {} stands: bare, in "..." or in '...'. Where that
cannot be done (backquotes, $'...', ${...}, arithmetic, [[ ]], comments, here-documents)
the command is refused. A script that evaluates its data (eval, sh -c "$1") is its own.

a failed job's stderr is shown, then a line: which job failed and why, with its input.

backoff: POLICY[:BASE], POLICY one of exp (BASE, 2*BASE, 4*BASE... up to 30 s, with
jitter; the default, BASE 0.1), const (always BASE seconds), none (retry at once); a bare
number means const.

exit status: 0 all jobs succeeded, 1 some failed (or were canceled by --halt-on-error),
2 bad usage, 130 interrupted (Ctrl-C; 143 for SIGTERM), 141 standard output was closed.
Ctrl-C once: start no more jobs, let the running ones finish; twice: cancel them (their
process groups get SIGTERM, then SIGKILL after --grace seconds); three times: SIGKILL now.
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        usage="%(prog)s [OPTIONS] [--] COMMAND [ARGS...] [::: INPUT...]",
        description="Run COMMAND once per input, in parallel, with retries, timeouts "
        "and a live progress view.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    seconds = _number(float, 0, strict=False)
    p.add_argument(
        "-j", "--jobs", type=_jobs, metavar="N",
        help="jobs to run at once; 0: as many as the open files allow; +N, -N: the CPU "
        "count plus or minus N; N%%: N%% of the CPU count (default: the CPU count)",
    )  # fmt: skip
    p.add_argument(
        "-a",
        "--arg-file",
        type=_value,
        metavar="FILE",
        help="read inputs from FILE, one per line ('-': stdin)",
    )
    p.add_argument(
        "--retries", type=_number(int, 0, strict=False), metavar="N",
        help="run a failed or timed-out job at most N times in all, as GNU parallel counts "
        "(0: until it succeeds; default: once)",
    )  # fmt: skip
    p.add_argument(
        "--backoff", type=_value, default="exp", metavar="POLICY[:BASE]",
        help="wait before each retry (default: exp:0.1); see below",
    )  # fmt: skip
    p.add_argument("--backoff-base", type=seconds, metavar="SECONDS", help="the BASE of --backoff")
    p.add_argument(
        "--timeout", type=_number(float, 0, strict=True), metavar="SECONDS",
        help="kill an attempt that runs longer than this (default: no limit)",
    )  # fmt: skip
    p.add_argument(
        "--delay", type=seconds, default=0.0, metavar="SECONDS",
        help="wait this long between job starts",
    )  # fmt: skip
    p.add_argument(
        "--grace", type=seconds, default=DEFAULT_GRACE, metavar="SECONDS",
        help=f"SIGKILL a job's process group this long after SIGTERM (default: {DEFAULT_GRACE:g})",
    )  # fmt: skip
    p.add_argument(
        "--halt-on-error", action="store_true",
        help="the first job that fails cancels the others and stops the run",
    )  # fmt: skip
    p.add_argument(
        "-k", "--keep-order", action="store_true",
        help="print the jobs' output in input order (default: as they finish; --json "
        "events always come as they happen)",
    )  # fmt: skip
    p.add_argument(
        "--joblog", type=_value, metavar="FILE",
        help="write one tab-separated row per job: seq, input, exit code, attempts, "
        "start time, duration, signal",
    )  # fmt: skip
    p.add_argument(
        "--json", action="store_true",
        help="print one JSON object per job lifecycle event on stdout instead of job output",
    )  # fmt: skip
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.add_argument(
        "--shell", action="store_true",
        help="run COMMAND through /bin/sh -c, the input shell-quoted",
    )  # fmt: skip
    _rename_options(p)
    p.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=None,
        help="show a live progress view on stderr (default: when stderr is a terminal)",
    )  # fmt: skip
    p.add_argument("--version", action="version", version=f"asynctasklib {__version__}")
    p.add_argument("command", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return p


def _rename_options(p: argparse.ArgumentParser) -> None:
    """-I and the like: GNU parallel's options that rename the replacement strings."""
    group = p.add_argument_group("replacement strings' names (GNU parallel's)")
    for flags, old in RENAME_OPTIONS:
        more = " ({N} follows a name in braces: -I {x} gives {1x})" if old == "{}" else ""
        group.add_argument(
            *flags, type=_value, metavar="STR", dest=_dest(flags),
            help=f"use STR instead of {old}{more}".replace("%", "%%"),
        )  # fmt: skip


def _dest(flags: tuple[str, ...]) -> str:
    return flags[0].lstrip("-")


def _parse_backoff(spec: str, base: float | None) -> float | Callable[[int], float]:
    policy, _, value = spec.partition(":")
    policy = policy.strip().lower()
    if value:
        try:
            parsed = float(value)
        except ValueError:
            raise UsageError(f"--backoff: {value!r} is not a number of seconds") from None
        if not parsed >= 0 or parsed == float("inf"):
            raise UsageError(f"--backoff: the base must be >= 0, got {value!r}")
        base = parsed if base is None else base
    if policy in ("exp", "exponential"):
        return ExponentialBackoff(initial=0.1 if base is None else base)
    if policy in ("const", "constant", "fixed"):
        return 1.0 if base is None else base
    if policy in ("none", "0"):
        return 0.0
    try:
        number = float(policy)
    except ValueError:
        raise UsageError(
            f"--backoff: unknown policy {policy!r} (expected exp, const or none)"
        ) from None
    if not number >= 0 or number == float("inf"):
        raise UsageError(f"--backoff: must be >= 0, got {spec!r}")
    return number if base is None else base


def _split_inputs(words: list[str]) -> tuple[list[str], list[str] | None]:
    """The command, and the inputs after ``:::`` (None: there are none)."""
    if words and words[0] == "--":
        del words[0]
    inputs: list[str] | None = None
    for word in words:
        if word in PARALLEL_SEPARATORS:
            raise UsageError(
                f"GNU parallel's {word} is not supported (inputs: ::: a b c, --arg-file FILE "
                "or standard input)"
            )
    if ":::" in words:
        cut = words.index(":::")
        words, inputs = words[:cut], words[cut + 1 :]
        if ":::" in inputs:
            raise UsageError("only one ::: group of inputs is supported")
    return words, inputs


def _retries(attempts: int | None) -> int:
    """``--retries N``: the retries after the first attempt. GNU parallel's N is the
    attempts in all (``--retries 3`` runs a failing job 3 times), and 0 is no limit."""
    if attempts is None:
        return 0
    return FOREVER if attempts == 0 else attempts - 1


def parse(argv: list[str]) -> Options:
    """The options in ``argv``: `UsageError` (or argparse's SystemExit) if they are bad."""
    ns = _parser().parse_args(argv)
    words, inputs = _split_inputs(list(ns.command))
    if not words:
        raise UsageError("no command given (usage: asynctasklib run [OPTIONS] -- COMMAND ...)")
    if inputs is not None and ns.arg_file is not None:
        raise UsageError("give inputs either after ::: or with --arg-file, not both")
    names = rename([getattr(ns, _dest(flags)) for flags, _ in RENAME_OPTIONS])
    # A replacement string or quoting refused: now, not per job.
    template = Template(words, ns.shell, names)
    if not ns.shell and not template.program_varies and template.executable is None:
        hint = " (a command line in one string needs --shell)" if " " in words[0] else ""
        raise UsageError(f"command not found: {show(words[0])}{hint}")
    return Options(
        command=words,
        inputs=inputs,
        arg_file=ns.arg_file,
        jobs=ns.jobs if ns.jobs is not None else cpu_count(),
        retries=_retries(ns.retries),
        backoff=_parse_backoff(ns.backoff, ns.backoff_base),
        timeout=ns.timeout,
        delay=ns.delay,
        grace=ns.grace,
        halt_on_error=ns.halt_on_error,
        keep_order=ns.keep_order,
        joblog=ns.joblog,
        json=ns.json,
        dry_run=ns.dry_run,
        shell=ns.shell,
        progress=ns.progress,
        names=names,
    )
