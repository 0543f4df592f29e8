"""A job's leader and its pipes, watched on the event loop: the epoll of every job's
descriptors (`Readers`), and one attempt's capture of its output and exit (`Capture`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import threading
from collections.abc import Callable
from typing import Any, Final

from ._output import LineStream, Spool, Store
from ._util import resolve

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
