"""The parser of ``asynctasklib run``'s command line (argparse): every option, in
``--help``'s order, with its help; the epilog; and the value types of the options added
here (``-j``, ``--load``, ``--timeout``, ``--delay``). `_options` checks what it parses."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable
from typing import Any, Final

from .. import __version__
from . import _termseq
from ._argtypes import number, size, value
from ._errors import PROG
from ._input_options import add_input_options
from ._joblog_options import add_halt_and_joblog
from ._jobslots import JobSlots, cpu_count
from ._output_options import add_output_options
from ._remote_options import add_remote_options
from ._replace import RENAME_OPTIONS
from ._unsupported import add_refusals


def _jobs(text: str) -> JobSlots:
    """-j as GNU parallel reads it (see `JobSlots`): counted against the CPUs later, by
    `_options.parse` or, with --scheduler, against the cluster's worker threads (`_start`)."""
    try:
        return JobSlots.parse(text)
    except ValueError as exc:
        if os.path.isfile(text):
            message = f"{text!r}: GNU parallel's -j FILE is not supported"
            raise argparse.ArgumentTypeError(message) from None
        raise argparse.ArgumentTypeError(str(exc)) from None


_LOAD = re.compile(r"(?P<sign>[+-])(?P<n>[0-9]+)|(?P<value>[0-9]+(?:\.[0-9]+)?)(?P<pct>%?)")
_LEAST_LOAD: Final = 0.01  # GNU parallel's floor: --load 0 is 0.01


def _max_load(text: str) -> float:
    """--load as GNU parallel reads it, -j's syntax: N (or N.N) processes; +N, -N: the CPU
    count plus or minus N; N%: N% of the CPU count; at least 0.01 (so 0 is 0.01)."""
    match = _LOAD.fullmatch(text)
    if match is None:
        if os.path.isfile(text):
            raise argparse.ArgumentTypeError(
                f"{text!r}: GNU parallel's --load FILE is not supported"
            )
        raise argparse.ArgumentTypeError(f"expected N, N.N, +N, -N or N%, got {text!r}")
    if match["sign"] is not None:
        n = int(match["n"])
        load = float(cpu_count() + n if match["sign"] == "+" else cpu_count() - n)
    elif match["pct"]:
        load = cpu_count() * float(match["value"]) / 100
    else:
        load = float(match["value"])
    return max(load, _LEAST_LOAD)


_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_WITH_UNITS = re.compile(r"(?:[0-9]+(?:\.[0-9]+)?[dhms])+", re.IGNORECASE)
_PERCENT = re.compile(r"([0-9]+(?:\.[0-9]+)?)%")


def _timeout(text: str) -> tuple[float | None, float | None]:
    """--timeout as GNU parallel reads it: seconds, with units (1h2m3s), or N%: (seconds,
    None) or (None, N / 100)."""
    pct = _PERCENT.fullmatch(text)
    if pct is not None:
        if float(pct[1]) == 0:
            raise argparse.ArgumentTypeError(f"must be > 0%, got {text!r}")
        return None, float(pct[1]) / 100
    return number(float, 0, strict=True)(_in_seconds(text)), None


def _in_seconds(text: str) -> str:
    """GNU parallel's time units (``1h2m3s``: d, h, m, s) as seconds; other text as it is."""
    if _WITH_UNITS.fullmatch(text):
        pieces = re.findall(r"([0-9.]+)([dhms])", text.lower())
        return str(sum(float(n) * _UNITS[unit] for n, unit in pieces))
    return text


def _delay(text: str) -> float:
    """--delay as GNU parallel reads it: seconds, with units (``0.5s``, ``1m``)."""
    seconds: float = number(float, 0, strict=False)(_in_seconds(text))
    return seconds


_EPILOG = """\
inputs, as GNU parallel takes them: each -a FILE, then each group after the command
(`::: a b c`, `:::: FILE...`; `:::+` and `::::+` link a group to the one before, --link
links them all), or standard input when none is given; one value a line (-d, -0: another
delimiter). With several sources there is one job per combination of their values (the
last varying fastest; linked ones go along together). --colsep cuts a value into several
arguments; -n N gives a job N values; -N N too, and repeats a word with {} for each value.
-X and -m give a job as many values as fit in a command line (-s N bytes, as GNU parallel
counts them), -X repeating the word with {} for each one; the job that reads the last
input spreads its values over the job slots (--xargs fills every line).

replacement strings, as GNU parallel's: {} the arguments, {.} without the extension, {/}
the basename, {//} the dirname, {/.} the basename without extension, {#} the job number,
{%} the job slot; {1} {2} {-1} the first, second, last argument, also as {1.} {1/} {1//}
{1/.}. A command without any gets the arguments appended. Perl expressions ({= =}) are
refused.

no input ever runs as code: as a plain argument it goes in as it is; in shell code (the
--shell script, or the -c script of sh, bash, dash, zsh, ksh... in the command) it is
quoted to be exactly one word wherever {} stands: bare, in "..." or in '...'. Where that
cannot be done (backquotes, $'...', ${...}, arithmetic, [[ ]], comments, here-documents)
the command is refused. A script that evaluates its data (eval, sh -c "$1") is its own.

a failed job's stderr is shown, then a line: which job failed and why, with its input.

GNU parallel's options that are not here (--pipe, -S, --plus, -i, --header, --csv,
--limit...) are refused by name; -P, --max-procs, --jl, --bar, --eta and -V are its names
of options here, and -q, --will-cite, --gnu, --silent change nothing.

backoff: POLICY[:BASE], POLICY one of exp (BASE, 2*BASE, 4*BASE... up to 30 s, with
jitter; the default, BASE 0.1), const (always BASE seconds), none (retry at once); a bare
number means const.

exit status, as GNU parallel's: 0 all jobs succeeded, 1-100 that many failed, 101 more
than 100 failed; with --halt, the status of the halt (--halt now,fail=1: the failed job's
own) or with N% the percentage that failed; 255 an input too long for a command line.
Ours: 2 bad usage, 130 interrupted (Ctrl-C; 143 for SIGTERM), 141 standard output was
closed.
Ctrl-C once: start no more jobs, let the running ones finish; twice: cancel them (their
processes get the --term-seq signals); three times: SIGKILL now.
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        usage="%(prog)s [OPTIONS] [--] COMMAND [ARGS...] [::: INPUT... | :::: FILE...]...",
        description="Run COMMAND once per input, in parallel, with retries, timeouts "
        "and a live progress view.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    seconds = number(float, 0, strict=False)
    p.add_argument(
        "-j", "--jobs", type=_jobs, metavar="N",
        help="jobs to run at once; 0: as many as the open files allow; +N, -N: the CPU "
        "count plus or minus N; N%%: N%% of the CPU count (default: the CPU count; with "
        "--scheduler, the cluster's worker threads count as its CPUs)",
    )  # fmt: skip
    add_input_options(p)
    p.add_argument(
        "--retries", type=number(int, 0, strict=False), metavar="N",
        help="run a failed or timed-out job at most N times in all, as GNU parallel counts "
        "(0: until it succeeds; default: once)",
    )  # fmt: skip
    p.add_argument(
        "--backoff", type=value, default="exp", metavar="POLICY[:BASE]",
        help="wait before each retry (default: exp:0.1); see below",
    )  # fmt: skip
    p.add_argument("--backoff-base", type=seconds, metavar="SECONDS", help="the BASE of --backoff")
    p.add_argument(
        "--timeout", type=_timeout, metavar="SECONDS",
        help="kill an attempt that runs longer than this; also 1h2m3s (d, h, m, s), or N%% "
        "of the median run time of the jobs that succeeded (default: no limit)",
    )  # fmt: skip
    _add_start_and_kill_options(p, seconds)
    p.add_argument(
        "-k", "--keep-order", action="store_true",
        help="print the jobs' output in input order (default: as they finish; --json "
        "events always come as they happen)",
    )  # fmt: skip
    add_halt_and_joblog(p)
    add_output_options(p)
    p.add_argument(
        "--json", action="store_true",
        help="print one JSON object per job lifecycle event on stdout instead of job output",
    )  # fmt: skip
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.add_argument(
        "--shell", action="store_true",
        help="run COMMAND through /bin/sh -c, the input shell-quoted (as a command line "
        "in one string runs, as GNU parallel runs it: 'gzip -c {} > {.}.gz')",
    )  # fmt: skip
    _rename_options(p)
    add_remote_options(p)
    p.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=None,
        help="show a live progress view on stderr (default: when stderr is a terminal)",
    )  # fmt: skip
    _parallel_names(p)
    add_refusals(p)
    p.add_argument("command", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return p


def _add_start_and_kill_options(p: argparse.ArgumentParser, seconds: Callable[[str], Any]) -> None:
    """When a job may start (--delay, --load, --memfree), and how one is killed."""
    p.add_argument(
        "--delay", type=_delay, default=0.0, metavar="SECONDS",
        help="wait this long between job starts; also 1m30s (d, h, m, s)",
    )  # fmt: skip
    p.add_argument(
        "--load", type=_max_load, metavar="MAX",
        help="start no job while MAX or more processes run or wait for a disk (GNU "
        "parallel's load: /proc/stat's count, not the load average); N%%: N%% of the CPU "
        "count; +N, -N: the CPU count plus or minus N",
    )  # fmt: skip
    p.add_argument(
        "--memfree", type=size, metavar="SIZE",
        help="start no job while less than SIZE of memory is available (MemAvailable); "
        "kill the youngest job when under half of SIZE (retried as --retries says); "
        "K M G T P: powers of 1024, k m g t p: of 1000",
    )  # fmt: skip
    p.add_argument(
        "--term-seq", "--termseq", type=value, metavar="SEQ",
        help="how to kill a job (timeout, cancel, --halt now): SIGNAL,MS,SIGNAL,MS... each "
        "signal sent to its process group, then a wait of at most MS milliseconds for it "
        f"to end, as GNU parallel (default: {_termseq.DEFAULT})",
    )  # fmt: skip
    p.add_argument(
        "--grace", type=seconds, metavar="SECONDS",
        help="kill a job with SIGTERM, then SIGKILL this long after (--term-seq "
        "TERM,SECONDS*1000,KILL,25)",
    )  # fmt: skip


def _parallel_names(p: argparse.ArgumentParser) -> None:
    """GNU parallel's other names of options that are here, and those that change nothing."""
    p.add_argument("-P", "--max-procs", dest="jobs", type=_jobs, help=argparse.SUPPRESS)
    p.add_argument("--jl", dest="joblog", type=value, help=argparse.SUPPRESS)
    p.add_argument(
        "--bar", "--eta", dest="progress", action="store_const", const=True,
        help="GNU parallel's names of --progress: the live view has a bar and the ETA",
    )  # fmt: skip
    p.add_argument(
        "-q", "--quote", action="store_true",
        help="as GNU parallel's -q: the command's words reach the program as they are (the "
        "default here; not with --shell)",
    )  # fmt: skip
    p.add_argument("--will-cite", "--gnu", "--silent", action="store_true", help=argparse.SUPPRESS)
    p.add_argument(
        "-V", "--version", action="version", version=f"asynctasklib {__version__}"
    )  # fmt: skip


def _rename_options(p: argparse.ArgumentParser) -> None:
    """-I and the like: GNU parallel's options that rename the replacement strings."""
    group = p.add_argument_group("replacement strings' names (GNU parallel's)")
    for flags, old in RENAME_OPTIONS:
        more = " ({N} follows a name in braces: -I {x} gives {1x})" if old == "{}" else ""
        group.add_argument(
            *flags, type=value, metavar="STR", dest=dest(flags),
            help=f"use STR instead of {old}{more}".replace("%", "%%"),
        )  # fmt: skip


def dest(flags: tuple[str, ...]) -> str:
    return flags[0].lstrip("-")
