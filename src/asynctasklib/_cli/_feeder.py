"""Feeding the pool: one job per input, submitted as workers free up.

Inputs are read lazily: the next one only once a worker can take it. With
``--halt-on-error`` the jobs go in as error groups, and the first failure halts the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable

from ..task import Definition, Run
from ..workflow import WorkerPool
from ._errors import JobFailedError
from ._inputs import NOT_YET, Lines, PipeLines
from ._job import Job
from ._options import Options
from ._report import Reporter
from ._template import Template


class Feeder:
    """Makes a job of each input and submits it; keeps the jobs in the pool by task id."""

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
        self.jobs: dict[str, Job] = {}  # the jobs submitted and not ended yet, by task id
        self.seq = 0
        self.task: asyncio.Task[None] | None = None
        self.groups: set[asyncio.Task[None]] = set()  # the error groups not ended yet
        self._attempt = attempt
        # What every job's definition shares; each gets its id and its job (`_definition`).
        self._recipe: Definition[None] = Definition(
            max_duration=opts.timeout,
            max_retries=opts.retries,
            backoff=opts.backoff,
            retry_on=JobFailedError,  # and timeouts, always; a command not found is not
        )
        self._group_submitted: tuple[Job, asyncio.Future[None]] | None = None
        self._slot_waiter: asyncio.Future[None] | None = None
        self._halted = False

    def start(self, lines: Lines | PipeLines) -> asyncio.Task[None]:
        # asyncio.Task, not create_task: an eager task factory would run the feeder up to
        # its first job before the caller could stop it.
        self.task = asyncio.Task(self._feed(lines))
        return self.task

    def stop(self) -> None:
        """Start no more jobs."""
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
                    await self._submit(value)
                if opts.delay:
                    await asyncio.sleep(opts.delay)
            self.reporter.total = self.seq
            self.reporter.refresh()
        finally:
            lines.close()

    def _new_job(self, value: str) -> Job:
        self.seq += 1
        seq = self.seq
        job = Job(seq, value, self.template.argv(seq, value))
        self.jobs[str(seq)] = job
        return job

    def _definition(self, job: Job) -> Definition[None]:
        """The job's definition: its task function runs an attempt of this very job."""
        attempt = self._attempt

        # A plain async def rather than a partial: Definition checks a function on its
        # fast path, a partial on inspect's slower one (some 25 microseconds a job).
        async def job_attempt(run: Run) -> None:
            await attempt(job, run)

        return dataclasses.replace(self._recipe, id=str(job.seq), task_fn=job_attempt)

    def _forget(self, job: Job) -> None:
        """A job that was never submitted."""
        self.jobs.pop(str(job.seq), None)
        self.reporter.skip(job)

    async def _submit(self, value: str) -> None:
        job = self._new_job(value)
        try:
            await self.pool.submit(self._definition(job))
        except BaseException:
            self._forget(job)
            raise

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

        The pool's error group takes a list, so a long input goes in as many small groups
        (at most one per free worker each time), and the first failure anywhere cancels
        the other groups as well (`halt`).
        """
        loop = asyncio.get_running_loop()
        jobs = [self._new_job(v) for v in values]
        submitted: asyncio.Future[None] = loop.create_future()
        self._group_submitted = (jobs[-1], submitted)
        group = loop.create_task(self._group([self._definition(j) for j in jobs]))
        self.groups.add(group)
        for job in jobs:
            job.group = group

        def ended(task: asyncio.Task[None]) -> None:
            self.groups.discard(task)
            if not submitted.done():
                submitted.set_result(None)

        group.add_done_callback(ended)
        try:
            await submitted
        finally:
            self._group_submitted = None

    async def _group(self, definitions: list[Definition[None]]) -> None:
        # The failure has been reported by the hooks already.
        with contextlib.suppress(Exception):
            await self.pool.submit_with_err_group(definitions)

    def submitted(self, job: Job) -> None:
        """The job is in the pool (PENDING for the first time): if it is the last of the
        error group being submitted, the feeder goes on."""
        pending = self._group_submitted
        if pending is not None and pending[0] is job and not pending[1].done():
            pending[1].set_result(None)

    def halt(self, job: Job) -> None:
        """A job failed: cancel every other group, start nothing more."""
        if self._halted:
            return
        self._halted = True
        self.stop()
        for group in self.groups:
            if group is not job.group:
                group.cancel()  # the pool cancels that group's tasks
