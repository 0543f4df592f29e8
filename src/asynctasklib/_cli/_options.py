"""The options of ``asynctasklib run``: argparse, their checks, and ``--backoff``."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from .. import __version__
from . import _termseq
from ._argtypes import number, size, value
from ._errors import PROG, UsageError, show
from ._input_options import (
    add_input_options,
    colsep_of,
    delimiter_of,
    max_args_of,
    pack_of,
    short_null,
)
from ._joblog_options import add_halt_and_joblog, check_joblog_reuse, halt_of
from ._jobslots import CPUS, JobSlots
from ._output_options import GROUP, UNGROUP, add_output_options, check_output
from ._remote_options import add_remote_options, check_remote
from ._replace import RENAME_OPTIONS, Names, rename
from ._sources import SourceSpec, split_sources
from ._termseq import KillSequence
from ._unsupported import add_refusals

if TYPE_CHECKING:  # (the modules of the checks, imported by them: not for --help)
    from ._halt import HaltSpec
    from ._xargs import Pack

FOREVER: Final = sys.maxsize  # --retries 0: GNU parallel's "n=0 means infinite"


@dataclass(frozen=True, slots=True)
class Options:
    """What the command line asks for, checked."""

    command: list[str]
    sources: tuple[SourceSpec, ...]  # in GNU parallel's order (standard input if none)
    delimiter: bytes  # what ends each record of a file or stream (-d, -0; a newline)
    colsep: re.Pattern[str] | None  # --colsep: a record cut into arguments
    max_args: int | None  # -n/-N: records per job (None: one, as given; or as `pack` says)
    context_replace: bool  # -N, -X (GNU parallel repeats a word with {} for each argument)
    pack: Pack | None  # -X, -m, --xargs: as many records a job as fit in a line
    jobs: int  # the job slots; 0: as many as the open-file limit allows (-j 0)
    # -j as given: `jobs` is it against this machine's CPUs, but with --scheduler, where
    # `_start` counts it again against the cluster's worker threads once connected
    slots: JobSlots
    retries: int  # retries after the first attempt (--retries N: N - 1)
    backoff: float | Callable[[int], float]
    timeout: float | None
    timeout_pct: float | None  # --timeout N%: N / 100 (see `_timeout`)
    delay: float
    term_seq: KillSequence  # how a job's processes are killed (--term-seq, --grace)
    halt: HaltSpec | None  # --halt (--halt-on-error: now,fail=1)
    keep_order: bool
    output: str  # GROUP (the default), LINE (--line-buffer) or UNGROUP (-u)
    tag: str | None  # what tags each line (--tagstring; "{}" for --tag); None: no tag
    results: str | None  # --results DIR
    files: bool
    joblog: str | None  # ("-": standard output)
    joblog_append: bool  # --joblog +FILE: append to FILE, no header
    resume: bool
    resume_failed: bool
    retry_failed: bool  # the inputs are the failed jobs' command lines (see `_start`)
    json: bool
    dry_run: bool
    shell: bool
    progress: bool | None
    names: Names  # the replacement strings' names (-I and the like)
    scheduler: str | None  # --executor dask: the Dask scheduler's address (None: run here)
    # --load: start no job while this many processes run (see `_load`); None: no limit
    max_load: float | None = None
    memfree: int | None = None  # --memfree: bytes of memory available to start a job
    # --link: every source linked, the shorter ones wrapped around to the longest's end
    link: bool = False


def cpu_count() -> int:
    """The CPUs as GNU parallel counts them: the CPU threads this process may run on (it
    takes the fewer of the threads and of ``Cpus_allowed``, the affinity mask). Not
    ``os.process_cpu_count()``: the same on Linux, but it follows PYTHON_CPU_COUNT."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1  # pragma: no cover - no affinity mask (macOS)


def _jobs(text: str) -> JobSlots:
    """-j as GNU parallel reads it (see `JobSlots`): counted against the CPUs later, here
    (`parse`) or, with --scheduler, against the cluster's worker threads (`_start`)."""
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


def _parser() -> argparse.ArgumentParser:
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
            *flags, type=value, metavar="STR", dest=_dest(flags),
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
        from ..task import ExponentialBackoff  # (imported here: --help imports no asyncio)

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


def _term_seq(ns: argparse.Namespace) -> KillSequence:
    if ns.grace is None:
        return _termseq.parse(ns.term_seq or "")
    if ns.term_seq is not None:
        raise UsageError("give --term-seq or --grace, not both (--grace S is TERM,S*1000,KILL,25)")
    return _termseq.grace(ns.grace)


def _retries(attempts: int | None) -> int:
    """``--retries N``: the retries after the first attempt. GNU parallel's N is the
    attempts in all (``--retries 3`` runs a failing job 3 times), and 0 is no limit."""
    if attempts is None:
        return 0
    return FOREVER if attempts == 0 else attempts - 1


def _a_command_line(words: list[str], quote: bool) -> bool:
    """A command whose first word has white space in it and is no program (``'gzip -c {} >
    {.}.gz'``) is a command line, run by ``/bin/sh -c`` as with ``--shell``: GNU parallel
    runs every command line so. Not with ``-q``, whose words are never shell code."""
    if quote or not words or not any(c.isspace() for c in words[0]):
        return False
    import shutil  # (not for --help)

    return shutil.which(words[0]) is None


def _check_command(words: list[str], shell: bool, names: Names, each: bool, here: bool) -> None:
    """``each``: -N's context replace; ``here``: the program runs on this machine (else on
    a worker, which looks it up)."""
    if not words:
        raise UsageError("no command given (usage: asynctasklib run [OPTIONS] -- COMMAND ...)")
    from ._template import Template  # (not for --help)

    # A replacement string or quoting refused: now, not per job.
    template = Template(words, shell, names, each)
    if here and not shell and not template.program_varies and template.executable is None:
        one_string = " " in words[0]
        hint = " (a command line in one string runs in a shell, not with -q)" if one_string else ""
        raise UsageError(f"command not found: {show(words[0])}{hint}")


def _check_load(ns: argparse.Namespace, scheduler: str | None) -> tuple[float | None, int | None]:
    """--load and --memfree (``--memfree 0``: no limit, as GNU parallel): what they measure
    is read once now, so that a machine without it is told at once."""
    memfree = ns.memfree or None
    given = [name for name, v in (("--load", ns.load), ("--memfree", memfree)) if v is not None]
    if not given:
        return None, None
    if scheduler is not None:
        verb = "measures" if len(given) == 1 else "measure"
        raise UsageError(
            f"{' and '.join(given)} {verb} this machine, not the Dask workers: not with --scheduler"
        )
    from . import _load  # (not for --help)

    for name, reader, what in (
        ("--load", _load.running_processes, "/proc/stat"),
        ("--memfree", _load.available_memory, "/proc/meminfo"),
    ):
        if name in given:
            try:
                reader()
            except (OSError, ValueError) as exc:
                raise UsageError(f"{name}: cannot read {what}: {exc}") from None
    return ns.load, memfree


def parse(argv: list[str]) -> Options:
    """The options in ``argv``: `UsageError` (or argparse's SystemExit) if they are bad."""
    parser = _parser()
    ns = parser.parse_args(short_null(argv, parser))
    words = list(ns.command)
    if words and words[0] == "--":
        del words[0]
    halt = halt_of(ns)
    joblog_append = ns.joblog is not None and ns.joblog.startswith("+")
    if joblog_append:
        ns.joblog = ns.joblog[1:]
    check_joblog_reuse(ns)
    if ns.quote and ns.shell:
        raise UsageError("-q/--quote runs the command without a shell: give it or --shell")
    names = rename([getattr(ns, _dest(flags)) for flags, _ in RENAME_OPTIONS])
    scheduler = check_remote(ns)
    slots: JobSlots = CPUS if ns.jobs is None else ns.jobs
    sources: tuple[SourceSpec, ...]
    shell = ns.shell
    if ns.retry_failed:  # the joblog's command lines are the jobs (see `_start`): no others
        words, sources = [], (SourceSpec("--retry-failed", values=()),)  # (see `_start`)
    else:
        words, sources = split_sources(words, ns.arg_file, ns.link)
        shell = shell or _a_command_line(words, ns.quote)
        each = ns.max_replace_args is not None or ns.pack == "X"
        _check_command(words, shell, names, each, here=scheduler is None)
    tag = check_output(ns)
    max_load, memfree = _check_load(ns, scheduler)
    max_args = max_args_of(ns)
    pack = pack_of(ns, max_args)
    return Options(
        command=words,
        sources=sources,
        delimiter=delimiter_of(ns),
        colsep=colsep_of(ns.colsep),
        max_args=max_args if pack is None else None,
        context_replace=ns.max_replace_args is not None or ns.pack == "X",
        pack=pack,
        jobs=slots.of(cpu_count()),
        slots=slots,
        retries=_retries(ns.retries),
        backoff=_parse_backoff(ns.backoff, ns.backoff_base),
        timeout=None if ns.timeout is None else ns.timeout[0],
        timeout_pct=None if ns.timeout is None else ns.timeout[1],
        delay=ns.delay,
        term_seq=_term_seq(ns),
        halt=halt,
        keep_order=ns.keep_order,
        output=ns.output or GROUP,
        tag=tag,
        results=ns.results,
        files=ns.files,
        joblog=ns.joblog,
        joblog_append=joblog_append,
        resume=ns.resume,
        resume_failed=ns.resume_failed,
        retry_failed=ns.retry_failed,
        json=ns.json,
        dry_run=ns.dry_run,
        shell=shell,
        progress=False if ns.output == UNGROUP else ns.progress,
        names=names,
        scheduler=scheduler,
        max_load=max_load,
        memfree=memfree,
        link=ns.link,
    )
