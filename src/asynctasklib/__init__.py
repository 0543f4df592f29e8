"""asynctasklib: asynchronous tasks with a lifecycle you can watch.

Timeouts, cancellation, retries with backoff and state hooks for each task; a bounded
worker pool with backpressure, error groups, statistics and graceful shutdown; a semaphore.
"""

from typing import TYPE_CHECKING

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


if TYPE_CHECKING:  # (for type checkers: at run time, `__getattr__` imports them when asked)
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

_TOPICAL = ("task", "workflow")  # the public modules, there after `import asynctasklib`


def __getattr__(name: str) -> object:
    """The public names, imported on first use (PEP 562): ``import asynctasklib`` alone
    imports no asyncio, so that ``asynctasklib run --help`` starts fast."""
    if name not in __all__ and name not in _TOPICAL:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib  # (not `from . import task`: it asks this function for "task" again)

    namespace = globals()
    for topical in _TOPICAL:  # (importing them sets them here too, as the eager import did)
        module = importlib.import_module(f"{__name__}.{topical}")
        for public in module.__all__:
            namespace[public] = getattr(module, public)
    return namespace[name]


def __dir__() -> list[str]:
    """The module's names, the public ones included before their first use."""
    return sorted({*globals(), *__all__})
