"""``asynctasklib run``: run a command once per input, on a `WorkerPool`.

Each job is a subprocess in a session (so a process group) of its own, run by an
``async def`` task function; the pool gives the concurrency limit, retries with backoff and
per-attempt timeouts, and its hooks feed the output, the ``--json`` events, the ``--joblog``
(GNU parallel's) and the progress view.

A job that times out, is canceled, or leaves processes behind when it exits has its
whole process group killed as ``--term-seq`` says (SIGTERM, then SIGKILL). On Linux the
runner is a child subreaper, so processes orphaned by a job are reparented to it and
reaped here rather than left as zombies.

The modules, from the bottom up. A name without a leading underscore is what the other
modules use; the whole package is private all the same, a client of the public API only.

- `_errors`: exit statuses and errors; `_util`: two small helpers and the `NOT_YET` sentinel.
- `_replace`: GNU parallel's replacement strings; `_shell`: where each stands in shell
  code; `_template`: the command filled per job.
- `_options`: the command line, checked, with `_argparser` (its parser: every option and
  its help), `_argtypes` (its values' types), `_jobslots` (``-j``, counted against a CPU
  count once it is known), `_input_options`, `_output_options`, `_joblog_options` and
  `_remote_options` (each group of options and its checks); `_unsupported`: GNU parallel's
  options refused by name; `_sources`: the input sources it gives.
- `_records`: one source's records; `_combine`: every combination of the sources' records;
  `_inputs`: each job's arguments, from the sources.
- `_output`: the jobs' output, stored and written; `_job`: one input's job.
- `_reap`: process groups and orphans; `_termseq`: how a job's processes are killed
  (``--term-seq``); `_capture`: a job's leader and pipes, watched on the event loop;
  `_procs`: one attempt of a job, as processes.
- `_remote_options`, `_remote`, `_remote_worker`: ``--executor dask``, one attempt of a job
  on a Dask worker (`_remote_worker` is the half that runs there).
- `_progress`: the rich view; `_report`: the hooks' steps turned into output.
- `_joblog`: GNU parallel's joblog, written and read back; `_halt`: ``--halt`` and the exit
  status.
- `_feeder`: the jobs submitted to the pool; `_orchestrator`: the whole run.
- `_start`: what follows the parsing: the inputs, the joblog, and the run on an event loop.
- this module: `main`, the entry point. It imports only the options' modules before it has
  parsed the command line (then `_start`), so that ``--help`` and ``--version`` start fast:
  no asyncio, no pool.
"""

from __future__ import annotations

import fcntl
import os
import sys

from ._errors import EXIT_USAGE, PROG, JobFailedError, UsageError
from ._options import parse

__all__ = ["JobFailedError", "main"]


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
    """``asynctasklib run ARGS``: the exit status (0 ok, 1-101 failures, 2 usage, 130 Ctrl-C)."""
    _ensure_std_streams()
    try:
        opts = parse(argv)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exc:  # argparse: --help or --version (0), or a bad option (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    from ._start import start  # the run's modules, asyncio and the pool: not for --help

    return start(opts)
