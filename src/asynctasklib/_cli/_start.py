"""``asynctasklib run`` once its options are parsed: the earlier run's ``--joblog``
(``--resume`` and the like), the inputs, ``--dry-run``, the joblog, and the run itself on
an event loop. Imported only then, by `main`, so that ``--help``, ``--version`` and a usage
error import neither asyncio nor the pool."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import resource
import sys
from typing import IO, TYPE_CHECKING, Final

from . import _joblog
from ._errors import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    PROG,
    InputError,
    UsageError,
)
from ._inputs import OpenSources, open_sources
from ._job import Job
from ._options import Options
from ._output import tagged
from ._reap import become_subreaper
from ._results import Tagger, prepare
from ._sources import SourceSpec
from ._util import isatty

if TYPE_CHECKING:
    from ..dask import DaskExecutor

__all__ = ["start"]


async def _orchestrate(
    opts: Options,
    skip: frozenset[int],
    source: OpenSources,
    joblog: IO[str] | None,
    executor: DaskExecutor | None,
) -> int:
    """The run; ``executor``: --scheduler's, connected (the run closes it)."""
    from ._orchestrator import Orchestrator  # (not for --dry-run)

    try:
        orchestrator = Orchestrator(opts, skip, executor)
    except BaseException:
        if executor is not None:
            from ._remote import disconnect

            disconnect(executor)
        raise
    return await orchestrator.run(source, joblog)


def _on_cluster(opts: Options) -> tuple[Options, DaskExecutor]:
    """--scheduler: connected to it, and -j counted against the cluster's worker threads,
    as GNU parallel counts it against each sshlogin's CPUs (-j N stays N: nothing to ask;
    -j 0 stays as many as the open files allow, which queue on the cluster)."""
    from ._remote import cluster_threads, connect, disconnect, worker_wait  # (only here)

    assert opts.scheduler is not None
    executor = connect(opts.scheduler)
    try:
        if opts.slots.relative:
            threads = cluster_threads(executor.client, opts.scheduler, worker_wait())
            opts = dataclasses.replace(opts, jobs=opts.slots.of(threads))
        return dataclasses.replace(opts, jobs=_fit_jobs(opts.jobs)), executor
    except BaseException:
        disconnect(executor)
        raise


def _dry_run(opts: Options, skip: frozenset[int], sources: OpenSources) -> int:
    template = _joblog.template_for(opts)
    tag = Tagger(opts.tag, opts.context_replace)
    out = sys.stdout
    inputs = sources.blocking_inputs()
    try:
        for seq, args in enumerate(inputs.values(), 1):
            if seq in skip:
                continue
            argv = template.argv(seq, 1, args)  # (each job alone: all in slot 1)
            line = (template.display(argv, seq, 1, args) + "\n").encode(errors="surrogateescape")
            job = Job(seq, args, argv)
            job.slot = 1
            line = b"".join(tagged([line], tag(job)))
            out.write(line.decode(errors="surrogateescape"))
        out.flush()
    except BrokenPipeError:
        return EXIT_BROKEN_PIPE
    except InputError as exc:
        out.flush()
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.status
    finally:
        inputs.close()
    return EXIT_OK


FDS_PER_JOB: Final = 4  # its stdout and stderr pipes, its pidfd, and one to spare
FDS_KEPT: Final = 64  # for ourselves: the loop, the joblog, the spill file, the input


def _fit_jobs(jobs: int) -> int:
    """As many jobs at once as the open-file limit allows (raised to its hard limit if need
    be), with a warning if that is fewer than asked: not jobs failing to start. ``-j 0``
    asks for as many as the limit allows, as GNU parallel's does: no warning then."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    unlimited = resource.RLIM_INFINITY
    need = FDS_KEPT + FDS_PER_JOB * jobs if jobs else hard
    if soft != unlimited and (need == unlimited or need > soft):
        wanted = need if hard == unlimited else min(need, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
    if soft == unlimited:  # (not on Linux, where the kernel caps the open files)
        return jobs or sys.maxsize
    fit = max(1, (soft - FDS_KEPT) // FDS_PER_JOB)
    if not jobs:
        return fit
    if jobs > fit:
        print(
            f"{PROG}: warning: -j {jobs} needs about {need} open files, the limit is {soft}: "
            f"running {fit} jobs at once",
            file=sys.stderr,
        )
        return fit
    return jobs


def _previous(opts: Options) -> tuple[Options, frozenset[int], bool]:
    """``--resume``, ``--resume-failed``, ``--retry-failed``: what the ``--joblog`` FILE
    of the earlier run says. The options (with ``--retry-failed``, its failed command lines
    are the inputs, each at its own number), the numbers of the jobs to skip, and whether
    the joblog is appended to (it exists and is not empty, or ``--joblog +FILE``)."""
    if not (opts.resume or opts.resume_failed or opts.retry_failed):
        return opts, frozenset(), opts.joblog_append
    assert opts.joblog is not None
    try:
        with open(opts.joblog, encoding="utf-8", errors="surrogateescape", newline="") as f:
            text = f.read()
    except FileNotFoundError:  # (as GNU parallel: nothing ran yet)
        text = ""
    except OSError as exc:
        raise UsageError(f"--joblog: cannot read {opts.joblog}: {exc.strerror}") from None
    previous = _joblog.read(opts.joblog, text)
    if previous is None:
        return opts, frozenset(), opts.joblog_append
    if opts.resume:
        return opts, frozenset(previous.logged), True
    if not opts.retry_failed:
        return opts, frozenset(previous.succeeded), True
    numbers = range(1, max(previous.commands, default=0) + 1)
    commands = [previous.commands.get(seq, "") for seq in numbers]
    # the jobs that succeeded, and the numbers without a row: nothing to run again there
    skip = previous.succeeded | (set(numbers) - previous.commands.keys())
    # (one source of whole lines: no --colsep or -n cuts a command line)
    lines = (SourceSpec("--retry-failed", values=tuple(commands)),)
    opts = dataclasses.replace(opts, sources=lines, colsep=None, max_args=None, pack=None)
    return opts, frozenset(skip), True


def _open_joblog(opts: Options, append: bool) -> IO[str] | None:
    """The ``--joblog`` file, its header written unless it is appended to (None: none, or
    ``-``, standard output, where the header is written now)."""
    if opts.joblog is None:
        return None
    if opts.joblog == "-":
        sys.stdout.write(_joblog.HEADER)
        sys.stdout.flush()
        return None
    try:
        mode = "a" if append else "w"
        joblog = open(opts.joblog, mode, encoding="utf-8", errors="surrogateescape")  # noqa: SIM115
    except OSError as exc:
        raise UsageError(f"--joblog: cannot write {opts.joblog}: {exc.strerror}") from None
    if not append:
        joblog.write(_joblog.HEADER)
        joblog.flush()
    return joblog


def start(opts: Options) -> int:
    """Run what the parsed command line ``opts`` asks for: the exit status (0 ok, 1-101
    failures, 2 usage, 130 Ctrl-C)."""
    joblog: IO[str] | None = None
    try:
        opts, skip, append = _previous(opts)
        prepare(opts)  # the directory of --results or --files
        source = open_sources(opts, pipes=not opts.dry_run)
        if opts.dry_run:
            return _dry_run(opts, skip, source)
        try:
            joblog = _open_joblog(opts, append)
        except UsageError:
            source.close()
            raise
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if any(spec.stdin for spec in opts.sources) and isatty(sys.stdin):
            print(f"{PROG}: reading inputs from the terminal (Ctrl-D to end)", file=sys.stderr)
        become_subreaper()
        executor = None
        if opts.scheduler is None:
            opts = dataclasses.replace(opts, jobs=_fit_jobs(opts.jobs))
        else:
            opts, executor = _on_cluster(opts)
        return asyncio.run(_orchestrate(opts, skip, source, joblog, executor))
    except UsageError as exc:  # (before any job: --scheduler's cluster cannot be reached)
        source.close()
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        if joblog is not None:
            joblog.close()
