"""Helpers the test modules share: import them from here, not copy them.

Not a test module (pytest collects only ``test_*.py``). The event loops themselves, the
virtual clock's included, and the checks that run around every test are in conftest.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Executor, Future
from datetime import timedelta
from typing import Any, TypeVar, cast

import pytest

import asynctasklib
from asynctasklib import Definition, PoolStats, Run, RunInfo, State, Task, WorkerPool, blocking
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


class InThread:
    """Run ``fn`` in a thread; ``join()`` returns its value or raises its exception."""

    def __init__(self, fn: Callable[[], Any], name: str = "test-helper") -> None:
        self.started = threading.Event()
        self.finished = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None

        def run() -> None:
            self.started.set()
            try:
                self.value = fn()
            except BaseException as exc:
                self.error = exc
            finally:
                self.finished.set()

        self.thread = threading.Thread(target=run, name=name, daemon=True)
        self.thread.start()

    def join(self, timeout: float = WAIT) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the thread did not finish in time"
        if self.error is not None:
            raise self.error
        return self.value


# The library's own source folder. (Not "a path containing /asynctasklib/": a checkout of
# that name holds the tests too, and a test's own frame would pass for the library's.)
LIBRARY_DIR = os.path.dirname(os.path.realpath(asynctasklib.__file__)) + os.sep


def blocked_in_lock_wait(thread: threading.Thread) -> bool:
    """True when ``thread`` sits in a blocking wait (a lock or a condition) inside a call into
    the library."""
    frame = sys._current_frames().get(thread.ident or -1)
    if frame is None or frame.f_code.co_name not in {"wait", "_acquire_blocking"}:
        return False
    while frame is not None:
        if os.path.realpath(frame.f_code.co_filename).startswith(LIBRARY_DIR):
            return True
        frame = frame.f_back
    return False


def in_threading_wait(thread: threading.Thread) -> bool:
    """True when ``thread`` is blocked in threading's ``Event``/``Condition`` wait."""
    frame = sys._current_frames().get(thread.ident or -1)
    return (
        frame is not None
        and frame.f_code.co_name == "wait"
        and frame.f_code.co_filename == threading.__file__
    )


@contextlib.contextmanager
def interrupt_main_when(cond: Callable[[], bool]) -> Iterator[None]:
    """Send SIGINT to the main thread (this one) once ``cond()`` holds; restore afterwards."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only")
    main = threading.main_thread()

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGINT, handler)

    def send() -> None:
        deadline = time.monotonic() + WAIT
        while not (cond() and blocked_in_lock_wait(main)):
            if time.monotonic() > deadline:
                return
            time.sleep(0.001)
        signal.pthread_kill(main.ident or 0, signal.SIGINT)

    sender = threading.Thread(target=send, name="test-interrupter", daemon=True)
    sender.start()
    try:
        yield
    finally:
        sender.join(WAIT)
        signal.signal(signal.SIGINT, old)


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


class Probe:
    """Builds task functions that record their calls and how many run at once."""

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0
        self.calls: list[str] = []
        self.ended: list[str] = []

    def fn(
        self,
        *,
        gate: asyncio.Event | None = None,
        seconds: float = 0,
        result: Any = None,
        error: BaseException | None = None,
    ) -> Callable[[Run], Awaitable[Any]]:
        async def task_fn(run: Run) -> Any:
            self.calls.append(run.id)
            self.running += 1
            self.peak = max(self.peak, self.running)
            try:
                if gate is not None:
                    await gate.wait()
                if seconds:
                    await asyncio.sleep(seconds)
                if error is not None:
                    raise error
                return result
            finally:
                self.running -= 1
                self.ended.append(run.id)

        return task_fn


def forever() -> Callable[[Run], Awaitable[None]]:
    """A task function that only ends by cancellation (or its timeout)."""

    async def task_fn(run: Run) -> None:
        await asyncio.Event().wait()

    return task_fn


def recount(tasks: list[Task[Any]]) -> tuple[int, ...]:
    counts = Counter(t.state for t in tasks)
    return tuple(counts[s] for s in State)


def assert_stats_match(pool: WorkerPool) -> PoolStats:
    """stats() equals a recount of the states of the pool's tasks (all retained)."""
    s = pool.stats()
    tasks = pool.tasks()
    assert (s.created, s.pending, s.started, s.done, s.failed, s.canceled) == recount(tasks)
    assert s.total == len(tasks)
    assert s.max_workers == pool.max_workers
    assert s.active_workers == pool.active_workers
    assert s.stopped == pool.is_stopped()
    assert pool.active_workers + pool.available_workers == pool.max_workers
    return s


def only_current_task_left() -> bool:
    return asyncio.all_tasks() == {asyncio.current_task()}


# -- the blocking face's task functions and waits -------------------------------------------


def ok(value: Any = None) -> Callable[[Run], Any]:
    return lambda run: value


def fail(error: BaseException) -> Callable[[Run], Any]:
    def fn(run: Run) -> Any:
        raise error

    return fn


def gated(
    gate: threading.Event, started: threading.Event | None = None, value: Any = None
) -> Callable[[Run], Any]:
    """A sync task_fn that runs until ``gate`` is set (or its task is canceled)."""

    def fn(run: Run) -> Any:
        if started is not None:
            started.set()
        deadline = time.monotonic() + WAIT
        while not gate.wait(0.002):
            if run.canceled:
                return "stopped"
            if time.monotonic() > deadline:
                raise AssertionError("gate never opened")
        return value

    return fn


def agated(
    gate: threading.Event, started: threading.Event | None = None, value: Any = None
) -> Callable[[Run], Any]:
    """An ``async def`` task_fn that runs until ``gate`` is set (cancellable at once)."""

    async def fn(run: Run) -> Any:
        if started is not None:
            started.set()
        deadline = time.monotonic() + WAIT
        while not gate.is_set():
            if time.monotonic() > deadline:
                raise AssertionError("gate never opened")
            await asyncio.sleep(0.002)
        return value

    return fn


HUGE_TIMEOUTS = [math.inf, timedelta.max, 1e10, threading.TIMEOUT_MAX * 2]


def gated_task_with_a_waiter(
    pool: blocking.WorkerPool, wait: Callable[[blocking.Task[Any]], Any]
) -> tuple[threading.Event, blocking.Task[Any], InThread]:
    """A task that runs until its gate opens, and a thread blocked in ``wait(task)`` (or
    ended: with a bug, the wait raises at once)."""
    gate = threading.Event()
    task = pool.submit(Definition(task_fn=gated(gate, value="v")))
    waiter = InThread(lambda: wait(task))
    wait_until(
        lambda: in_threading_wait(waiter.thread) or waiter.finished.is_set(), what="the waiter"
    )
    return gate, task, waiter


# -- typing ---------------------------------------------------------------------------------


def run_info_fn(fn: Callable[[RunInfo], T]) -> Callable[[Run], T]:
    """``fn`` itself, typed as a Definition's task function: one that another process runs
    (a process pool, Dask) is called with a `RunInfo`, while ``task_fn`` is typed for `Run`."""
    return cast("Callable[[Run], T]", fn)
