"""Feeding the pool: a job for each input's arguments, submitted as workers free up.

Inputs are read lazily: the next one only once a worker can take it (all at once for
``--halt ...=N%``, which needs their number). ``--resume`` and its kin skip the jobs whose
numbers they are given. Each job that ends is counted for ``--halt``, which may stop the
run: ``now`` cancels the running jobs, ``soon`` lets them finish; neither starts more.

Each step of a job reaches the code that handles it with the job in hand, never looked up:
its first PENDING is reported as ``submit`` returns it, each attempt's start by the job's
own task function, its end by a done callback on its task, and (with ``--retries``) a
retry's PENDING by a hook that finds the job in its task's context variables.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Final

from ..task import Definition, Run, State, StateHooks, Task, TaskTimeoutError
from ..workflow import WorkerPool
from ._errors import JobFailedError
from ._halt import Halt
from ._inputs import Inputs
from ._job import Job
from ._joblog import CommandLines
from ._load import StartGate
from ._options import Options
from ._report import Reporter, exit_and_signal
from ._template import Template
from ._timeout import MedianTimeout

_HOW: Final = {State.DONE: "done", State.FAILED: "failed", State.CANCELED: "canceled"}
_now = datetime.now
# The job a task runs, among the context variables it was submitted with: its task
# function finds it there, and so does a retry's PENDING hook (a hook runs in a copy of
# its task's context).
_JOB: ContextVar[Job] = ContextVar("asynctasklib_cli_job")


class _AllRead:
    """The inputs, all read before the first job starts (``--halt ...=N%``)."""

    def __init__(self, values: list[tuple[str, ...]]) -> None:
        self._values = iter(values)

    async def get(self) -> tuple[str, ...] | None:
        return next(self._values, None)

    def close(self) -> None:
        pass


class JobSlots:
    """The job slots (``{%}``): a new job takes the slot freed first (the free slots are a
    queue, as GNU parallel's), else a new number, so the slots run from 1 to the most jobs
    that ran at once. A job keeps its slot through its retries. (GNU parallel frees those
    of jobs that end between two of its checks in the order the jobs started: docs/cli.md.)"""

    __slots__ = ("_free", "_most")

    def __init__(self) -> None:
        self._free: collections.deque[int] = collections.deque()
        self._most = 0

    def take(self) -> int:
        if self._free:
            return self._free.popleft()
        self._most += 1
        return self._most

    def free(self, slot: int) -> None:
        self._free.append(slot)


class Feeder:
    """Makes a job of each input and submits it; hands each step of a job to the reporter,
    and reacts to its end (``--halt``)."""

    def __init__(
        self,
        opts: Options,
        pool: WorkerPool,
        template: Template | CommandLines,
        attempt: Callable[[Job, Run], Awaitable[None]],
        reporter: Reporter,
        skip: frozenset[int] = frozenset(),
    ) -> None:
        self.opts = opts
        self.pool = pool
        self.template = template
        self.reporter = reporter
        self.halt = Halt(opts.halt)
        self.skip = skip  # the numbers of the jobs not to run (--resume...)
        self.seq = 0
        self.slots = JobSlots()
        self.task: asyncio.Task[None] | None = None
        self._attempt = attempt
        pct = opts.timeout_pct
        self.median_timeout = None if pct is None else MedianTimeout(pct)  # --timeout N%
        # Every job's definition: each task has its job's number as its id, and finds its
        # job among its context variables (`_JOB`). One definition for all, rather than a
        # definition and a closure a job: 2% of the runner's instructions per job.
        self._recipe: Definition[None] = Definition(
            task_fn=self._job_attempt,
            max_duration=opts.timeout,
            max_retries=opts.retries,
            backoff=opts.backoff,
            # and timeouts, always (--timeout N%'s too); a command not found is not
            retry_on=(JobFailedError, TaskTimeoutError),
            hooks=StateHooks(on_pending=self._pending) if opts.retries else None,
        )
        self._stopped = False  # told to start no more jobs: no retry starts either

    def start(self, lines: Inputs) -> asyncio.Task[None]:
        # asyncio.Task, not create_task: an eager task factory would run the feeder up to
        # its first job before the caller could stop it.
        self.task = asyncio.Task(self._feed(lines))
        return self.task

    def stop(self) -> None:
        """Start no more jobs, nor retries of the jobs in the pool."""
        self._stopped = True
        if self.task is not None:
            self.task.cancel()

    def stop_starting(self) -> None:
        """Start no more jobs: those not started yet (or waiting to retry) are canceled,
        the running ones finish."""
        self.stop()
        for task in self.pool.tasks():
            if task.is_pending():
                task.cancel()

    def cancel_all(self) -> None:
        """Start no more jobs, and cancel the running ones (their processes are killed)."""
        self.stop()
        for task in self.pool.tasks():
            task.cancel()

    async def _feed(self, inputs: Inputs) -> None:
        """Submit one job per input, as the pool frees workers (inputs are read lazily)."""
        opts = self.opts
        lines: Inputs | _AllRead = inputs
        try:
            if opts.halt is not None and opts.halt.pct is not None:
                lines = await self._read_all(inputs)
            while True:
                args = await lines.get()
                if args is None:
                    break
                self.seq += 1
                if self.seq in self.skip:
                    self.reporter.skip(self.seq)
                    continue
                await self._submit(self._new_job(self.seq, args))
                if opts.delay:
                    await asyncio.sleep(opts.delay)
            self.reporter.total = self.seq
            self.reporter.refresh()
        finally:
            lines.close()

    async def _read_all(self, lines: Inputs) -> _AllRead:
        """Every input, read now: ``--halt ...=N%`` counts the jobs first, as GNU
        parallel does."""
        values: list[tuple[str, ...]] = []
        try:
            while (args := await lines.get()) is not None:
                values.append(args)
        finally:
            lines.close()
        self.halt.total = self.reporter.total = len(values)
        return _AllRead(values)

    def _new_job(self, seq: int, args: tuple[str, ...]) -> Job:
        return Job(seq, args, [])  # (its command once it has a slot: see _submit)

    async def _job_attempt(self, run: Run) -> None:
        """Every job's task function: reports the start of an attempt of its job (found
        in the task's context, see `_submit`), then runs it."""
        job = _JOB.get()
        self.reporter.started(job, _now(UTC))  # (where the pool's on_started hook would fire)
        if self.median_timeout is None:
            await self._attempt(job, run)
        else:
            await self.median_timeout.run(self._attempt(job, run))

    async def _submit(self, job: Job) -> Task[None]:
        """Submit the job: its task, PENDING (the job's ``task`` too, until it ends)."""
        _JOB.set(job)  # (the task's context variables are those of its submit)
        try:
            task = await self.pool.submit(self._recipe, id=str(job.seq))
        except BaseException:
            self.reporter.skip(job.seq)  # (never submitted)
            raise
        # Nothing has run since the pool took the task in: this is where its on_pending
        # hook fires, and no worker can have started it yet. It holds a worker until it
        # ends, and a job slot as long (the job that ended before freed one, if need be:
        # a task's done callbacks run as it ends, before a submit that waits resumes).
        job.task = task
        job.slot = slot = self.slots.take()
        job.argv = self.template.argv(job.seq, slot, job.args)

        def job_ended(task: Task[Any]) -> None:
            self.slots.free(slot)
            self._ended(job, task)

        task.add_done_callback(job_ended)
        self.reporter.pending(job, _now(UTC), 0)
        return task

    # -- the steps of a job after its start ---------------------------------------------

    def _pending(self, task_id: str, when: datetime, attempt: int) -> None:
        """The definitions' on_pending hook (with ``--retries``), in a copy of the task's
        context: the job is found there."""
        if attempt:  # (the first PENDING is reported as submit returns: see _submit)
            self._retrying(_JOB.get(), when, attempt)

    def _retrying(self, job: Job, when: datetime, attempt: int) -> None:
        """The job waits for its retry ``attempt``."""
        if self._stopped and job.task is not None:  # after Ctrl-C nothing more starts
            asyncio.get_running_loop().call_soon(job.task.cancel)
        self.reporter.pending(job, when, attempt)

    def _ended(self, job: Job, task: Task[Any]) -> None:
        """The job's task ended: DONE, FAILED or CANCELED."""
        job.task = None  # (the task holds the job through its definition: no cycle left)
        state = task.state
        when = _now(UTC)
        self.reporter.ended(job, when, _HOW[state], task.error)
        if state is State.DONE and self.median_timeout is not None:
            assert job.started_at is not None
            self.median_timeout.succeeded(when.timestamp() - job.started_at)
        if state is not State.CANCELED:
            self._halt(self.halt.ended(*exit_and_signal(job)))

    def _halt(self, when: str | None) -> None:
        """``--halt``: ``now``, cancel the running jobs; ``soon``, let them finish."""
        if when is None:
            return
        if not self._stopped:
            running = "cancelling" if when == "now" else "waiting for"
            self.reporter.notice(f"--halt: starting no more jobs, {running} the running ones")
        if when == "now":
            self.cancel_all()
        else:
            self.stop_starting()


class GatedFeeder(Feeder):
    """The feeder with ``--load`` or ``--memfree``: each job waits for a free worker, then
    for the gate, before it is submitted; each retry waits for the gate; with
    ``--memfree``, each attempt runs under the gate's watch (which may kill it). A class
    of its own, so that a run without them has none of this on its way."""

    def __init__(
        self,
        opts: Options,
        pool: WorkerPool,
        template: Template | CommandLines,
        attempt: Callable[[Job, Run], Awaitable[None]],
        reporter: Reporter,
        skip: frozenset[int] = frozenset(),
        *,
        gate: StartGate,
    ) -> None:
        super().__init__(opts, pool, template, attempt, reporter, skip)
        self.gate = gate

    def stop_starting(self) -> None:
        super().stop_starting()
        for job in list(self.gate.waiting):  # (retries waiting for the gate: not started)
            if job.task is not None:
                job.task.cancel()

    async def _submit(self, job: Job) -> Task[None]:
        gate = self.gate
        pool = self.pool
        # A worker first, so that the gate reads the machine as the job would start.
        await gate.wait(lambda: pool.available_workers > 0)
        task = await super()._submit(job)
        task.add_done_callback(gate.job_ended)
        return task

    async def _job_attempt(self, run: Run) -> None:
        """The task function of every job (see `Feeder._job_attempt`): a retry first waits
        for the gate, as a new job does (GNU parallel queues it again); with ``--memfree``
        the attempt runs under the gate's watch."""
        job = _JOB.get()
        gate = self.gate
        if run.attempt:
            gate.waiting.add(job)
            try:
                await gate.wait()
            finally:
                gate.waiting.discard(job)
        self.reporter.started(job, _now(UTC))
        watch = self.median_timeout
        this = self._attempt(job, run) if watch is None else watch.run(self._attempt(job, run))
        if gate.memfree is not None:
            await gate.run(job, this)
        else:
            await this
