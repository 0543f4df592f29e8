"""A job's processes: start its command (its output and exit watched by a `Capture`),
end its process group.

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
import subprocess
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from ..task import Run
from ._capture import Capture, Readers
from ._errors import CannotStartError, JobFailedError, describe_returncode
from ._job import Job
from ._reap import Reaper, killpg
from ._results import Attempt, JobOutput
from ._termseq import KillSequence

if TYPE_CHECKING:
    from ._spawn import Spawner, StartingThread

Started = tuple[int, list[tuple[int, int]]]  # a pid, and the read ends of its pipes

_KILL_WAIT: Final = 5.0  # after the last SIGKILL, how long to wait for the group to be gone
_KILL_NOW: Final = ((signal.SIGKILL, 0.0),)
# Signals after which a stopped process is left as it is (after others SIGCONT, as a
# stopped process acts on SIGTERM only once resumed).
_NO_CONT: Final = frozenset({signal.SIGKILL, signal.SIGSTOP, signal.SIGTSTP, signal.SIGCONT,
                             signal.SIGTTIN, signal.SIGTTOU})  # fmt: skip


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
        self.spawner: Spawner | None = None  # (see open)
        self.starter: StartingThread | None = None
        self.readers: Readers | None = None
        self.live_groups: set[int] = set()
        self.kill_now = False  # SIGKILL at once, not SIGTERM first (Ctrl-C three times)

    def open(self) -> None:
        from ._spawn import Spawner, StartingThread, inherited_fds  # (ctypes: not for --help)

        self.devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        self.spawner = Spawner(inherited_fds())
        self.starter = StartingThread(self.loop)
        self.readers = Readers(self.loop)

    def close(self) -> None:
        if self.starter is not None:
            self.starter.close()
        if self.readers is not None:
            self.readers.close()
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
        job.timed_out = False
        try:
            where = self.output.attempt(job)
        except CannotStartError as exc:
            raise _not_started(job, 126, str(exc), exc) from None
        assert self.readers is not None
        proto = Capture(self.readers, self.output.store, (where.out, where.err))
        assert self.starter is not None
        spawn = self.starter.start(self._spawn, job.argv, where)
        spawn.add_done_callback(lambda _: where.started())  # (whether it started or not)
        self.reaper.starting(spawn, proto)
        pgid = 0
        try:
            try:
                pgid = self._watch(proto, await asyncio.shield(spawn))
            except asyncio.CancelledError:
                pgid = self._watch(proto, await self._started(spawn))  # to kill what it started
                raise
            self.live_groups.add(pgid)
            await proto.wait()
            if self.reaper.job_alive(pgid) and await self._terminate(pgid, proto):
                raise asyncio.CancelledError
            # Normally closed already; if a process outside the group holds the pipes open,
            # wait for it only so long.
            await proto.wait(closed=True, timeout=max(self.term_seq.seconds, 0.1))
        except asyncio.CancelledError:
            job.timed_out = True
            if pgid:
                await self._terminate(pgid, proto)
            raise
        except (OSError, ValueError) as exc:
            if pgid:  # pragma: no cover - only the start raises these
                raise
            raise _cannot_start(job, exc) from None
        finally:
            if pgid:
                self._ended(job, proto, where)
        rc = job.returncode
        if rc != 0:
            raise JobFailedError(rc if rc is not None else -1)

    def _ended(self, job: Job, proto: Capture, where: Attempt) -> None:
        """The attempt is over: what it gave goes to the job."""
        self.live_groups.discard(proto.pid)
        self.reaper.ended(proto.pid, proto)
        proto.close()
        job.returncode = rc = proto.returncode
        job.set_output(*self.output.attempt_ended(job, where))
        job.error = describe_returncode(rc) if rc else None

    def _spawn(self, argv: list[str], where: Attempt) -> Started:
        """Start ``argv`` in a session of its own (in our spawning thread: see _spawn): its
        pid (the process group's id too), and the pipes its stdout and stderr go to."""
        assert self.spawner is not None
        dup2 = [(self.devnull, 0)]
        pipes: list[tuple[int, int]] = []  # the pipes' read ends, and their targets
        theirs: list[int] = []  # the write ends, to close once it has them
        try:
            for target, fd in ((1, where.stdout), (2, where.stderr)):
                if fd == subprocess.PIPE:
                    read_end, fd = os.pipe()  # (both ends close on exec)
                    pipes.append((read_end, target))
                    theirs.append(fd)
                if fd != target:
                    dup2.append((fd, target))
            return self._exec(argv, dup2), pipes
        except BaseException:
            for read_end, _ in pipes:
                os.close(read_end)
            raise
        finally:
            for fd in theirs:
                os.close(fd)

    def _exec(self, argv: list[str], dup2: list[tuple[int, int]]) -> int:
        """Start ``argv`` as a shell would: looked up in PATH (unless looked up once
        already), and a file that is no executable format run by ``/bin/sh`` (as shells
        and GNU parallel do)."""
        assert self.spawner is not None
        program = self.executable
        try:
            return self.spawner.spawn(program or argv[0], argv, dup2, search=program is None)
        except OSError as exc:
            if exc.errno != errno.ENOEXEC:
                raise
        script = program or argv[0]
        return self.spawner.spawn("/bin/sh", ["/bin/sh", script, *argv[1:]], dup2, search=False)

    @staticmethod
    def _watch(proto: Capture, started: Started | None) -> int:
        """``proto`` watches what started (nothing: None): its pid, or 0."""
        if started is None:
            return 0
        pid, pipes = started
        proto.watch(pid)
        for read_end, target in pipes:
            proto.read(read_end, target)
        return pid

    async def _started(self, spawn: asyncio.Future[Started]) -> Started | None:
        """Cancelled while starting: let the start finish; what it started, if it did."""
        while not spawn.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([spawn])
        if spawn.cancelled() or spawn.exception() is not None:
            return None
        return spawn.result()

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
