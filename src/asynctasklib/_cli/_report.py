"""What a run shows of its jobs: their output, the ``--json`` events, the ``--joblog``
rows (GNU parallel's, see `_joblog`), the progress view, and our own messages on stderr.

The feeder calls it with the job, one call per step of the job (see `Feeder`). How many
jobs ended how comes from the pool's own counters, ``pool.stats()``; only the retries are
counted here (and the attempts started, for ``--halt N%``), since the pool does not count
them.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any

from ..task import TaskTimeoutError
from . import _joblog
from ._errors import CannotStartError, show
from ._job import Job
from ._output import Sink, Spool
from ._sources import known_total
from ._table import Table, kind
from ._util import isatty

if TYPE_CHECKING:
    from ..workflow import PoolStats
    from ._options import Options
    from ._progress import ProgressView
    from ._results import JobOutput


class Reporter:
    """Turns each step of each job into output; counts the retries."""

    def __init__(
        self,
        opts: Options,
        stats: Callable[[], PoolStats],
        sink: Sink,
        output: JobOutput,
        command: Callable[[list[str], int, int, Sequence[str]], str],
    ) -> None:
        self.opts = opts
        self.sink = sink
        self.output = output  # writes the jobs' output
        self.command = command  # a job's argv (seq, slot, args) as its joblog row shows it
        self.joblog: IO[str] | None = None  # (--joblog -: None, the rows go to the sink)
        self.view: ProgressView | None = None
        self.table, self._table_file = _open_table(opts, sink)  # --results FILE.csv...
        self.total = None if opts.pack else known_total(opts.sources, opts.max_args, opts.link)
        self.retried = 0
        self.attempts = 0  # the attempts started
        self._stats = stats

    # -- the steps of a job --------------------------------------------------------------

    def pending(self, job: Job, when: datetime, attempt: int) -> None:
        """The job waits for a worker (attempt 0) or for its retry ``attempt``."""
        if attempt:
            self.retried += 1
        if self.opts.json:
            event: dict[str, Any] = {"event": "pending", "seq": job.seq, "input": job.input}
            event["attempt"] = attempt
            event["time"] = when.isoformat()
            if attempt:
                event["error"] = self._interrupted(job) if job.timed_out else job.error
            self._event(event)
        self.refresh()

    def started(self, job: Job, when: datetime) -> None:
        job.attempts += 1
        self.attempts += 1
        job.started_at = when.timestamp()  # (the last attempt's, as GNU parallel logs)
        job.started_mono = time.monotonic()
        if self.opts.json:
            self._event(
                {
                    "event": "started",
                    "seq": job.seq,
                    "input": job.input,
                    "attempt": job.attempts - 1,
                    "time": when.isoformat(),
                    "command": job.argv,
                }
            )
        self.refresh()

    def ended(self, job: Job, when: datetime, how: str, error: BaseException | None) -> None:
        """The job ended ``how`` ("done", "failed" or "canceled"): its output is written
        (or waits for its turn), with its event and its joblog row."""
        outcome = _outcome(job)
        received = job.received  # (before the output goes)
        if received is None:
            counted = self.opts.joblog is not None or self.table is not None
            received = _size(job.out) if counted else 0
        if self.table is not None and how != "canceled":  # (its own output, not our line)
            self._table_row(job, when, received)
        if how == "failed" and not isinstance(error, CannotStartError):  # (that one says so)
            self._explain(job, error)
        row = None
        if self.opts.joblog is not None and how != "canceled":  # (as GNU parallel: no row)
            row = functools.partial(self._joblog_row, job, when, received)
        if self.opts.json:
            self._ended_event(job, when, how, error, outcome)
            job.set_output(b"", b"")
            if row is not None:
                row()
        else:
            self.output.ended(job, row)  # (the row once the output is written: -k's order)
        self.refresh()

    def skip(self, seq: int) -> None:
        """Job ``seq`` is not run (``--resume``, or never submitted): its turn in the
        ordered output passes."""
        self.output.skip(seq)
        if self.table is not None:
            self.table.skip(seq)

    def flush(self) -> None:
        """The run is over: write the ordered output that still waits."""
        self.output.flush()
        if self._table_file is not None:
            self._table_file.close()

    def _explain(self, job: Job, error: BaseException | None) -> None:
        """Why the job failed, after its own stderr (GNU parallel shows that; the rest is
        ours); with ``--json``, on our stderr."""
        reason = self._failure(job, error)
        err = job.err
        if self.opts.json or self.table is not None:
            self.notice(reason)
        elif isinstance(err, Spool):
            err.append(f"asynctasklib: {reason}\n".encode(errors="surrogateescape"))
        else:
            job.err = err + f"asynctasklib: {reason}\n".encode(errors="surrogateescape")

    def _failure(self, job: Job, error: BaseException | None) -> str:
        """One line for a failed job: which, why (exit code, signal, timeout), its input."""
        if isinstance(error, TaskTimeoutError) and self.opts.timeout is not None:
            why = self._timed_out()
        else:
            why = _error_text(error, job)
        tries = f" after {job.attempts} attempts" if job.attempts > 1 else ""
        return f"job {job.seq} failed{tries}: {why} (input {show(job.input)})"

    def _interrupted(self, job: Job) -> str:
        """Why the runner killed the job's last attempt: --memfree, or a timeout."""
        return job.killed if job.killed is not None else self._timed_out()

    def _timed_out(self) -> str:
        timeout, pct = self.opts.timeout, self.opts.timeout_pct
        if pct is not None:
            return f"timed out ({pct * 100:g}% of the median run time)"
        assert timeout is not None
        return f"timed out after {timeout:g} s"

    def _ended_event(
        self,
        job: Job,
        when: datetime,
        how: str,
        error: BaseException | None,
        outcome: tuple[int, int, float | None],
    ) -> None:
        exit_code, sig, duration = outcome
        event: dict[str, Any] = {
            "event": how,
            "seq": job.seq,
            "input": job.input,
            "time": when.isoformat(),
            "attempts": job.attempts,
            "exit_code": exit_code,
            "signal": sig,
            "duration": None if duration is None else round(duration, 6),
        }
        if how == "failed":
            event["error"] = _error_text(error, job)
        event["stdout"] = _text(job.out)
        event["stderr"] = _text(job.err)
        self._event(event)

    def _event(self, event: dict[str, Any]) -> None:
        self.sink.write((json.dumps(event) + "\n").encode(), err=False)

    def _joblog_row(self, job: Job, when: datetime, received: int) -> None:
        assert job.started_at is not None  # (a job that never started was canceled)
        text = _joblog.row(
            job.seq, job.started_at, when.timestamp(), received, *exit_and_signal(job),
            self.command(job.argv, job.seq, job.slot, job.args),
        )  # fmt: skip
        if self.joblog is None:  # --joblog -: with the jobs' output, in its turn
            self.sink.write(text.encode(errors="surrogateescape"), err=False)
        else:
            self.joblog.write(text)
            self.joblog.flush()

    def _table_row(self, job: Job, when: datetime, received: int) -> None:
        assert self.table is not None
        assert job.started_at is not None
        self.table.row(
            job.seq, job.started_at, when.timestamp(), received, *exit_and_signal(job),
            self.command(job.argv, job.seq, job.slot, job.args), job.args, _bytes(job.out),
            _bytes(job.err),
        )  # fmt: skip

    # -- the progress view and our messages ----------------------------------------------

    def start_view(self) -> None:
        wanted = self.opts.progress
        if wanted is False or not isatty(sys.stderr):
            return
        try:
            from ._progress import ProgressView
        except ImportError:
            if wanted:
                self.notice(
                    "the progress view needs rich: pip install 'asynctasklib[cli]'; "
                    "running without it"
                )
            return
        self.view = ProgressView(self.total)
        self.view.start()
        self.sink.view = self.view

    def refresh(self) -> None:
        view = self.view
        if view is not None:
            stats = self._stats()
            view.update(
                total=self.total,
                done=stats.done,
                failed=stats.failed,
                canceled=stats.canceled,
                running=stats.started,
                retried=self.retried,
            )

    def stop_view(self) -> None:
        view = self.view
        if view is not None:
            self.refresh()
            self.sink.view = self.view = None
            view.stop()

    def notice(self, message: str) -> None:
        self.sink.notice(message)

    def summary(self, wall: float, interrupted: bool) -> None:
        stats = self._stats()
        done, failed, canceled = stats.done, stats.failed, stats.canceled
        ended = done + failed + canceled
        rate = ended / wall if wall > 0 else 0.0
        self.notice(
            f"{ended} jobs: {done} done, {failed} failed, {canceled} canceled, "
            f"{self.retried} retried in {wall:.2f} s ({rate:.1f} jobs/s)"
            + (" (interrupted)" if interrupted else "")
        )


def _outcome(job: Job) -> tuple[int, int, float | None]:
    """The job's exit code (-1 if a signal killed it, or it never ran), that signal (0 if
    none), and the seconds since its first attempt started (None if it never started)."""
    rc = job.returncode
    exit_code = rc if rc is not None and rc >= 0 else -1
    sig = -rc if rc is not None and rc < 0 else 0
    duration = time.monotonic() - job.started_mono if job.started_at is not None else None
    return exit_code, sig, duration


def exit_and_signal(job: Job) -> tuple[int, int]:
    """The job's Exitval and Signal, as GNU parallel has them: the exit code, or 0 if a
    signal killed it (-1 if a timeout did); the number of that signal, else 0."""
    rc = job.returncode or 0
    if rc > 0:
        return rc, 0
    return -1 if job.timed_out else 0, -rc


def _size(output: bytes | Spool) -> int:
    if isinstance(output, bytes):
        return len(output)
    return sum(len(chunk) for chunk in output.chunks())


def _bytes(output: bytes | Spool) -> bytes:
    return output if isinstance(output, bytes) else output.getvalue()


def _open_table(opts: Options, sink: Sink) -> tuple[Table | None, IO[bytes] | None]:
    """The ``--results`` table, if it is one, and its file (None: standard output)."""
    table_kind = None if opts.results is None else kind(opts.results)
    if table_kind is None or opts.results is None:
        return None, None
    if opts.results.startswith("-."):
        return Table(table_kind, lambda data: sink.write(data, err=False), opts.keep_order), None
    file = open(opts.results, "wb")  # noqa: SIM115  # closed by `Reporter.flush`
    return Table(table_kind, file.write, opts.keep_order), file


def _text(output: bytes | Spool) -> str:
    data = output if isinstance(output, bytes) else output.getvalue()
    return data.decode(errors="replace")


def _error_text(error: BaseException | None, job: Job) -> str:
    if isinstance(error, TaskTimeoutError):
        return f"timed out: {error}"
    if error is None:
        return job.error or ""
    return str(error) or type(error).__name__
