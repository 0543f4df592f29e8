"""The blocking face's task handle: waits block the calling thread."""

from __future__ import annotations

import threading
from collections.abc import (
    Callable,
)
from datetime import timedelta
from typing import Generic, TypeVar

from ._definition import Definition
from ._direct import DirectTask
from ._state import State, StatePredicates
from ._task import Task as _AsyncTask
from ._threads import check_not_in_loop, thread_limit
from ._validate import optional_seconds

__all__ = ["Task"]

T = TypeVar("T")


class Task(StatePredicates, Generic[T]):
    """A task of a blocking `WorkerPool`: waits block; everything else is the task's own.

    ``wait(timeout)`` returns False if the timeout passed first; ``result(timeout)`` raises
    ``TimeoutError`` then. ``cancel()`` and the state methods work from any thread. A timeout
    above ``threading.TIMEOUT_MAX`` (``inf``, ``timedelta.max``) means no limit.

    Handles of the same task (from ``submit``, ``tasks()``, a done callback) are equal and
    hash alike, so ``handle in pool.tasks()`` and sets and dicts of handles work.

    The pool makes the handles; there is no need to make one.

    Args:
        task: The asynchronous task this handle stands for.
    """

    __slots__ = ("_task",)

    def __init__(self, task: _AsyncTask[T]) -> None:
        self._task = task

    def __repr__(self) -> str:
        return f"<blocking.Task {self._task!r}>"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Task):
            return self._task is other._task
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._task)

    @property
    def id(self) -> str:
        """The task's id, from its definition (or given by the pool), as a str."""
        return self._task.id

    @property
    def definition(self) -> Definition[T]:
        """The `Definition` the task runs."""
        return self._task.definition

    @property
    def state(self) -> State:  # (the is_...() methods are StatePredicates', from it)
        """Where the task is in its lifecycle."""
        return self._task.state

    @property
    def error(self) -> BaseException | None:
        """None, or the exception the task ended with (a FAILED or CANCELED task)."""
        return self._task.error

    @property
    def attempts(self) -> int:
        """Attempts started so far in this run."""
        return self._task.attempts

    def cancel(self) -> bool:
        """Cancel the task, whatever it is doing (see `asynctasklib.Task.cancel`).

        Returns:
            True if the task was in progress, False if it had not started or had ended
            already.
        """
        return self._task.cancel()

    def add_done_callback(self, fn: Callable[[Task[T]], object]) -> None:
        """Call ``fn(task)`` when the task ends, on the pool's loop thread.

        As with `asynctasklib.Task.add_done_callback`: at once if it has ended, and a
        callback that raises is logged and ignored. Safe from any thread.

        Args:
            fn: Called with this handle (a blocking `Task`) as its one argument.
        """
        self._task.add_done_callback(lambda _: fn(self))

    def wait(self, timeout: float | timedelta | None = None) -> bool:
        """Block the calling thread until the task has ended or ``timeout`` passed.

        Args:
            timeout: Seconds (or a ``timedelta``) to wait at most; None, or one above
                ``threading.TIMEOUT_MAX``, waits for as long as it takes; 0 only looks.

        Returns:
            True if the task has ended, False if ``timeout`` passed first (the task keeps
            going).

        Raises:
            RuntimeError: Called from a running event loop, for a task not ended (with a
                ``timeout`` other than 0).
        """
        limit = thread_limit(optional_seconds(timeout, "timeout", allow_zero=True))
        if self._task.is_end():
            return True
        if limit == 0:
            return False
        check_not_in_loop("Task.wait()")
        task = self._task
        # A direct task is woken by the thread that ends it, not the loop: its own private
        # waiter, which only the faces use.
        if isinstance(task, DirectTask):
            waiter: threading.Event | None = task._thread_waiter()
            if waiter is None or waiter.wait(limit):
                return True
            task._drop_waiter(waiter)
            return waiter.is_set()
        ended = threading.Event()

        def on_end(_: object) -> None:
            ended.set()

        self._task.add_done_callback(on_end)
        if ended.wait(limit):
            return True
        self._task.remove_done_callback(on_end)  # a polling caller leaves nothing behind
        return ended.is_set()

    def result(self, timeout: float | timedelta | None = None) -> T:
        """The function's return value, or raise the task's error; blocks the calling
        thread until the task has ended.

        Args:
            timeout: Seconds (or a ``timedelta``) to wait at most; None, or one above
                ``threading.TIMEOUT_MAX``, waits for as long as it takes; 0 does not wait.

        Returns:
            What the task function returned, if the task is DONE.

        Raises:
            TimeoutError: The task had not ended within ``timeout`` (it keeps going).
            RuntimeError: Called from a running event loop, for a task not ended (with a
                ``timeout`` other than 0).
            BaseException: The task's own error, if it is FAILED or CANCELED.
        """
        if not self.wait(timeout):
            raise TimeoutError(f"task {self.id!r} did not end within {timeout}s")
        return self._task.result()
