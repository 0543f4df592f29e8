"""Starting a program: ``posix_spawn`` (a vfork and an exec), without holding the GIL.

``os.posix_spawn`` holds the GIL while the kernel creates the child and the child gets as
far as its exec; on a busy machine that wait is most of a short job's cost, and nothing
else of the run moves meanwhile. On Linux the C library's ``posix_spawn`` is called
through ctypes instead, which lets the GIL go: the jobs are started from a thread of
their own, and the event loop goes on while they are. Elsewhere, ``os.posix_spawn``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import queue
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar

T = TypeVar("T")

# glibc's and musl's values (<spawn.h>).
_SETSIGDEF: Final = 0x04
_SETSIGMASK: Final = 0x08
_SETSID: Final = 0x80
_BUFFER: Final = 1024  # more than a posix_spawnattr_t, a file actions' list or a sigset_t

# The signals Python ignores, or may, that a child gets back at their default (as
# subprocess's restore_signals gives them): SIGPIPE above all, for `yes | head`.
SIGDEF: Final = tuple(
    getattr(signal, name) for name in ("SIGPIPE", "SIGXFSZ", "SIGXFZ") if hasattr(signal, name)
)

Dup2 = tuple[int, int]  # (a descriptor of ours, the child's descriptor it becomes)
_Call = tuple["asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...]]


class Spawner:
    """Starts programs in a session of their own, with the environment as it is when
    made, the signals of `SIGDEF` at their default, no signal blocked, the given
    descriptors (``dup2``) and none of those in ``close``."""

    def __init__(self, close: Sequence[int]) -> None:
        self._close = tuple(close)
        self._libc: ctypes.CDLL | None = None
        if sys.platform.startswith("linux"):
            try:
                self._libc = ctypes.CDLL(None, use_errno=True)
                self._attr = self._attributes(self._libc)
            except (OSError, AttributeError):  # pragma: no cover - no posix_spawn in libc
                self._libc = None
        env = [key + b"=" + value for key, value in os.environb.items()]
        self._env = (ctypes.c_char_p * (len(env) + 1))(*env, None)

    @staticmethod
    def _attributes(libc: ctypes.CDLL) -> ctypes.Array[ctypes.c_char]:
        attr = ctypes.create_string_buffer(_BUFFER)
        sigdef = ctypes.create_string_buffer(_BUFFER)
        empty = ctypes.create_string_buffer(_BUFFER)
        libc.posix_spawnattr_init(attr)
        libc.sigemptyset(sigdef)
        for sig in SIGDEF:
            libc.sigaddset(sigdef, int(sig))
        libc.sigemptyset(empty)
        libc.posix_spawnattr_setsigdefault(attr, sigdef)
        libc.posix_spawnattr_setsigmask(attr, empty)
        libc.posix_spawnattr_setflags(attr, ctypes.c_short(_SETSID | _SETSIGDEF | _SETSIGMASK))
        return attr

    def spawn(self, path: str, argv: list[str], dup2: Sequence[Dup2], *, search: bool) -> int:
        """Start ``path`` (looked up in PATH if ``search``) with ``argv``: its pid.
        `OSError` if it cannot be run, `ValueError` for a NUL byte in a word."""
        if "\0" in path or any("\0" in word for word in argv):
            raise ValueError("embedded null byte")
        libc = self._libc
        if libc is None:  # pragma: no cover - not Linux
            return self._os_spawn(path, argv, dup2, search=search)
        actions = ctypes.create_string_buffer(_BUFFER)
        libc.posix_spawn_file_actions_init(actions)
        try:
            for fd, target in dup2:
                libc.posix_spawn_file_actions_adddup2(actions, fd, target)
            for fd in self._close:
                libc.posix_spawn_file_actions_addclose(actions, fd)
            words = [os.fsencode(word) for word in argv]
            args = (ctypes.c_char_p * (len(words) + 1))(*words, None)
            pid = ctypes.c_int()
            call = libc.posix_spawnp if search else libc.posix_spawn
            err = call(ctypes.byref(pid), os.fsencode(path), actions, self._attr, args, self._env)
        finally:
            libc.posix_spawn_file_actions_destroy(actions)
        if err:
            raise OSError(err, os.strerror(err))
        return pid.value

    def _os_spawn(  # pragma: no cover - see spawn
        self, path: str, argv: list[str], dup2: Sequence[Dup2], *, search: bool
    ) -> int:
        actions: list[tuple[int, ...]] = [(os.POSIX_SPAWN_DUP2, fd, to) for fd, to in dup2]
        actions += [(os.POSIX_SPAWN_CLOSE, fd) for fd in self._close]
        call = os.posix_spawnp if search else os.posix_spawn
        return call(path, argv, os.environ, file_actions=actions, setsid=True, setsigdef=SIGDEF)


def inherited_fds() -> list[int]:
    """The descriptors beyond 0, 1 and 2 that a child would inherit: those we were given.
    A job gets none of them, as with subprocess (``close_fds``), which posix_spawn does
    not do by itself (ours all close on exec)."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:  # pragma: no cover - no /proc
        fds = list(range(3, 256))
    found = []
    for fd in fds:
        if fd > 2:
            try:
                if os.get_inheritable(fd):
                    found.append(fd)
            except OSError:  # (the one listdir used, now closed)
                continue
    return found


class StartingThread:
    """The thread that starts the jobs, one after the other, while the event loop goes on.

    ``start(fn, *args)`` returns a future of the loop's for ``fn(*args)``, called in the
    thread. The results come back in batches: one wake-up of the loop for all the starts
    that ended while it was busy. (In place of ``run_in_executor``, whose two futures per
    call, their chaining and a wake-up each cost 14% of the runner's instructions per
    job.)

    One thread: the jobs start in their order, as GNU parallel's and xargs's do. (Four
    made 2,000 x `true` about twice as fast on a busy machine, each start waiting for its
    child to be scheduled, but jobs that start together then exec in either order, and
    the order of their output and joblog rows with them.)
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._todo: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._ended: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        self._lock = threading.Lock()  # over _ended
        self._thread = threading.Thread(target=self._work, name="asynctasklib-spawn", daemon=True)
        self._thread.start()

    def start(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        future: asyncio.Future[T] = self._loop.create_future()
        self._todo.put((future, fn, args))
        return future

    def close(self) -> None:
        """Start nothing more; return once the thread is done with what it was given."""
        self._todo.put(None)
        self._thread.join()

    def _work(self) -> None:
        todo, ended, lock = self._todo, self._ended, self._lock
        while (call := todo.get()) is not None:
            future, fn, args = call
            try:
                outcome: tuple[asyncio.Future[Any], Any, BaseException | None] = (
                    future, fn(*args), None)  # fmt: skip
            except BaseException as exc:  # (to the job: it did not start)
                outcome = (future, None, exc)
            with lock:
                ended.append(outcome)
                first = len(ended) == 1
            if first:
                # (a closed loop: nobody waits)
                with contextlib.suppress(RuntimeError):
                    self._loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        with self._lock:
            ended = self._ended[:]
            self._ended.clear()
        for future, result, exc in ended:
            if future.cancelled():  # pragma: no cover - the caller shields its future
                continue
            if exc is None:
                future.set_result(result)
            else:
                future.set_exception(exc)
