"""Tasks: definitions, lifecycle states, hooks, retry policy and errors."""

from ._definition import Definition
from ._errors import (
    InvalidStateError,
    TaskCanceledError,
    TaskError,
    TaskFnNotSetError,
    TaskInProgressError,
    TaskTimeoutError,
)
from ._hooks import (
    StateHooks,
    from_task_fn,
    when_canceled,
    when_created,
    when_done,
    when_failed,
    when_pending,
    when_started,
)
from ._retry import ExponentialBackoff
from ._run import Run, RunInfo
from ._state import State
from ._task import Task

__all__ = [
    "Definition",
    "ExponentialBackoff",
    "InvalidStateError",
    "Run",
    "RunInfo",
    "State",
    "StateHooks",
    "Task",
    "TaskCanceledError",
    "TaskError",
    "TaskFnNotSetError",
    "TaskInProgressError",
    "TaskTimeoutError",
    "from_task_fn",
    "when_canceled",
    "when_created",
    "when_done",
    "when_failed",
    "when_pending",
    "when_started",
]
