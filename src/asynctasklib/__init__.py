"""asynctasklib: asynchronous tasks with a lifecycle you can watch.

Timeouts, cancellation, retries with backoff and state hooks for each task; a bounded
worker pool with backpressure, error groups, statistics and graceful shutdown; a semaphore.
"""

from .task import (
    Definition,
    ExponentialBackoff,
    InvalidStateError,
    Run,
    RunInfo,
    State,
    StateHooks,
    Task,
    TaskCanceledError,
    TaskError,
    TaskFnNotSetError,
    TaskInProgressError,
    TaskTimeoutError,
    from_task_fn,
    when_canceled,
    when_created,
    when_done,
    when_failed,
    when_pending,
    when_started,
)
from .workflow import MapResults, PoolStats, PoolStoppedError, Semaphore, WorkerPool

__version__ = "0.1.0"  # the package's version (pyproject.toml reads it from here)

__all__ = [
    "Definition",
    "ExponentialBackoff",
    "InvalidStateError",
    "MapResults",
    "PoolStats",
    "PoolStoppedError",
    "Run",
    "RunInfo",
    "Semaphore",
    "State",
    "StateHooks",
    "Task",
    "TaskCanceledError",
    "TaskError",
    "TaskFnNotSetError",
    "TaskInProgressError",
    "TaskTimeoutError",
    "WorkerPool",
    "__version__",
    "from_task_fn",
    "when_canceled",
    "when_created",
    "when_done",
    "when_failed",
    "when_pending",
    "when_started",
]


def _public_here(namespace: dict[str, object], names: list[str], module: str) -> None:
    """Make the public classes and functions say where users import them from, as trio and
    httpx do: reprs, tracebacks and pickles then name ``asynctasklib.Task``, not a private
    module that may move."""
    for name in names:
        obj = namespace[name]
        if callable(obj):  # (classes too)
            obj.__module__ = module


_public_here(globals(), __all__, __name__)
