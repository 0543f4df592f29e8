"""Feeding the pool: one job per input, submitted as workers free up.

Inputs are read lazily: the next one only once a worker can take it. With
``--halt-on-error`` the jobs go in as error groups, and the first failure halts the run.

Each step of a job reaches the code that handles it with the job in hand, never looked up:
its first PENDING is reported as ``submit`` returns it, each attempt's start by the job's
own task function, its end by a done callback on its task, and (with ``--retries``) a
retry's PENDING by a hook that finds the job in its task's context variables.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Final

from ..task import Definition, Run, State, StateHooks, Task
from ..workflow import WorkerPool
from ._errors import JobFailedError
from ._inputs import NOT_YET, Lines, PipeLines
from ._job import Job
from ._options import Options
from ._report import Reporter
from ._template import Template

_HOW: Final = {State.DONE: "done", State.FAILED: "failed", State.CANCELED: "canceled"}
_now = datetime.now
# The job a task runs, among the context variables it was submitted with. A hook runs in a
# copy of its task's context, so a retry's PENDING finds its job there: a StateHooks of each
# job's own would cost some 45 microseconds a job (checking its hook's signature), this
# about nothing.
_JOB: ContextVar[Job] = ContextVar("asynctasklib_cli_job")


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
    and reacts to its end (``--halt-on-error``, a free worker)."""

    def __init__(
        self,
        opts: Options,
        pool: WorkerPool,
        template: Template,
        attempt: Callable[[Job, Run], Awaitable[None]],
        reporter: Reporter,
    ) -> None:
        self.opts = opts
        self.pool = pool
        self.template = template
        self.reporter = reporter
        self.seq = 0
        self.slots = JobSlots()
        self.task: asyncio.Task[None] | None = None
        self.groups: set[asyncio.Task[None]] = set()  # the error groups not ended yet
        self._attempt = attempt
        # What every job's definition shares; each gets its id and its job (`_definition`).
        self._recipe: Definition[None] = Definition(
            max_duration=opts.timeout,
            max_retries=opts.retries,
            backoff=opts.backoff,
            retry_on=JobFailedError,  # and timeouts, always; a command not found is not
            hooks=StateHooks(on_pending=self._pending) if opts.retries else None,
        )
        self._slot_waiter: asyncio.Future[None] | None = None
        self._halted = False
        self._stopped = False  # told to start no more jobs: no retry starts either

    def start(self, lines: Lines | PipeLines) -> asyncio.Task[None]:
        # asyncio.Task, not create_task: an eager task factory would run the feeder up to
        # its first job before the caller could stop it.
        self.task = asyncio.Task(self._feed(lines))
        return self.task

    def stop(self) -> None:
        """Start no more jobs, nor retries of the jobs in the pool."""
        self._stopped = True
        if self.task is not None:
            self.task.cancel()

    async def _feed(self, lines: Lines | PipeLines) -> None:
        """Submit one job per input, as the pool frees workers (inputs are read lazily)."""
        opts = self.opts
        try:
            while True:
                if opts.halt_on_error:
                    await self._free_slot()
                value = await lines.get()
                if value is None:
                    break
                if opts.halt_on_error:
                    await self._submit_group(self._batch(value, lines))
                else:
                    await self._submit(self._new_job(value))
                if opts.delay:
                    await asyncio.sleep(opts.delay)
            self.reporter.total = self.seq
            self.reporter.refresh()
        finally:
            lines.close()

    def _new_job(self, value: str) -> Job:
        self.seq += 1
        return Job(self.seq, value, [])  # (its command once it has a slot: see _submit)

    def _definition(self, job: Job) -> Definition[None]:
        """The job's definition: its task function reports the start of an attempt of
        this very job, then runs it."""
        attempt = self._attempt
        started = self.reporter.started

        # A plain async def rather than a partial: Definition checks a function on its
        # fast path, a partial on inspect's slower one (some 25 microseconds a job).
        async def job_attempt(run: Run) -> None:
            started(job, _now(UTC))  # (where the pool's on_started hook would fire)
            await attempt(job, run)

        return dataclasses.replace(self._recipe, id=str(job.seq), task_fn=job_attempt)

    def _forget(self, job: Job) -> None:
        """A job that was never submitted."""
        self.reporter.skip(job)

    async def _submit(self, job: Job) -> Task[None]:
        """Submit the job: its task, PENDING (the job's ``task`` too, until it ends)."""
        if self.opts.retries:
            _JOB.set(job)  # (the task's context variables are those of its submit)
        try:
            task = await self.pool.submit(self._definition(job))
        except BaseException:
            self._forget(job)
            raise
        # Nothing has run since the pool took the task in: this is where its on_pending
        # hook fires, and no worker can have started it yet. It holds a worker until it
        # ends, and a job slot as long (the job that ended before freed one, if need be:
        # a task's done callbacks run as it ends, before a submit that waits resumes).
        job.task = task
        slot = self.slots.take()
        job.argv = self.template.argv(job.seq, slot, (job.value,))

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
        self.reporter.ended(job, _now(UTC), _HOW[state], task.error)
        if state is State.FAILED and self.opts.halt_on_error:
            self.halt(job)
        self.slot_freed()

    # -- --halt-on-error -----------------------------------------------------------------

    async def _free_slot(self) -> None:
        while self.pool.available_workers == 0:
            self._slot_waiter = waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._slot_waiter = None

    def slot_freed(self) -> None:
        """A job ended: its worker is free."""
        waiter = self._slot_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _batch(self, value: str, lines: Lines | PipeLines) -> list[str]:
        """``value`` and the inputs ready after it, up to one per free worker (one only
        with ``--delay``)."""
        batch = [value]
        room = 1 if self.opts.delay else self.pool.available_workers
        while len(batch) < room:
            more = lines.get_nowait()
            if more is None or more is NOT_YET:
                break
            batch.append(more)
        return batch

    async def _submit_group(self, values: list[str]) -> None:
        """Run ``values`` as one error group, in free workers.

        Each job is submitted as any other (its task comes back, for its done callback),
        then the group's tasks are waited for together, and the first failure among them
        cancels the rest. A long input goes in as many small groups (at most one per free
        worker each time), and the first failure anywhere cancels the other groups as well
        (`halt`).
        """
        jobs: list[Job] = []
        tasks: list[Task[None]] = []
        try:
            for value in values:  # (in free workers: no submit waits)
                job = self._new_job(value)
                tasks.append(await self._submit(job))
                jobs.append(job)
        finally:
            if tasks:  # (those submitted run as a group, even if the feeder is stopped)
                group = asyncio.get_running_loop().create_task(self._group(tasks))
                self.groups.add(group)
                group.add_done_callback(self.groups.discard)
                for job in jobs:
                    job.group = group

    async def _group(self, tasks: list[Task[None]]) -> None:
        # gather, given tasks, waits for them as an error group: the first failure cancels
        # the rest. (That failure was reported at its job's end.)
        with contextlib.suppress(Exception):
            await self.pool.gather(tasks)

    def halt(self, job: Job) -> None:
        """A job failed: cancel every other group, start nothing more."""
        if self._halted:
            return
        self._halted = True
        self.stop()
        for group in self.groups:
            if group is not job.group:
                group.cancel()  # the pool cancels that group's tasks
