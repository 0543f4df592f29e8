"""``--load`` and ``--memfree``: when a new job may start, as GNU parallel decides it, and
``--memfree``'s kill of the youngest job when memory runs low.

``--load MAX``: no job starts while MAX or more processes run. The count is GNU parallel's,
not the load average: the threads running or runnable, and those waiting for a disk, right
now (it counts ``ps``'s R and D states, less ``ps`` itself). Here it is read from
``/proc/stat`` (``procs_running`` + ``procs_blocked``, less this process, which is running as
it reads). The reading is kept for `POLL` seconds, or until a job ends, and each job started
since counts as one more process: a job just started may not run yet when the count is
read, and GNU parallel's own count is read in the background, with the same effect.

``--memfree SIZE``: no job starts while less than SIZE bytes are available; ``MemAvailable``
of ``/proc/meminfo``, the kernel's estimate of what can be had without swapping (GNU parallel
adds MemFree, Buffers, Cached and SwapCached, what is used where MemAvailable is missing).
Every `POLL` seconds while jobs run, if less than half of SIZE is available, the youngest
running job (the highest number) is killed as ``--term-seq`` says: a failed attempt, retried
as ``--retries`` says (GNU parallel sets it back in its queue only then too). One job at a
time: the next is killed only once that one is gone and memory is still short.

A job that waits, waits with nothing running too, as in GNU parallel: a limit that is never
met stops the run there (until Ctrl-C). A retry waits as a new job does (it holds its job
slot meanwhile, and the wait counts toward its ``--timeout``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final

from ._errors import JobFailedError

if TYPE_CHECKING:
    from ._job import Job

POLL: Final = 0.1  # seconds between two readings while a job waits, and memory checks
_KILL_SIGNAL: Final = 15  # (the report's number of the kill: --term-seq's first is SIGTERM)


def running_processes(path: str = "/proc/stat") -> int:
    """GNU parallel's load: the threads running or runnable and those waiting for a disk
    (``procs_running`` + ``procs_blocked`` of ``/proc/stat``), less the one reading."""
    running = blocked = -1
    with open(path, "rb") as file:
        for line in file:
            if line.startswith(b"procs_running "):
                running = int(line.split()[1])
            elif line.startswith(b"procs_blocked "):
                blocked = int(line.split()[1])
                break  # (it comes after procs_running)
    if running < 0:
        raise ValueError(f"no procs_running line in {path}")
    return max(0, running + max(blocked, 0) - 1)


def available_memory(path: str = "/proc/meminfo") -> int:
    """The bytes of memory available: ``MemAvailable``; without it (Linux before 3.14) GNU
    parallel's sum, MemFree + Buffers + Cached + SwapCached."""
    fields: dict[bytes, int] = {}
    with open(path, "rb") as file:
        for line in file:
            name, _, rest = line.partition(b":")
            if name == b"MemAvailable":
                return int(rest.split()[0]) * 1024
            if name in (b"MemFree", b"Buffers", b"Cached", b"SwapCached"):
                fields[name] = int(rest.split()[0]) * 1024
    if b"MemFree" not in fields:
        raise ValueError(f"no MemAvailable nor MemFree line in {path}")
    return sum(fields.values())


class KilledForMemory(JobFailedError):
    """An attempt killed by ``--memfree``: a failed attempt (retried as others are)."""

    def __init__(self, why: str) -> None:
        super().__init__(-_KILL_SIGNAL)
        self.args = (why,)


def show_size(n: float) -> str:
    """Bytes for a message, in the largest binary unit under them (``1.5G``)."""
    for unit, size in (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= size:
            return f"{n / size:.4g}{unit}"
    return f"{n:g}"


class StartGate:
    """Holds each new job (and retry) until ``--load`` and ``--memfree`` let it start, and
    watches the running attempts for ``--memfree``'s kill.

    ``read_load`` and ``read_memory`` read the machine (`running_processes`,
    `available_memory`); the clock is the running loop's.
    """

    def __init__(
        self,
        max_load: float | None,
        memfree: int | None,
        notice: Callable[[str], None],
        *,
        read_load: Callable[[], float] | None = None,
        read_memory: Callable[[], int] | None = None,
        poll: float | None = None,
    ) -> None:
        self.max_load = max_load
        self.memfree = memfree
        self.notice = notice
        self.read_load = running_processes if read_load is None else read_load
        self.read_memory = available_memory if read_memory is None else read_memory
        self.poll = POLL if poll is None else poll
        self.waiting: set[Job] = set()  # the jobs whose retry waits here (see Feeder)
        self._changed = asyncio.Event()  # set (and cleared) as a job ends: read again
        self._load = 0.0  # the last reading of the load...
        self._read_at = -float("inf")  # ... at this loop time
        self._stale = True  # a job ended since: read again
        self._since = 0  # jobs started since the reading
        self._running: dict[Job, asyncio.Timeout] = {}  # (--memfree) each attempt's killer
        self._killing: Job | None = None  # the one being killed
        self._timer: asyncio.TimerHandle | None = None  # the next memory check

    # -- starting ------------------------------------------------------------------------

    def may_start(self) -> bool:
        """Whether a job may start now: the load under ``--load``, the memory available at
        least ``--memfree`` (a reading that fails holds the job, as an unknown load holds
        it in GNU parallel)."""
        try:
            if self.max_load is not None and self._current_load() >= self.max_load:
                return False
            return self.memfree is None or self.read_memory() >= self.memfree
        except (OSError, ValueError):
            return False

    def _current_load(self) -> float:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._stale or now - self._read_at >= self.poll:
            self._load = self.read_load()
            self._read_at, self._stale, self._since = now, False, 0
        return self._load + self._since

    async def wait(self, ready: Callable[[], bool] = lambda: True) -> None:
        """Until ``ready()`` (checked first: a free worker) and a job may start
        (`may_start`), checking again every `poll` seconds and as jobs end; then the job
        counts as started."""
        while not (ready() and self.may_start()):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll):
                    await self._changed.wait()
        self._since += 1

    def job_ended(self, _: object = None) -> None:
        """A job ended (a done callback of its task): the waiters read again."""
        self._stale = True
        self._changed.set()
        self._changed.clear()  # (those waiting are woken all the same)

    # -- --memfree's kill ----------------------------------------------------------------

    async def run(self, job: Job, attempt: Awaitable[None]) -> None:
        """Run the job's ``attempt``; if `--memfree` kills it (canceled: its processes are
        killed as ``--term-seq`` says), `KilledForMemory`."""
        job.killed = None
        killer = asyncio.timeout(None)
        try:
            async with killer:
                self._running[job] = killer
                self._watch()
                try:
                    await attempt
                finally:
                    del self._running[job]
                    if self._killing is job:
                        self._killing = None
        except TimeoutError:
            if not killer.expired():  # (not ours)
                raise
            assert self.memfree is not None
            job.killed = why = (
                f"killed: less than half of --memfree {show_size(self.memfree)} available"
            )
            raise KilledForMemory(why) from None

    def _watch(self) -> None:
        if self._timer is None and self.memfree is not None:
            self._timer = asyncio.get_running_loop().call_later(self.poll, self._check_memory)

    def _check_memory(self) -> None:
        """Every `poll` seconds while attempts run: under half of ``--memfree`` available,
        kill the youngest, unless one is being killed already."""
        self._timer = None
        if not self._running:
            return  # (the next attempt starts the checks again)
        assert self.memfree is not None
        if self._killing is None:
            try:
                free = self.read_memory()
            except (OSError, ValueError):
                free = self.memfree  # (unknown: nobody is killed)
            if free < self.memfree / 2:
                youngest = max(self._running, key=lambda job: job.seq)
                self._killing = youngest
                self.notice(
                    f"--memfree: {show_size(free)} available, under half of "
                    f"{show_size(self.memfree)}: killing job {youngest.seq}, the youngest"
                )
                self._running[youngest].reschedule(asyncio.get_running_loop().time())
        self._watch()

    def close(self) -> None:
        """The run is over: no more checks."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
