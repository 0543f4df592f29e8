"""Waiting for many tasks at once: gather's group, and ``as_completed`` for both faces.

``as_completed`` is written once: the checks of its arguments, a done callback on each
task, and the queue of the tasks in the order they end. Each face only brings its way of
waiting for the next end: a future of the event loop, or a Condition for a thread.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from datetime import timedelta
from typing import Any, Generic, TypeVar

from ._task import Task
from ._threads import check_not_in_loop, thread_limit
from ._validate import optional_seconds

__all__ = ["Group", "as_completed", "as_completed_in_thread"]

T = TypeVar("T")
H = TypeVar("H")  # what as_completed yields: the tasks, or the blocking face's handles


class Group:
    """Tasks waited for together; with ``fail_fast`` the first to fail cancels the others."""

    __slots__ = ("_idle", "fail_fast", "failed", "live")

    def __init__(self, fail_fast: bool) -> None:
        self.fail_fast = fail_fast
        self.live: dict[Task[Any], None] = {}
        self.failed: Task[Any] | None = None
        self._idle: asyncio.Future[None] | None = None

    def add(self, task: Task[Any]) -> None:
        if task in self.live:  # given twice: waited for once
            return
        self.live[task] = None
        task.add_done_callback(self._ended)

    def _ended(self, task: Task[Any]) -> None:
        del self.live[task]
        if self.fail_fast and self.failed is None and not task.is_done():
            self.failed = task
            self.cancel()
        if not self.live and self._idle is not None and not self._idle.done():
            self._idle.set_result(None)

    def cancel(self) -> None:
        for task in list(self.live):
            task.cancel()

    async def wait(self) -> None:
        if self.live:
            self._idle = asyncio.get_running_loop().create_future()
            await self._idle


def _checked(
    tasks: Iterable[H], kind: type[Any], what: str, core: Callable[[H], Task[Any]]
) -> tuple[list[H], list[Task[Any]]]:
    """The tasks given, each a ``kind`` (called ``what``) and started, checked before any
    is waited for; and the (async) task of each."""
    given = list(tasks)
    for i, task in enumerate(given):
        if not isinstance(task, kind):
            raise TypeError(f"tasks[{i}] is a {type(task).__name__}, not a {what}")
    cores = [core(handle) for handle in given]
    for core_task in cores:
        # Waiting for a task never started would wait forever. (Task's check for its own
        # waits, private: users have no need of it.)
        core_task._check_started()
    return given, cores


class _Ends(Generic[H]):
    """The ends of one as_completed's tasks: a done callback on each queues its handle, then
    calls ``wake`` (on the loop's thread)."""

    __slots__ = ("_callbacks", "_wake", "queue")

    def __init__(self, handles: list[H], tasks: list[Task[Any]], wake: Callable[[], None]) -> None:
        self.queue: deque[H] = deque()
        self._wake = wake
        self._callbacks = [
            (task, functools.partial(self._ended, handle))
            for handle, task in zip(handles, tasks, strict=True)
        ]
        for task, callback in self._callbacks:
            task.add_done_callback(callback)  # (at once for a task that has ended)

    def _ended(self, handle: H, _: object) -> None:
        self.queue.append(handle)
        self._wake()

    def close(self) -> None:
        """Left early, or timed out: the tasks still running forget this as_completed."""
        for task, callback in self._callbacks:
            if not task.is_end():
                task.remove_done_callback(callback)


def _same(task: Task[T]) -> Task[T]:
    return task


async def as_completed(
    tasks: Iterable[Task[T]], timeout: float | timedelta | None
) -> AsyncIterator[Task[T]]:
    """`WorkerPool.as_completed`: wait on the running loop."""
    given, _ = _checked(tasks, Task, "Task", _same)
    limit = optional_seconds(timeout, "timeout", allow_zero=True)
    loop = asyncio.get_running_loop()
    deadline = None if limit is None else loop.time() + limit
    wake: list[asyncio.Future[None]] = []

    def on_end() -> None:
        if wake and not wake[0].done():
            wake[0].set_result(None)

    ends = _Ends(given, given, on_end)
    try:
        for _ in range(len(given)):
            while not ends.queue:
                fut = loop.create_future()
                wake[:] = [fut]
                if deadline is None:
                    await fut
                else:
                    async with asyncio.timeout_at(deadline):
                        await fut
            yield ends.queue.popleft()
    finally:
        ends.close()


def as_completed_in_thread(
    handles: Iterable[H],
    kind: type[H],
    core: Callable[[H], Task[Any]],
    timeout: float | timedelta | None,
) -> Iterator[H]:
    """The blocking face's as_completed: ``handles`` of tasks (each a ``kind``; ``core``
    gives its task) as they end, waited for in the calling thread."""
    given, cores = _checked(handles, kind, "blocking.Task", core)
    limit = thread_limit(optional_seconds(timeout, "timeout", allow_zero=True))
    check_not_in_loop("as_completed()")
    arrived = threading.Condition()

    def on_end() -> None:
        with arrived:
            arrived.notify()

    ends = _Ends(given, cores, on_end)
    deadline = None if limit is None else time.monotonic() + limit
    try:
        for _ in given:
            with arrived:
                while not ends.queue:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        raise TimeoutError(f"not every task ended within {timeout}s")
                    arrived.wait(None if left is None else min(left, threading.TIMEOUT_MAX))
                task = ends.queue.popleft()
            yield task
    finally:
        ends.close()
