"""Process groups, and the processes our jobs orphan.

Each job runs in a session (so a process group) of its own. On Linux the runner is a child
subreaper, so that processes orphaned by a job are reparented to it and reaped here rather
than left as zombies. A job is over only when none of its processes is left: in its process
group, or orphaned to us elsewhere in its session.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sys
from typing import Any, Final, Protocol

_PR_SET_CHILD_SUBREAPER: Final = 36
_CHILDREN_READ: Final = 64 * 1024  # a children file shorter than this is read in one go

_subreaper = False  # set by become_subreaper(), once, for the whole process


def become_subreaper() -> bool:
    """On Linux, adopt the processes our jobs orphan, so that we can reap them."""
    global _subreaper
    if _subreaper or not sys.platform.startswith("linux"):
        return _subreaper
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        _subreaper = libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):  # pragma: no cover - no libc prctl
        _subreaper = False
    return _subreaper


def killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def group_alive(pgid: int) -> bool:
    """Whether any live process is left in the group (its leader already reaped).

    Reaps the members that were orphaned to us first.
    """
    waitid = getattr(os, "waitid", None)
    if waitid is not None:
        while True:
            try:
                if waitid(os.P_PGID, pgid, os.WEXITED | os.WNOHANG) is None:
                    break
            except ChildProcessError:
                break
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member we may not signal (setuid): it is there
        return True
    if _subreaper:
        return True
    return _live_member_in_proc(pgid)


def _live_member_in_proc(pgid: int) -> bool:
    """Whether /proc shows a group member that is not a zombie (another process's to
    reap); True when /proc cannot tell."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return True
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            return True
    return False


def main_children_file() -> int:
    """The main thread's /proc ``children`` file, open (-1: there is none), for `_children`."""
    try:
        return os.open(f"/proc/self/task/{os.getpid()}/children", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:  # pragma: no cover - not Linux, or a kernel without that file
        return -1


def _children(main_file: int = -1) -> list[int]:
    """The pids of our children (our jobs, and the processes orphaned to us), from /proc.

    With ``main_file`` (`main_children_file`): those orphaned to us, and maybe a few more.
    Linux hands an orphan to the subreaper's first live thread, the main one
    (``find_new_reaper``), while a job is the child of the thread that started it: the
    main thread's list is one file to read where every thread's is several. The file is
    kept open, as a ``pread`` at 0 reads it anew (a seq_file): 0.6 microseconds here,
    where an ``open`` and a ``read`` take 10.
    """
    if main_file >= 0:
        try:
            data = os.pread(main_file, _CHILDREN_READ, 0)
        except OSError:  # pragma: no cover - (it cannot fail once open): look everywhere
            data = None
        if data is not None and len(data) < _CHILDREN_READ:  # (else there may be more)
            return list(map(int, data.split()))
    pids: list[int] = []
    try:
        threads = os.listdir("/proc/self/task")
    except OSError:  # pragma: no cover - no /proc
        return []
    for tid in threads:
        try:
            with open(f"/proc/self/task/{tid}/children", "rb") as f:
                pids.extend(map(int, f.read().split()))
        except OSError:  # (a thread that just ended)
            continue
    if not pids and not os.path.exists(f"/proc/self/task/{os.getpid()}/children"):
        return _children_by_scan()  # pragma: no cover - a kernel without that file
    return pids


def _children_by_scan() -> list[int]:  # pragma: no cover - see _children
    me = os.getpid()
    pids = []
    for name in os.listdir("/proc"):
        stat = _proc_stat(int(name)) if name.isdigit() else None
        if stat is not None and stat[1] == me:
            pids.append(int(name))
    return pids


def _proc_stat(pid: int) -> tuple[bytes, int, int, int] | None:
    """A process's state, parent, process group and session, from /proc (None: gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return fields[0], int(fields[1]), int(fields[2]), int(fields[3])
    except (OSError, IndexError, ValueError):
        return None


class Leader(Protocol):
    """A job's leader, as the reaper sees it: whether it has exited and been reaped."""

    @property
    def exited(self) -> bool: ...


class Reaper:
    """Reaps the processes orphaned to us, and finds and signals a job's strays.

    Never a job's leader: its `Capture` waits for it, and would lose its exit status. A
    job that is starting is our child before its pid is known, so while one is, reaping
    waits until none is.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        # Job leaders that their captures reap (we must not), and how many jobs are
        # starting (spawned, pid not known yet).
        self.leaders: dict[int, Leader] = {}
        self.spawning = 0
        self._wanted = False  # a reap waits for the jobs starting
        self._timer: asyncio.TimerHandle | None = None  # the next reap_every
        self._session = os.getsid(0)
        self._main_file = -1  # (see _children; opened on first use, closed by stop)

    def starting(self, spawn: asyncio.Future[tuple[int, Any]], leader: Leader) -> None:
        """A job is starting (``spawn``, its pid): reaping waits until its leader is known."""
        self.spawning += 1
        spawn.add_done_callback(functools.partial(self._spawned, leader))

    def _spawned(self, leader: Leader, spawn: asyncio.Future[tuple[int, Any]]) -> None:
        """A job's start ended: its leader is now known, for `reap` to leave it."""
        self.spawning -= 1
        if not spawn.cancelled() and spawn.exception() is None:
            self.leaders[spawn.result()[0]] = leader
        if self._wanted and not self.spawning:
            self.reap()

    def ended(self, pid: int, leader: Leader) -> None:
        """A job's attempt is over: forget its leader if its capture reaped it (if not,
        `reap` forgets it once it has)."""
        if leader.exited:
            self.leaders.pop(pid, None)

    def _adopted(self, everywhere: bool = True) -> list[tuple[int, bytes, int, int]]:
        """Our children that are not job leaders, from the jobs' sessions (not ours: those
        are the host's own children when `main` is called in a bigger program): pid,
        state, process group and session of each. Not ``everywhere``: those the main
        thread adopted (see `_children`)."""
        leaders = self.leaders
        found = []
        if not everywhere and self._main_file < 0:
            self._main_file = main_children_file()
        for pid in _children(-1 if everywhere else self._main_file):
            leader = leaders.get(pid)
            if leader is not None:
                if not leader.exited:
                    continue
                del leaders[pid]  # reaped by its capture: this is a new process
            stat = _proc_stat(pid)
            if stat is not None and stat[3] != self._session:
                found.append((pid, stat[0], stat[2], stat[3]))
        return found

    def reap(self) -> None:
        """Reap the processes orphaned to us (as a child subreaper) that have exited:
        every so often, and at the end of the run."""
        if not _subreaper:
            return
        if self.spawning:
            self._wanted = True
            return
        self._wanted = False
        for pid, state, _, _ in self._adopted():
            if state in (b"Z", b"X"):
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)

    def reap_every(self, interval: float) -> None:
        """`reap` now and every ``interval`` seconds."""
        self.reap()
        if _subreaper:
            self._timer = self.loop.call_later(interval, self.reap_every, interval)

    def stop(self) -> None:
        """The run is over: a last reap, and no more."""
        if self._timer is not None:
            self._timer.cancel()
        self.reap()
        if self._main_file >= 0:
            os.close(self._main_file)
            self._main_file = -1

    def _strays(self, sid: int) -> set[int]:
        """The process groups of the live processes orphaned to us from the session ``sid``
        (a job's: those that left its process group with setpgid); reaps the dead ones."""
        groups = set()
        for pid, state, pgid, session in self._adopted(everywhere=False):
            if session != sid:
                continue
            if state in (b"Z", b"X"):
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
            else:
                groups.add(pgid)
        return groups

    def job_alive(self, pgid: int) -> bool:
        """Whether a process of the job is left, in its process group or (orphaned to us)
        elsewhere in its session. Its leader has been reaped."""
        return group_alive(pgid) or (_subreaper and bool(self._strays(pgid)))

    def signal_job(self, pgid: int, sig: int) -> None:
        """Signal the job's process group, and the groups in its session orphaned to us."""
        killpg(pgid, sig)
        if _subreaper:
            for group in self._strays(pgid):
                killpg(group, sig)
