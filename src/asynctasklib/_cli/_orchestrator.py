"""One ``asynctasklib run`` from start to end: the pool, the signals, the exit status.

Three parts do the work. The `Feeder` submits one job per input, and hands each step of
a job (with the job: nothing is looked up) to the `Reporter`, which turns it into output.
`Processes` runs each attempt of a job as a process group of its own
(`RemoteCommands`, with ``--scheduler``: on a Dask worker). The feeder's `Halt`
counts the jobs as they end, for ``--halt`` and the exit status (GNU parallel's). What is
left here: the signals, and the exit status.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any, Final

from ..workflow import WorkerPool
from ._errors import (
    EXIT_BROKEN_PIPE,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    InputError,
)
from ._feeder import Feeder, GatedFeeder
from ._inputs import OpenSources, open_inputs
from ._joblog import template_for
from ._load import StartGate
from ._options import Options
from ._output import Sink, Store
from ._procs import Processes
from ._reap import Reaper
from ._remote import RemoteCommands
from ._report import Reporter
from ._results import JobOutput

if TYPE_CHECKING:
    from ..dask import DaskExecutor

_REAP_EVERY: Final = 0.5  # seconds between reaps of the orphans that have exited


class Orchestrator:
    """Runs the jobs of one ``run`` on a pool, and says how it went (the exit status)."""

    def __init__(
        self,
        opts: Options,
        skip: frozenset[int] = frozenset(),
        executor: DaskExecutor | None = None,
    ) -> None:
        """``skip``: the numbers of the jobs not to run (``--resume`` and its kin);
        ``executor``: --scheduler's, if connected already (closed at the run's end)."""
        self.opts = opts
        self.loop = loop = asyncio.get_running_loop()
        self.pool = WorkerPool(opts.jobs, retain_finished=False)
        sink = Sink()
        sink.on_stdout_closed = self._stdout_closed
        template = template_for(opts)
        self.store = Store()  # the jobs' output until it is written
        output = JobOutput(opts, sink, self.store)
        self.reporter = Reporter(opts, self.pool.stats, sink, output, template.display)
        self.reaper = Reaper(loop)
        self.processes: Processes | RemoteCommands
        if opts.scheduler is None:
            self.processes = Processes(
                loop, output, template.executable, opts.term_seq, self.reaper,
                self.reporter.notice,
            )  # fmt: skip
        else:  # --executor dask: each attempt's command runs on a worker of the cluster
            # (there: SIGTERM, then SIGKILL once the whole --term-seq's time has passed)
            self.processes = RemoteCommands(opts.scheduler, output, opts.term_seq.seconds, executor)
        self.gate: StartGate | None = None
        self.feeder: Feeder
        if opts.max_load is None and opts.memfree is None:
            self.feeder = Feeder(
                opts, self.pool, template, self.processes.attempt, self.reporter, skip
            )
        else:  # --load, --memfree
            self.gate = StartGate(opts.max_load, opts.memfree, self.reporter.notice)
            self.feeder = GatedFeeder(
                opts, self.pool, template, self.processes.attempt, self.reporter, skip,
                gate=self.gate,
            )  # fmt: skip
        self.interrupts = 0  # Ctrl-C so far
        self.exit_override: int | None = None  # an exit status that overrides the jobs'

    async def run(self, source: OpenSources, joblog: IO[str] | None) -> int:
        """Run a job per input of ``source``: the exit status."""
        self.reporter.joblog = joblog
        self.processes.open()
        started = time.perf_counter()
        self.reporter.start_view()
        handled = self._handle_signals()
        try:
            await self._feed(source)
        except BaseException:
            self._cancel_all()
            with contextlib.suppress(BaseException):
                await self.pool.shutdown(cancel=True)
            raise
        finally:
            self.reaper.stop()
            if self.gate is not None:
                self.gate.close()
            for sig in handled:
                self.loop.remove_signal_handler(sig)
            self.processes.close()
            self.reporter.stop_view()
        try:
            self.reporter.flush()
        finally:
            self.store.close()
        self.reporter.summary(time.perf_counter() - started, interrupted=bool(self.interrupts))
        if self.exit_override is not None:
            return self.exit_override
        if self.interrupts:
            return EXIT_INTERRUPTED
        return self.feeder.halt.exit_status(self.reporter.attempts)

    async def _feed(self, source: OpenSources) -> None:
        """Feed every input to the pool, then wait for every job to end."""
        source.jobs = self.opts.jobs  # (-X and -m spread the last inputs over the slots)
        lines = await open_inputs(source)
        feeder = self.feeder.start(lines)
        if self.interrupts or self.exit_override is not None:
            # A signal (or a closed stdout) came before the feeder existed, while the
            # inputs were being opened: stop as it would have stopped the feeder.
            feeder.cancel()
        try:
            await asyncio.wait([feeder])
        finally:
            lines.close()  # (a feeder canceled before it began never closes them)
        error = None if feeder.cancelled() else feeder.exception()
        if isinstance(error, InputError):  # a bad input: start no more, finish the rest
            self.reporter.notice(f"error: {error}")
            self.exit_override = error.status
        elif error is not None:  # reading the inputs failed: the same
            self.reporter.notice(f"cannot read the inputs: {error}")
            self.exit_override = EXIT_FAILED
        await self.pool.shutdown(cancel=False)

    def _stdout_closed(self) -> None:
        """Our stdout was closed: nobody reads the results, stop everything."""
        if self.exit_override is None:
            self.exit_override = EXIT_BROKEN_PIPE
        self._cancel_all()

    # -- signals -------------------------------------------------------------------------

    def _handle_signals(self) -> list[signal.Signals]:
        """Install our signal handlers: the signals handled."""
        loop = self.loop
        handled: list[signal.Signals] = []
        signals: list[tuple[signal.Signals, Callable[..., None], tuple[Any, ...]]] = [
            (signal.SIGINT, self._on_sigint, ()),
            (signal.SIGTERM, self._on_sigterm, ()),
            (signal.SIGHUP, self._on_sigterm, (128 + signal.SIGHUP,)),
            (signal.SIGQUIT, self._on_sigterm, (128 + signal.SIGQUIT,)),
        ]
        for sig, handler, args in signals:
            try:
                loop.add_signal_handler(sig, handler, *args)
            except (RuntimeError, ValueError):  # pragma: no cover - not the main thread
                continue
            handled.append(sig)
        # Orphans are reaped every so often, not on SIGCHLD: uvloop keeps SIGCHLD, and
        # asyncio's removal of a SIGCHLD handler races with a child's end (CPython then
        # reports "Signal 17 ignored due to race condition").
        self.reaper.reap_every(_REAP_EVERY)
        return handled

    def _on_sigint(self) -> None:
        self.interrupts += 1
        if self.interrupts == 1:
            self.feeder.stop_starting()  # (and a retry that comes due from now on is canceled)
            running = self.pool.stats().started
            self.reporter.notice(
                f"interrupted: starting no more jobs, waiting for {running} running "
                "(Ctrl-C again to cancel them)"
            )
        elif self.interrupts == 2:
            self.reporter.notice("interrupted again: cancelling the running jobs")
            self._cancel_all()
        else:
            self.reporter.notice("killing the running jobs")
            self._cancel_all()
            self.processes.kill_all()

    def _on_sigterm(self, exit_code: int = EXIT_TERMINATED) -> None:
        """SIGTERM, and SIGHUP or SIGQUIT (the terminal or the session went away): cancel
        the jobs, kill their process groups, and exit with 128 + the signal's number."""
        self.interrupts = max(self.interrupts, 2)
        self.exit_override = exit_code
        self._cancel_all()

    def _cancel_all(self) -> None:
        self.feeder.cancel_all()
