"""The blocking face: the same pool, tasks and semaphore for code that has no event loop.

Scripts, Django views, notebooks and data jobs use these from plain threads; the methods
that wait block the calling thread instead of being awaited. ``asynctasklib.WorkerPool`` and
friends run underneath, on an event loop the pool keeps in a background thread.
"""

from ._blocking import MapIterator, WorkerPool
from ._blocking_semaphore import Semaphore
from ._blocking_task import Task
from ._public import public_here

__all__ = ["MapIterator", "Semaphore", "Task", "WorkerPool"]

public_here(globals(), __all__, __name__)
