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
import select
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from ..task import Run
from ._errors import CannotStartError, JobFailedError, describe_returncode
from ._job import Job
from ._output import LineStream, Spool, Store
from ._reap import Reaper, killpg
from ._results import Attempt, JobOutput
from ._termseq import KillSequence
from ._util import resolve

if TYPE_CHECKING:
    from ._spawn import Spawner, StartingThread

Started = tuple[int, list[tuple[int, int]]]  # a pid, and the read ends of its pipes

_KILL_WAIT: Final = 5.0  # after the last SIGKILL, how long to wait for the group to be gone
_KILL_NOW: Final = ((signal.SIGKILL, 0.0),)
# Signals after which a stopped process is left as it is (after others SIGCONT, as a
# stopped process acts on SIGTERM only once resumed).
_NO_CONT: Final = frozenset({signal.SIGKILL, signal.SIGSTOP, signal.SIGTSTP, signal.SIGCONT,
                             signal.SIGTTIN, signal.SIGTTOU})  # fmt: skip
_READ_SIZE: Final = 64 * 1024  # a pipe's buffer (a bigger read would be an mmap of its own)


class Readers:
    """The descriptors the jobs' captures watch (their pipes and pidfds), in an epoll of
    our own that the loop watches as one reader. Registering one is then a C call
    (``epoll_ctl``) where the loop's ``add_reader`` and ``remove_reader`` run Python's
    selector and handle code, and the loop wakes once for every descriptor that is ready
    (18% of the runner's instructions per job, measured). Without epoll (not Linux), the
    loop's own readers.
    """

    __slots__ = ("_callbacks", "_epoll", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._callbacks: dict[int, tuple[Callable[..., None], tuple[Any, ...]]] = {}
        self._epoll = select.epoll() if hasattr(select, "epoll") else None  # (closes on exec)
        if self._epoll is not None:
            loop.add_reader(self._epoll.fileno(), self._dispatch)

    def add(self, fd: int, callback: Callable[..., None], *args: Any) -> None:
        """Call ``callback(*args)`` on the loop whenever ``fd`` is readable (or at its end)."""
        if self._epoll is None:  # pragma: no cover - not Linux
            self.loop.add_reader(fd, callback, *args)
            return
        self._callbacks[fd] = (callback, args)
        self._epoll.register(fd, select.EPOLLIN)

    def remove(self, fd: int) -> None:
        """No more calls for ``fd`` (before it is closed)."""
        if self._epoll is None:  # pragma: no cover - not Linux
            self.loop.remove_reader(fd)
            return
        del self._callbacks[fd]
        self._epoll.unregister(fd)

    def close(self) -> None:
        if self._epoll is not None:
            self.loop.remove_reader(self._epoll.fileno())
            self._epoll.close()

    def _dispatch(self) -> None:
        assert self._epoll is not None
        callbacks = self._callbacks
        for fd, _ in self._epoll.poll(0):
            # None: removed by a callback before it (a descriptor is added again only by
            # a job's task, which does not run meanwhile).
            entry = callbacks.get(fd)
            if entry is None:
                continue
            callback, args = entry
            try:
                callback(*args)
            except Exception as exc:  # pragma: no cover - as the loop would
                self.loop.call_exception_handler(
                    {"message": f"Exception in reader callback {callback!r}", "exception": exc}
                )


class Capture:
    """A job's leader and its pipes, watched with the event loop (`Readers`): collects its
    stdout and stderr (in spools of ``store``, or in the given ``collectors``), and tells
    when the leader exited (reaped: its ``returncode``) and its pipes closed.

    The leader is watched through a pidfd (a thread waiting for it where there is none),
    its pipes are read with ``os.read`` as they become readable: no transport, protocol
    or child watcher of asyncio's, which cost most of a short job's time.

    State is kept in flags; waiting uses a fresh future each time, since a task that is
    canceled while it awaits a future cancels that future.
    """

    __slots__ = ("_loop", "_open", "_pidfd", "_readers", "_waiter", "closed", "err", "exited",
                 "out", "pid", "returncode")  # fmt: skip

    def __init__(
        self,
        readers: Readers,
        store: Store,
        collectors: tuple[Spool | LineStream, Spool | LineStream] | None = None,
    ) -> None:
        self._readers = readers
        self._loop = readers.loop
        self._waiter: asyncio.Future[None] | None = None
        self.out, self.err = collectors or (Spool(store), Spool(store))
        self.pid = 0
        self._pidfd = -1
        self._open: list[int] = []  # the pipes not at their end yet
        self.exited = False  # the leader has exited and been reaped
        self.returncode: int | None = None  # ... how (negative: the signal that ended it)
        self.closed = False  # its stdout and stderr are closed

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        (self.out if fd == 1 else self.err).append(data)

    def watch(self, pid: int) -> None:
        """Wait for the leader ``pid`` to exit, and reap it."""
        self.pid = pid
        try:
            self._pidfd = os.pidfd_open(pid)
        except (AttributeError, OSError):  # pragma: no cover - no pidfds (not Linux 5.3+)
            threading.Thread(target=self._wait_blocking, daemon=True).start()
            return
        self._readers.add(self._pidfd, self._reap)

    def read(self, fd: int, target: int) -> None:
        """Read the pipe ``fd`` (ours to close), which is the job's ``target`` (1 or 2)."""
        self._open.append(fd)
        self._readers.add(fd, self._readable, fd, target)

    def _readable(self, fd: int, target: int) -> None:
        try:
            data = os.read(fd, _READ_SIZE)
        except InterruptedError:  # pragma: no cover
            return
        except OSError:  # pragma: no cover - a pipe we read fails only as closed
            data = b""
        if data:
            self.pipe_data_received(target, data)
            return
        self._stop_reading(fd)
        if not self._open:
            self.closed = True
            self._wake()

    def _stop_reading(self, fd: int) -> None:
        self._readers.remove(fd)
        os.close(fd)
        self._open.remove(fd)

    def _reap(self) -> None:
        """The pidfd is readable: the leader has exited."""
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:  # pragma: no cover - reaped by another (as asyncio: 255)
            pid, status = self.pid, 255 << 8
        if pid:
            self._readers.remove(self._pidfd)
            os.close(self._pidfd)
            self._exited(status)

    def _wait_blocking(self) -> None:  # pragma: no cover - see watch
        try:
            _, status = os.waitpid(self.pid, 0)
        except ChildProcessError:
            status = 255 << 8
        self._loop.call_soon_threadsafe(self._exited, status)

    def _exited(self, status: int) -> None:
        self.returncode = os.waitstatus_to_exitcode(status)
        self.exited = True
        self._wake()

    def close(self) -> None:
        """The attempt is over: stop reading its pipes (a process outside its group may
        hold them open). A leader not reaped yet is killed, and reaped once it is gone."""
        for fd in list(self._open):
            self._stop_reading(fd)
        if not self.exited:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.pid, signal.SIGKILL)

    def _wake(self) -> None:
        resolve(self._waiter)

    async def wait(self, *, closed: bool = False, timeout: float | None = None) -> None:
        """Until the leader exited (or, with ``closed``, the pipes closed too), or
        ``timeout`` seconds passed."""
        loop = self._loop
        end = None if timeout is None else loop.time() + timeout
        while not (self.exited and self.closed if closed else self.exited):
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
