"""Every use of a private name of the standard library (or of Dask), each with its reason.

They are kept here so that a new Python release that changes one breaks one module, and a
reader sees at a glance what the library relies on beyond the documented APIs. Each is a
plain alias or a function of a line or two: some are on the hot path.
"""

from __future__ import annotations

import asyncio
import operator
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

__all__ = [
    "FINISHED",
    "add_thread",
    "dask_outcome",
    "future_fields",
    "log_destroy_pending",
    "register_atexit",
    "running_loop",
]

# The running event loop, or None. asyncio.get_running_loop() raises instead, and a
# try/except costs more than this C function on the paths that ask once per task.
running_loop: Callable[[], asyncio.AbstractEventLoop | None] = asyncio._get_running_loop

# An exit hook that runs before concurrent.futures joins its worker threads (atexit's run
# after every thread has been joined, too late to tell a thread's function to stop).
register_atexit: Callable[[Callable[[], object]], None] = threading._register_atexit  # type: ignore[attr-defined]


# An ended concurrent.futures.Future's (state, exception, result). Its fields no longer
# change once it has ended, so they are read without the lock that result() and exception()
# take; a C getter, not a function of ours: it runs once per call of a plain task function.
future_fields: Callable[[Future[Any]], tuple[str, BaseException | None, Any]] = operator.attrgetter(
    "_state", "_exception", "_result"
)
FINISHED = "FINISHED"  # the state of a future that ended otherwise than cancelled


def log_destroy_pending(task: asyncio.Task[Any], log: bool) -> None:
    """Whether asyncio logs "Task was destroyed but it is pending!" for ``task``: a parked
    worker freed with its dropped pool loses nothing, so it need not warn."""
    task._log_destroy_pending = log  # type: ignore[attr-defined]


def add_thread(executor: ThreadPoolExecutor) -> None:
    """Let ``executor`` start one more thread than it was made with (it makes threads only
    when needed): there is no public way to grow a ThreadPoolExecutor."""
    executor._max_workers += 1


def dask_outcome(future: Any) -> Awaitable[Any]:
    """A ``distributed.Future``'s outcome, returned rather than raised: the result, the
    (type, exception, traceback) of a failure, or the CancelledError. ``await future``
    raises instead, and the traceback would hold the awaiting frame and the future with it.
    Dask's own ClientExecutor awaits this too."""
    return future._result(raiseit=False)  # type: ignore[no-any-return]
