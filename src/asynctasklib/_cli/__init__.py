"""``asynctasklib run``: run a command once per input, on a `WorkerPool`.

Each job is a subprocess in a session (so a process group) of its own, run by an
``async def`` task function; the pool gives the concurrency limit, retries with backoff,
per-attempt timeouts and (with ``--halt-on-error``) error groups, and its hooks feed the
output, the ``--json`` events, the ``--joblog`` and the progress view.

A job that times out, is canceled, or leaves processes behind when it exits has its
whole process group killed: SIGTERM, then SIGKILL after ``--grace`` seconds. On Linux the
runner is a child subreaper, so processes orphaned by a job are reparented to it and
reaped here rather than left as zombies.

The modules, from the bottom up. A name without a leading underscore is what the other
modules use; the whole package is private all the same, a client of the public API only.

- `_errors`: exit statuses and errors; `_util`: two small helpers.
- `_replace`: GNU parallel's replacement strings; `_shell`: where each stands in shell
  code; `_template`: the command filled per job.
- `_options`: the command line; `_inputs`: where the inputs come from.
- `_output`: the jobs' output, stored and written; `_job`: one input's job.
- `_reap`: process groups and orphans; `_procs`: one attempt of a job, as processes.
- `_progress`: the rich view; `_report`: the hooks' steps turned into output.
- `_feeder`: the jobs submitted to the pool; `_orchestrator`: the whole run.
- this module: `main`, the entry point.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import os
import resource
import sys
from typing import IO, Final

from ._errors import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    PROG,
    InputError,
    JobFailedError,
    UsageError,
)
from ._inputs import Source, open_source
from ._options import Options, parse
from ._orchestrator import Orchestrator
from ._procs import pidfd_child_watcher
from ._reap import become_subreaper
from ._report import JOBLOG_HEADER
from ._template import Template
from ._util import isatty

__all__ = ["JobFailedError", "main"]


async def _orchestrate(opts: Options, source: Source, joblog: IO[str] | None) -> int:
    with pidfd_child_watcher():
        return await Orchestrator(opts).run(source, joblog)


def _dry_run(opts: Options, source: Source) -> int:
    assert source.values is not None
    template = Template(opts.command, opts.shell, opts.names)
    out = sys.stdout
    try:
        for seq, value in enumerate(source.values, 1):  # (each job alone: all in slot 1)
            out.write(template.display(template.argv(seq, 1, (value,))) + "\n")
        out.flush()
    except BrokenPipeError:
        return EXIT_BROKEN_PIPE
    except InputError as exc:
        out.flush()
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        if source.close is not None:
            source.close()
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


def _ensure_std_streams() -> None:
    """Started with standard input, output or error closed (``>&-``): put /dev/null there,
    so that the files we open do not take those descriptors, and writing does not fail."""
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        try:
            access = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
        except OSError:  # closed
            usable = False
        else:  # (opened the wrong way round by someone else: as good as closed)
            usable = access != (os.O_WRONLY if fd == 0 else os.O_RDONLY)
        if not usable:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, mode, closefd=False))  # noqa: SIM115 (never closed)


def main(argv: list[str]) -> int:
    """``asynctasklib run ARGS``: the exit status (0 ok, 1 failures, 2 usage, 130 Ctrl-C)."""
    _ensure_std_streams()
    joblog: IO[str] | None = None
    try:
        opts = parse(argv)
        try:
            source = open_source(opts, pipes=not opts.dry_run)
        except OSError as exc:
            raise UsageError(f"--arg-file: cannot read {opts.arg_file}: {exc.strerror}") from None
        if opts.dry_run:
            return _dry_run(opts, source)
        if opts.joblog is not None:
            try:
                joblog = open(opts.joblog, "w", encoding="utf-8", errors="surrogateescape")  # noqa: SIM115
            except OSError as exc:
                if source.close is not None:
                    source.close()
                raise UsageError(f"--joblog: cannot write {opts.joblog}: {exc.strerror}") from None
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exc:  # argparse: --help (0) or a bad option (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        if joblog is not None:
            joblog.write(JOBLOG_HEADER)
            joblog.flush()
        if opts.inputs is None and opts.arg_file in (None, "-") and isatty(sys.stdin):
            print(f"{PROG}: reading inputs from the terminal (Ctrl-D to end)", file=sys.stderr)
        become_subreaper()
        opts = dataclasses.replace(opts, jobs=_fit_jobs(opts.jobs))
        return asyncio.run(_orchestrate(opts, source, joblog))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        if joblog is not None:
            joblog.close()
