"""`Run` and `RunInfo`: what a task function receives, one per attempt.

A leaf of the engine: it knows its task only through `_RunTask`, the few things a `Run`
asks of it.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
import warnings
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from ._compat import running_loop as _get_running_loop
from ._public import public_here
from ._validate import seconds

__all__ = ["Run", "RunInfo"]

_RUN: Any = object()  # Task._arg meaning "call task_fn with the attempt's Run"
# Guards Run._event, made on first wait_canceled(). Reentrant: an allocation inside may run
# the garbage collector, which may close another worker's suspended coroutine on this
# thread, whose cleanup signals its own Run (seen as a hang on uvloop).
_event_lock = threading.RLock()


class _RunTask(Protocol):
    """What a `Run` needs of its task (`Task` is one)."""

    @property
    def id(self) -> str: ...

    @property
    def _loop(self) -> asyncio.AbstractEventLoop | None: ...

    def cancel(self) -> bool: ...

    def _task_fn_callback(self, run: Run) -> None: ...


@dataclass(frozen=True, slots=True)
class RunInfo:
    """What a plain task function receives instead of a `Run` when the pool's executor runs
    it in another process or on another machine (``ProcessPoolExecutor``, Dask): the facts,
    picklable, without the line back to the task (no ``cancel()``, ``callback()``,
    ``canceled`` or waits; a canceled or timed-out task ends at once, and the function
    runs on until it returns).

    Args:
        id: The task's id.
        attempt: 0 for the first attempt, n for retry n.
        deadline: The wall-clock time (``time.time()``) at which the attempt times out, or
            None.
    """

    id: str
    attempt: int
    deadline: float | None


class Run:
    """What a task function receives: which task and attempt this is, and a line back to it.

    Every method is safe to call from the worker thread that runs a plain (sync) task
    function.
    """

    __slots__ = ("_attempt", "_canceled", "_deadline", "_event", "_task")

    # The engine's side of a Run: the runner sets _task, _attempt and _deadline, and the
    # engine calls _signal() and _info(). Private, so a task function sees only the rest.
    _canceled: bool
    _event: threading.Event
    _task: _RunTask
    _attempt: int
    _deadline: float  # (inf for none: the engine compares it with no test for None)
    # _canceled and _event are set on first use: most runs never need them.

    def __init__(self) -> None:
        raise TypeError("a Run is made by the engine for each attempt, and given to task_fn")

    def __repr__(self) -> str:
        return f"<Run id={self.id!r} attempt={self._attempt} canceled={self.canceled}>"

    @property
    def id(self) -> str:
        """The task's id."""
        return self._task.id

    @property
    def attempt(self) -> int:
        """0 for the first attempt, n for retry n."""
        return self._attempt

    @property
    def deadline(self) -> float | None:
        """The event loop time (``loop.time()``) at which this attempt times out, or None."""
        deadline = self._deadline
        return None if deadline == math.inf else deadline

    @property
    def canceled(self) -> bool:
        """True once this attempt was canceled or timed out: time to stop."""
        return getattr(self, "_canceled", False)

    @property
    def cancelled(self) -> bool:
        """Deprecated: use `canceled`. True once this attempt was canceled or timed out."""
        warnings.warn(
            "Run.cancelled is deprecated; use Run.canceled", DeprecationWarning, stacklevel=2
        )
        return self.canceled

    def cancel(self) -> None:
        """Cancel this run's own task."""
        self._task.cancel()

    def callback(self) -> None:
        """Fire the task's ``on_task_fn`` hook (not once this attempt is over: a function
        still running after its attempt timed out fires nothing after the task's end)."""
        self._task._task_fn_callback(self)

    async def sleep(self, delay: float | timedelta) -> None:
        """Sleep; a cancel or timeout of the task interrupts it (for ``async def`` functions).

        Args:
            delay: Seconds (or a ``timedelta``) to sleep.
        """
        await asyncio.sleep(seconds(delay, "delay"))

    def wait_canceled(self, timeout: float | timedelta | None = None) -> bool:
        """Block up to ``timeout`` seconds until this attempt is canceled or times out.

        For plain functions running in a worker thread; an ``async def`` function uses
        ``await run.sleep()``.

        Args:
            timeout: Seconds (or a ``timedelta``) to wait at most; None waits until the
                attempt is canceled or times out.

        Returns:
            True if the attempt was canceled or timed out, False when the timeout passed
            first.

        Raises:
            RuntimeError: Called on the thread of the task's event loop.
        """
        limit = None if timeout is None else seconds(timeout, "timeout")
        loop = self._task._loop
        if loop is not None and _get_running_loop() is loop:
            raise RuntimeError(
                "wait_canceled() blocks the thread; in an async task_fn use await run.sleep()"
            )
        with _event_lock:
            if self.canceled:
                return True
            event = getattr(self, "_event", None)
            if event is None:
                event = self._event = threading.Event()
        if limit is not None and limit > threading.TIMEOUT_MAX:
            limit = None  # (inf, timedelta.max: as good as forever, which Event.wait refuses)
        return event.wait(limit)

    def wait_cancelled(self, timeout: float | timedelta | None = None) -> bool:
        """Deprecated: use `wait_canceled`, which this calls.

        Args:
            timeout: As for `wait_canceled`.

        Returns:
            What `wait_canceled` returns.
        """
        warnings.warn(
            "Run.wait_cancelled() is deprecated; use Run.wait_canceled()",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.wait_canceled(timeout)

    def _info(self) -> RunInfo:
        deadline = self.deadline
        if deadline is not None:  # loop time means nothing elsewhere: make it wall-clock time
            deadline = time.time() + (deadline - self._task._loop.time())  # type: ignore[union-attr]
        return RunInfo(self.id, self._attempt, deadline)

    def _signal(self) -> None:
        with _event_lock:
            self._canceled = True
            event = getattr(self, "_event", None)
        if event is not None:
            event.set()


class _Run(Run):
    """The `Run` the engine makes: a class with no Python ``__init__`` is made by the
    interpreter's fast path (``object.__new__(Run)`` takes a slower one)."""

    __slots__ = ()
    __init__ = object.__init__


public_here(globals(), ["Run", "RunInfo"], "asynctasklib")  # (see `_public`)
