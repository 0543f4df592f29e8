"""Workflow: the worker pool, its statistics, and the semaphore."""

from ._errors import PoolStoppedError
from ._pool import PoolStats, WorkerPool
from ._semaphore import Semaphore
from ._stream import MapResults

__all__ = ["MapResults", "PoolStats", "PoolStoppedError", "Semaphore", "WorkerPool"]
