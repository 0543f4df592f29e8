"""Helpers the test modules share: import them from here, not copy them.

Not a test module (pytest collects only ``test_*.py``). The event loops themselves, the
virtual clock's included, and the checks that run around every test are in conftest.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, TypeVar, cast

import pytest

from asynctasklib import Run, RunInfo, WorkerPool, blocking
from conftest import VirtualClockLoop

T = TypeVar("T")

# -- bounds on waits ------------------------------------------------------------------------
# A wait that a bug could turn into a hang is bounded, so the bug fails the test instead.

GUARD = 1000.0  # virtual seconds: a wait that a bug turns into a hang fails after this
LONG = 10_000.0  # virtual seconds: "forever" on the virtual clock
REAL_TIMEOUT = 5.0  # real seconds: an upper bound for real-time waits that take milliseconds
REAL_GUARD = 30.0  # real seconds: the same, where a loaded machine may take far longer
WAIT = 10.0  # real seconds: the bound on a thread's wait or a polled condition (wait_until)


# -- the event loop -------------------------------------------------------------------------


def now() -> float:
    """The running loop's clock (on the virtual clock: exact virtual seconds)."""
    return asyncio.get_running_loop().time()


async def wait_all_tasks_blocked() -> None:
    """Return once every other task on the running virtual-clock loop waits and nothing is
    ready to run, with no virtual time passed (trio.testing's helper of that name).

    Use it instead of yielding a guessed number of times. Only the virtual clock knows when
    nothing is ready: on another loop (a ``realtime`` test) this raises TypeError.
    """
    loop = asyncio.get_running_loop()
    if not isinstance(loop, VirtualClockLoop):
        raise TypeError(
            f"wait_all_tasks_blocked() needs the virtual-clock loop, not {type(loop).__name__}"
        )
    await loop.wait_all_tasks_blocked()


async def yield_turns(rounds: int = 20) -> None:
    """Let the running loop run ``rounds`` times over, on a real-time loop only (``realtime``
    tests, ``asyncio.run``): there nobody can tell when nothing is ready, so the count is a
    guess. The virtual clock refuses it (TypeError): use `wait_all_tasks_blocked` there.
    """
    loop = asyncio.get_running_loop()
    if isinstance(loop, VirtualClockLoop):
        raise TypeError("on the virtual clock, use wait_all_tasks_blocked() instead")
    for _ in range(rounds):
        await asyncio.sleep(0)


# -- threads --------------------------------------------------------------------------------


def library_threads() -> list[threading.Thread]:
    """The library's threads that are alive (theirs are all named "asynctasklib...")."""
    return [t for t in threading.enumerate() if t.name.startswith("asynctasklib") and t.is_alive()]


def wait_until(cond: Callable[[], bool], timeout: float = WAIT, what: str = "") -> None:
    """Poll ``cond`` until it holds; fail the test after ``timeout`` real seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what or cond}")
        time.sleep(0.001)


# -- pools ----------------------------------------------------------------------------------


def counters(pool: WorkerPool | blocking.WorkerPool) -> tuple[int, ...]:
    """The pool's stats() as (total, created, pending, started, done, failed, canceled)."""
    s = pool.stats()
    return (s.total, s.created, s.pending, s.started, s.done, s.failed, s.canceled)


class Inline(Executor):
    """An executor that is not threads (so the pool takes it for another process): each
    call runs at once, in the caller's thread."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_result(fn(*args, **kwargs))
        return future


# -- typing ---------------------------------------------------------------------------------


def run_info_fn(fn: Callable[[RunInfo], T]) -> Callable[[Run], T]:
    """``fn`` itself, typed as a Definition's task function: one that another process runs
    (a process pool, Dask) is called with a `RunInfo`, while ``task_fn`` is typed for `Run`."""
    return cast("Callable[[Run], T]", fn)
