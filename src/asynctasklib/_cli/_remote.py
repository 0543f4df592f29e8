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
that also holds if this process dies or loses the scheduler. The workers need asynctasklib
installed (this module is what they run).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import selectors
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from ..task import Run
from ._errors import CannotStartError, JobFailedError, UsageError, describe_returncode, show
from ._job import Job
from ._results import Attempt, JobOutput

if TYPE_CHECKING:
    from ..dask import DaskExecutor

_POLL: Final = 0.05  # seconds between a worker's checks for a stop
_KILL_WAIT: Final = 5.0  # after SIGKILL, how long to wait for the command to be gone
_CHUNK: Final = 1 << 16
LOST: Final = 255  # the exit code of an attempt lost on the cluster (ssh's, for parallel's)

# What a call of `run_command` returns: the exit code (or minus the signal), the stdout
# and stderr, and why the command could not start (None if it did).
Outcome = tuple[int, bytes, bytes, str | None]


class LostError(JobFailedError):
    """The attempt's outcome did not come back from the cluster: a failure, retried."""

    def __init__(self, why: str) -> None:
        super().__init__(LOST)
        self.args = (f"lost on the Dask cluster: {why}",)


class RemoteCommands:
    """Runs each attempt of a job on the Dask cluster at ``address`` (the face of
    `Processes`: ``open``, ``attempt``, ``kill_all``, ``close``)."""

    def __init__(self, address: str, output: JobOutput, grace: float) -> None:
        self.address = address
        self.output = output
        self.grace = grace
        self.executor: DaskExecutor | None = None
        self.running: set[str] = set()  # the tokens of the attempts on the cluster
        self.kill_now = False  # SIGKILL at once (Ctrl-C three times)
        self._asking: set[asyncio.Task[bool]] = set()  # kill_all's requests, under way

    def open(self) -> None:
        """Connect to the scheduler (`UsageError` if that fails)."""
        try:
            from distributed import Client

            from ..dask import DaskExecutor
        except ImportError as exc:  # pragma: no cover - checked with the options
            raise UsageError(f"--executor dask: {exc}") from None
        try:  # (distributed's connect timeout: DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT)
            client = Client(self.address, set_as_default=False)
        except (OSError, ValueError, TypeError) as exc:
            raise UsageError(f"--scheduler {show(self.address)}: cannot connect: {exc}") from None
        self.executor = DaskExecutor(client)

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
            self.executor.client.close()

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
        end = loop.time() + self.grace + _KILL_WAIT
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
        sig = int(signal.SIGKILL if now else signal.SIGTERM)
        try:
            found = await asyncio.to_thread(
                self.executor.client.run, request_stop, token, sig, on_error="return"
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


# -- on the worker ---------------------------------------------------------------------------

# The stop asked for each command running in this worker process (0: none yet), by token.
_STOPS: dict[str, int] = {}


def request_stop(token: str, sig: int) -> bool:
    """On each worker (``client.run``): have the command of ``token`` killed with ``sig``
    (SIGTERM, then SIGKILL after the grace period), if it runs here."""
    if token not in _STOPS:
        return False
    _STOPS[token] = max(_STOPS[token], sig)
    return True


def run_command(argv: list[str], token: str, grace: float) -> Outcome:
    """On a worker: run ``argv`` as the CLI runs a local job, and say how it went."""
    try:
        proc = _start(argv)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else str(exc)
        rc = 127 if isinstance(exc, FileNotFoundError) else 126
        return rc, b"", b"", f"{argv[0]}: {reason}"
    _STOPS[token] = 0
    try:
        out, err = _collect(proc, _Killer(proc.pid, grace), _still_wanted(token))
        status = proc.poll()
    finally:
        del _STOPS[token]
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    return (-signal.SIGKILL if status is None else status), out, err, None


def _start(argv: list[str]) -> subprocess.Popen[bytes]:
    """``argv`` started as a shell would (a file that is no executable format run by
    ``/bin/sh``), in a session of its own."""
    options: dict[str, Any] = {
        "stdin": subprocess.DEVNULL, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE,
        "start_new_session": True,
    }  # fmt: skip
    try:
        return subprocess.Popen(argv, **options)
    except OSError as exc:
        if exc.errno != errno.ENOEXEC:
            raise
    return subprocess.Popen(["/bin/sh", *argv], **options)


class _Killer:
    """Kills a process group: SIGTERM (and SIGCONT), SIGKILL after the grace period."""

    def __init__(self, pgid: int, grace: float) -> None:
        self.pgid = pgid
        self.grace = grace
        self.sent = 0  # the last signal sent
        self.at = 0.0  # when

    def stop(self, sig: int) -> None:
        """Start killing (SIGKILL: at once); and SIGKILL once the grace period is over."""
        now = time.monotonic()
        if self.sent == signal.SIGTERM and now >= self.at + self.grace:
            sig = signal.SIGKILL
        if sig > self.sent:
            self.sent, self.at = sig, now
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pgid, sig)
                os.killpg(self.pgid, signal.SIGCONT)

    def past_grace(self) -> bool:
        return self.sent != 0 and time.monotonic() >= self.at + self.grace

    def gave_up(self) -> bool:
        """SIGKILL was sent long enough ago: stop waiting for the group."""
        return self.sent == signal.SIGKILL and time.monotonic() > self.at + _KILL_WAIT


def _collect(
    proc: subprocess.Popen[bytes], killer: _Killer, wanted: Callable[[], int]
) -> tuple[bytes, bytes]:
    """The command's stdout and stderr, read until both close and its leader exits. Its
    group is killed when a stop is asked for, or when the leader has exited and left
    processes behind that hold the pipes open (waited for ``grace`` seconds at most)."""
    assert proc.stdout is not None
    assert proc.stderr is not None
    data = {proc.stdout.fileno(): bytearray(), proc.stderr.fileno(): bytearray()}
    with selectors.DefaultSelector() as selector:
        for fd in data:
            selector.register(fd, selectors.EVENT_READ)
        while not killer.gave_up():
            if not selector.get_map():
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(_POLL)
            for key, _ in selector.select(_POLL) if selector.get_map() else ():
                chunk = os.read(key.fd, _CHUNK)
                if chunk:
                    data[key.fd] += chunk
                else:
                    selector.unregister(key.fd)
            exited = proc.poll() is not None
            if exited and not selector.get_map():
                break
            if exited and killer.past_grace():  # (what holds the pipes: killed, left)
                killer.stop(signal.SIGKILL)
                break
            stop = max(wanted(), signal.SIGTERM if exited else 0)
            if stop:
                killer.stop(stop)
    return bytes(data[proc.stdout.fileno()]), bytes(data[proc.stderr.fileno()])


def _still_wanted(token: str) -> Callable[[], int]:
    """What stops the command: the signal asked for, or SIGTERM once its call is canceled
    on the cluster (a cancel, or the client gone). Outside a worker, only the former."""
    try:
        from distributed import get_worker

        worker = get_worker()
        key = worker.get_current_task()
    except (ImportError, ValueError):
        return lambda: _STOPS.get(token, 0)

    def stop() -> int:
        task = worker.state.tasks.get(key)
        canceled = task is None or task.state == "cancelled"
        return max(_STOPS.get(token, 0), signal.SIGTERM if canceled else 0)

    return stop
