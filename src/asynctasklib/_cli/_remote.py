"""``--executor dask --scheduler ADDRESS``: each attempt of a job runs its command on a
worker of a Dask cluster, and its outcome comes back here.

Everything but the command's process stays here: the pool, retries, timeouts, ``--halt``,
the output, the joblog. An attempt is one call of `run_command` on the cluster, through the
library's `DaskExecutor`: the argv the template made (no shell but the one the command
names), stdin ``/dev/null``, in the worker's working directory and environment. The command
runs in a session of its own; its stdout and stderr, its exit status or signal, come back
whole when it ends.

Stopping one (a timeout, ``--halt now``, Ctrl-C twice): a request to every worker
(``client.run``) that the one running it kill its process group, SIGTERM then SIGKILL after
``--grace`` (at once after Ctrl-C three times); then the attempt's outcome is awaited, at
most ``--grace`` + 5 s more, and kept as a local one is. If it does not come (the worker is
gone, or the call has not started yet) the call is canceled on the cluster, and the worker,
which checks every 50 ms whether its call is still wanted, kills the group the same way:
that also holds if this process dies or loses the scheduler. `_remote_worker` is the
worker's half: the scheduler and the workers need asynctasklib installed, to unpickle it.

Before any job, `cluster_threads` counts the workers' threads: the CPU count that the
default -j, and -j N%, +N and -N, count against (see `_start._on_cluster`).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from typing import TYPE_CHECKING, Final

from ..task import Run
from ._errors import (
    PROG,
    CannotStartError,
    JobFailedError,
    UsageError,
    describe_returncode,
    show,
)
from ._job import Job
from ._remote_worker import KILL, KILL_WAIT, TERM, Outcome, request_stop, run_command
from ._results import Attempt, JobOutput

if TYPE_CHECKING:
    from distributed import Client

    from ..dask import DaskExecutor

LOST: Final = 255  # the exit code of an attempt lost on the cluster (ssh's, for parallel's)


class LostError(JobFailedError):
    """The attempt's outcome did not come back from the cluster: a failure, retried."""

    def __init__(self, why: str) -> None:
        super().__init__(LOST)
        self.args = (f"lost on the Dask cluster: {why}",)


def connect(address: str) -> DaskExecutor:
    """A Dask executor on a client of the scheduler at ``address`` (`UsageError` if it
    cannot be reached)."""
    try:
        from distributed import Client
        from distributed.comm.addressing import get_address_host_port

        from ..dask import DaskExecutor
    except ImportError as exc:  # pragma: no cover - checked with the options
        raise UsageError(f"--executor dask: {exc}") from None
    try:  # (first: a Client that fails on a bad address complains as it is collected)
        get_address_host_port(address)
    except ValueError as exc:
        raise UsageError(f"--scheduler {show(address)}: {exc}") from None
    try:  # (distributed's connect timeout: DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT)
        client = Client(address, set_as_default=False)
    except (OSError, ValueError, TypeError) as exc:
        raise UsageError(f"--scheduler {show(address)}: cannot connect: {exc}") from None
    return DaskExecutor(client)


def disconnect(executor: DaskExecutor) -> None:
    executor.shutdown(wait=False, cancel_futures=True)
    executor.client.close()


def worker_wait() -> float:
    """How long to wait for a first worker: distributed's connect timeout (30 s unless
    DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT says otherwise), the time a run already
    gives the cluster to answer."""
    import dask.config
    from dask.utils import parse_timedelta

    seconds = parse_timedelta(dask.config.get("distributed.comm.timeouts.connect"), "s")
    return float(seconds or 0)


def cluster_threads(client: Client, address: str, wait: float) -> int:
    """The worker threads of the cluster (the sum of the workers' ``nthreads``), the CPU
    count that a relative -j counts against. A cluster without a worker yet gets ``wait``
    seconds for one to join (`UsageError` if none does: nothing to count)."""
    where = f"--scheduler {show(address)}"
    try:
        threads = _threads(client)
        if not threads:
            print(f"{PROG}: {where}: the cluster has no worker yet: waiting at most "
                  f"{wait:g} s for one", file=sys.stderr)  # fmt: skip
            client.wait_for_workers(1, timeout=wait)
            threads = _threads(client)
    except TimeoutError:  # (distributed's WorkerStartTimeoutError)
        threads = 0
    except OSError as exc:  # the scheduler went away
        raise UsageError(f"{where}: cannot reach the scheduler: {exc}") from None
    if not threads:
        raise UsageError(
            f"{where}: the cluster has no worker, and none joined within {wait:g} s (the "
            "default -j, and -j N%, +N, -N, count the workers' threads; -j N runs anyway, "
            "the jobs waiting for a worker)"
        )
    return threads


def _threads(client: Client) -> int:
    nthreads: dict[str, int] = client.nthreads()  # (each worker's, by address)
    return sum(nthreads.values())


class RemoteCommands:
    """Runs each attempt of a job on the Dask cluster at ``address`` (the face of
    `Processes`: ``open``, ``attempt``, ``kill_all``, ``close``), through ``executor``
    if it is connected already (it is then closed with this)."""

    def __init__(
        self, address: str, output: JobOutput, grace: float, executor: DaskExecutor | None = None
    ) -> None:
        self.address = address
        self.output = output
        self.grace = grace
        self.executor = executor
        self.running: set[str] = set()  # the tokens of the attempts on the cluster
        self.kill_now = False  # SIGKILL at once (Ctrl-C three times)
        self._asking: set[asyncio.Task[bool]] = set()  # kill_all's requests, under way

    def open(self) -> None:
        """Connect to the scheduler, unless connected (`UsageError` if that fails)."""
        if self.executor is None:
            self.executor = connect(self.address)

    def close(self) -> None:
        if self.executor is not None:
            disconnect(self.executor)

    def kill_all(self) -> None:
        """SIGKILL every attempt's command now, and from now on."""
        self.kill_now = True
        loop = asyncio.get_running_loop()
        for token in list(self.running):
            asking = loop.create_task(self._stop(token, now=True))
            self._asking.add(asking)
            asking.add_done_callback(self._asking.discard)

    async def attempt(self, job: Job, run: Run) -> None:
        """Run the job's command once on the cluster; a non-zero exit raises
        `JobFailedError` (``run`` is unused)."""
        assert self.executor is not None
        job.timed_out = False
        try:
            where = self.output.attempt(job)
        except CannotStartError as exc:
            raise _not_started(job, 126, str(exc)) from None
        token = uuid.uuid4().hex
        outcome: Outcome | None = None
        try:
            call = self.executor.submit(run_command, job.argv, token, self.grace)
        except BaseException:
            where.started()
            raise
        future = asyncio.wrap_future(call)
        self.running.add(token)
        try:
            outcome = await asyncio.shield(future)
        except asyncio.CancelledError:
            job.timed_out = True
            outcome = await self._stopped(token, future)
            if outcome is None:
                self._lost(job, "its command was stopped, and its outcome did not come")
            raise
        except Exception as exc:  # the worker died, the scheduler went away...
            raise self._lost(job, str(exc) or type(exc).__name__) from None
        finally:
            self.running.discard(token)
            self._ended(job, where, outcome)
        if outcome[3] is not None:
            raise CannotStartError(job.error)
        if outcome[0] != 0:
            raise JobFailedError(outcome[0])

    def _ended(self, job: Job, where: Attempt, outcome: Outcome | None) -> None:
        """The attempt is over: what it gave goes where a local one's would."""
        if outcome is None:  # (lost: see _lost)
            where.started()  # (closes the files of --results, --files)
            return
        rc, out, err, error = outcome
        if error is not None:
            where.started()
            _not_started(job, rc, error)
            return
        for data, fd, spool in ((out, where.stdout, where.out), (err, where.stderr, where.err)):
            if fd == subprocess.PIPE:
                spool.append(data)
            else:  # a file of --results or --files
                _write_all(fd, data)
        where.started()
        job.returncode = rc
        job.set_output(*self.output.attempt_ended(job, where))
        job.error = describe_returncode(rc) if rc else None

    def _lost(self, job: Job, why: str) -> LostError:
        """The attempt's outcome did not come back: exit code 255, no output."""
        job.returncode = LOST
        job.set_output(b"", b"")
        job.error = f"lost on the Dask cluster: {why}"
        return LostError(why)

    async def _stopped(self, token: str, future: asyncio.Future[Outcome]) -> Outcome | None:
        """Canceled: have the command killed, and wait for its outcome (None if it did not
        come: the call is then canceled on the cluster). Canceled again meanwhile: killed
        at once (SIGKILL)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + self.grace + KILL_WAIT
        now = self.kill_now
        asked: bool | None = None  # the stop last asked for: SIGKILL (True) or SIGTERM
        found = True  # a worker runs it
        while found and not future.done() and loop.time() < end:
            now = now or self.kill_now
            try:
                if asked is not now:
                    asked = now
                    found = await asyncio.shield(self._stop(token, now))
                else:
                    await asyncio.wait([future], timeout=end - loop.time())
            except asyncio.CancelledError:
                now = True
        if future.done() and not future.cancelled() and future.exception() is None:
            return future.result()
        future.cancel()  # (a worker kills the command once it sees its call canceled)
        return None

    async def _stop(self, token: str, now: bool) -> bool:
        """Ask the workers to kill the command of ``token``: whether one runs it."""
        assert self.executor is not None
        how = KILL if now else TERM
        try:
            found = await asyncio.to_thread(
                self.executor.client.run, request_stop, token, how, on_error="return"
            )
        except Exception:  # (no worker to ask: the call is canceled on the cluster instead)
            return False
        return any(result is True for result in found.values())


def _not_started(job: Job, rc: int, message: str) -> CannotStartError:
    """The attempt did not start (``message`` says why on stderr), and is not retried."""
    job.returncode = rc
    job.set_output(b"", f"asynctasklib: {message}\n".encode(errors="surrogateescape"))
    job.error = message
    return CannotStartError(message)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
