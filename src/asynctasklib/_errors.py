"""Exceptions raised by asynctasklib.

The tree::

    Exception
    ├── TaskError
    │   ├── TaskCanceledError       a task ended CANCELED (its ``error``)
    │   ├── TaskTimeoutError        an attempt, or the total budget, ran out (also a TimeoutError)
    │   ├── TaskInProgressError     ``go()`` on a task that is PENDING or STARTED
    │   ├── TaskFnNotSetError       the definition has no ``task_fn``
    │   └── InvalidStateError       ``result()`` before the task ended
    └── PoolStoppedError            ``submit()`` on a stopped pool
"""

from __future__ import annotations

from ._public import public_here

__all__ = [
    "InvalidStateError",
    "PoolStoppedError",
    "TaskCanceledError",
    "TaskError",
    "TaskFnNotSetError",
    "TaskInProgressError",
    "TaskTimeoutError",
]


class TaskError(Exception):
    """Base class of every error about a task."""


class TaskCanceledError(TaskError):
    """The task was canceled; it is the ``error`` of a CANCELED task."""


class TaskTimeoutError(TaskError, TimeoutError):
    """An attempt ran longer than ``max_duration``, or the ``total_timeout`` budget ran out."""


class TaskInProgressError(TaskError):
    """``go()`` was called on a task that is PENDING or STARTED."""


class TaskFnNotSetError(TaskError):
    """The task's definition has no ``task_fn``."""


class InvalidStateError(TaskError):
    """The operation is not valid in the task's current state (``result()`` before the end)."""


class PoolStoppedError(RuntimeError):
    """The worker pool was stopped and accepts no more tasks."""


public_here(  # (see `_public`)
    globals(),
    [
        "InvalidStateError",
        "PoolStoppedError",
        "TaskCanceledError",
        "TaskError",
        "TaskFnNotSetError",
        "TaskInProgressError",
        "TaskTimeoutError",
    ],
    "asynctasklib",
)
