"""The options of ``asynctasklib run``, checked: `parse` reads the command line with
`_argparser`'s parser and gives the `Options`, after the checks that no option's value type
makes (the command, ``--backoff``, ``--retries``, ``--term-seq`` with ``--grace``,
``--load`` and ``--memfree``)."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from . import _argparser, _termseq
from ._errors import UsageError, show
from ._input_options import colsep_of, delimiter_of, max_args_of, pack_of, short_null
from ._joblog_options import check_joblog_reuse, halt_of
from ._jobslots import CPUS, JobSlots, cpu_count
from ._output_options import GROUP, UNGROUP, check_output
from ._remote_options import check_remote
from ._replace import RENAME_OPTIONS, Names, rename
from ._sources import SourceSpec, split_sources
from ._termseq import KillSequence

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
    parser = _argparser.parser()
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
    names = rename([getattr(ns, _argparser.dest(flags)) for flags, _ in RENAME_OPTIONS])
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
