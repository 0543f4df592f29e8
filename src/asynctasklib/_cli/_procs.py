"""A job's processes: start its command, capture its output, end its process group.

A job that times out, is canceled, or leaves processes behind when it exits has its whole
process group killed as ``--term-seq`` says (`_termseq`): each signal in turn, until the
group is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import math
import os
import signal
import sys
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, Final

from ..task import Run
from ._errors import CannotStartError, JobFailedError, describe_returncode
from ._job import Job
from ._output import LineStream, Spool, Store
from ._reap import Reaper, killpg
from ._results import Attempt, JobOutput
from ._termseq import KillSequence
from ._util import resolve

_KILL_WAIT: Final = 5.0  # after the last SIGKILL, how long to wait for the group to be gone
_KILL_NOW: Final = ((signal.SIGKILL, 0.0),)
# Signals after which a stopped process is left as it is (after others SIGCONT, as a
# stopped process acts on SIGTERM only once resumed).
_NO_CONT: Final = frozenset({signal.SIGKILL, signal.SIGSTOP, signal.SIGTSTP, signal.SIGCONT,
                             signal.SIGTTIN, signal.SIGTTOU})  # fmt: skip


class Capture(asyncio.SubprocessProtocol):
    """Collects a job's stdout and stderr (in spools of ``store``, or in the given
    ``collectors``), and tells when its leader exited and its pipes closed.

    State is kept in flags; waiting uses a fresh future each time, since a task that is
    canceled while it awaits a future cancels that future.
    """

    __slots__ = ("_loop", "_waiter", "closed", "err", "exited", "out")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        store: Store,
        collectors: tuple[Spool | LineStream, Spool | LineStream] | None = None,
    ) -> None:
        self._loop = loop
        self._waiter: asyncio.Future[None] | None = None
        self.out, self.err = collectors or (Spool(store), Spool(store))
        self.exited = False  # the leader has exited and been reaped
        self.closed = False  # ... and its stdout and stderr are closed

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        assert isinstance(data, bytes)
        (self.out if fd == 1 else self.err).append(data)

    def process_exited(self) -> None:
        self.exited = True
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        resolve(self._waiter)

    async def wait(self, *, closed: bool = False, timeout: float | None = None) -> None:
        """Until the leader exited (or, with ``closed``, the pipes closed too), or
        ``timeout`` seconds passed."""
        loop = self._loop
        end = None if timeout is None else loop.time() + timeout
        while not (self.closed if closed else self.exited):
            waiter = self._waiter = loop.create_future()
            timer = None
            if end is not None:
                left = end - loop.time()
                if left <= 0:
                    return
                timer = loop.call_later(left, resolve, waiter)
            try:
                await waiter
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()


class Processes:
    """Runs each attempt of a job as a process group of its own, and kills the groups."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        output: JobOutput,
        executable: str | None,
        term_seq: KillSequence,
        reaper: Reaper,
        notice: Callable[[str], None],
    ) -> None:
        self.loop = loop
        self.output = output  # where the jobs' output goes
        self.executable = executable  # the program, looked up once (None: it varies)
        self.term_seq = term_seq
        self.reaper = reaper
        self.notice = notice
        self.devnull = -1  # the jobs' stdin, open while the run is (see open)
        self.live_groups: set[int] = set()
        self.kill_now = False  # SIGKILL at once, not SIGTERM first (Ctrl-C three times)

    def open(self) -> None:
        self.devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)

    def close(self) -> None:
        os.close(self.devnull)

    def kill_all(self) -> None:
        """SIGKILL every job's process group now, and from now on."""
        self.kill_now = True
        for pgid in list(self.live_groups):
            killpg(pgid, signal.SIGKILL)

    async def attempt(self, job: Job, run: Run) -> None:
        """Run the job's command once; a non-zero exit raises `JobFailedError`.

        Each job's task function calls it with its job (see `Feeder`); ``run`` is unused.
        """
        loop = self.loop
        job.timed_out = False
        try:
            where = self.output.attempt(job)
        except CannotStartError as exc:
            raise _not_started(job, 126, str(exc), exc) from None
        proto = Capture(loop, self.output.store, (where.out, where.err))
        spawn = loop.create_task(self._spawn(proto, job.argv, where))
        spawn.add_done_callback(lambda _: where.started())  # (whether it started or not)
        self.reaper.starting(spawn, proto)
        transport: asyncio.SubprocessTransport | None = None
        try:
            try:
                transport, _ = await asyncio.shield(spawn)
            except asyncio.CancelledError:
                transport = await self._started(spawn)  # to kill what it started
                raise
            assert transport is not None
            pgid = transport.get_pid()
            self.live_groups.add(pgid)
            await proto.wait()
            if self.reaper.job_alive(pgid) and await self._terminate(pgid, proto):
                raise asyncio.CancelledError
            # Normally closed already; if a process outside the group holds the pipes open,
            # wait for it only so long.
            await proto.wait(closed=True, timeout=max(self.term_seq.seconds, 0.1))
        except asyncio.CancelledError:
            job.timed_out = True
            if transport is not None:
                await self._terminate(transport.get_pid(), proto)
            raise
        except (OSError, ValueError) as exc:
            if transport is not None:  # pragma: no cover - only the start raises these
                raise
            raise _cannot_start(job, exc) from None
        finally:
            if transport is not None:
                self._ended(job, transport, proto, where)
        rc = job.returncode
        if rc != 0:
            raise JobFailedError(rc if rc is not None else -1)

    def _ended(
        self, job: Job, transport: asyncio.SubprocessTransport, proto: Capture, where: Attempt
    ) -> None:
        """The attempt is over: what it gave goes to the job."""
        pid = transport.get_pid()
        self.live_groups.discard(pid)
        self.reaper.ended(pid, proto)
        transport.close()
        job.returncode = rc = transport.get_returncode()
        job.set_output(*self.output.attempt_ended(job, where))
        job.error = describe_returncode(rc) if rc else None

    async def _spawn(
        self, proto: Capture, argv: list[str], where: Attempt
    ) -> tuple[asyncio.SubprocessTransport, Any]:
        """Start ``argv`` as a shell would, the same on every event loop.

        uvloop starts programs with the C library's ``execvp``, asyncio's loop does not:
        so both a word with a NUL byte (uvloop would cut it there) and a file that is no
        executable format (``execvp`` hands it to ``/bin/sh``, as shells and GNU parallel
        do) are dealt with here.
        """
        if any("\0" in word for word in argv):
            raise ValueError("embedded null byte")
        program = self.executable
        options: dict[str, Any] = {
            "stdin": self.devnull,
            "stdout": where.stdout,
            "stderr": where.stderr,
            "start_new_session": True,
        }
        try:
            return await self.loop.subprocess_exec(
                lambda: proto, *argv, executable=program, **options
            )
        except OSError as exc:
            if exc.errno != errno.ENOEXEC:
                raise
        script = program or argv[0]
        return await self.loop.subprocess_exec(
            lambda: proto, "/bin/sh", script, *argv[1:], **options
        )

    async def _started(self, spawn: asyncio.Task[Any]) -> asyncio.SubprocessTransport | None:
        """Cancelled while starting: let the start finish; its transport, if it started."""
        while not spawn.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([spawn])
        if spawn.cancelled() or spawn.exception() is not None:
            return None
        transport: asyncio.SubprocessTransport = spawn.result()[0]
        return transport

    async def _terminate(self, pgid: int, proto: Capture) -> bool:
        """Kill the job's process group as the kill sequence says: each signal, then a
        wait for the group to be gone, at most as long as it says. Return once the leader
        is reaped and no member is left; True if canceled meanwhile.

        A cancellation meanwhile does not stop this: it sends SIGKILL at once. A group
        that outlives a sequence without SIGKILL is waited for, as GNU parallel waits.
        """
        loop = self.loop
        steps = deque(self.term_seq.steps)
        cancelled = killed = False
        deadline = loop.time()  # when the next step is due
        pause = 0.002
        while not proto.exited or self.reaper.job_alive(pgid):
            now = loop.time()
            if not killed and (cancelled or self.kill_now):
                steps, deadline = deque(_KILL_NOW), now
            if now >= deadline:
                if steps:
                    sig, wait = steps.popleft()
                    self._signal(pgid, sig)
                    killed = killed or sig == signal.SIGKILL
                    deadline = now + (max(wait, _KILL_WAIT) if killed and not steps else wait)
                    pause = 0.002
                elif killed:
                    self.notice(f"process group {pgid} survived SIGKILL for {_KILL_WAIT:g} s")
                    return cancelled
                else:
                    deadline = math.inf
            wait = max(0.0, min(pause, deadline - loop.time()))
            try:
                if proto.exited:  # the leader is gone: poll for the rest of the group
                    await asyncio.sleep(wait)
                else:
                    await proto.wait(timeout=wait)
            except asyncio.CancelledError:
                cancelled = True
            pause = min(pause * 2, 0.05)
        return cancelled

    def _signal(self, pgid: int, sig: signal.Signals) -> None:
        self.reaper.signal_job(pgid, sig)
        if sig not in _NO_CONT:
            self.reaper.signal_job(pgid, signal.SIGCONT)


def _cannot_start(job: Job, exc: OSError | ValueError) -> CannotStartError:
    """The command did not start: the job says so, as a shell would (127: not found; 126:
    found but not runnable: not allowed, arguments too long, a NUL byte in them)."""
    reason = exc.strerror if isinstance(exc, OSError) else str(exc)
    rc = 127 if isinstance(exc, FileNotFoundError) else 126
    message = f"{job.argv[0]}: {reason}"  # (the name as given)
    return _not_started(job, rc, message, f"cannot run {job.argv[0]!r}: {reason}")


def _not_started(job: Job, rc: int, message: str, error: object) -> CannotStartError:
    """The attempt did not start (``message`` says why on stderr), and is not retried."""
    job.returncode = rc
    job.set_output(b"", f"asynctasklib: {message}\n".encode(errors="surrogateescape"))
    job.error = str(error)
    return CannotStartError(job.error)


@contextlib.contextmanager
def pidfd_child_watcher() -> Iterator[None]:
    """On Python 3.11, watch children with pidfds instead of a thread per child.

    (3.12 and later do so by default.) Must be entered with the event loop running.
    """
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):  # pragma: no cover
        yield
        return
    try:
        os.close(os.pidfd_open(os.getpid()))
        old = asyncio.get_child_watcher()
    except (OSError, NotImplementedError, AttributeError):  # pragma: no cover
        yield
        return
    watcher = asyncio.PidfdChildWatcher()
    watcher.attach_loop(asyncio.get_running_loop())
    asyncio.set_child_watcher(watcher)
    try:
        yield
    finally:
        asyncio.set_child_watcher(old)
