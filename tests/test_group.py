"""Waiting for many tasks at once (asynctasklib._group): as_completed is one implementation
for both faces, so both refuse bad arguments alike, before they touch any task."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from asynctasklib import Definition, Run, Task, WorkerPool, blocking

WAIT = 10.0  # seconds: the bound on any wait a bug could turn into a hang


def gated(gate: threading.Event) -> Callable[[Run], Any]:
    def fn(run: Run) -> Any:
        gate.wait(WAIT)

    return fn


async def sleeps(run: Run) -> None:
    await asyncio.sleep(1)


BAD_TASKS: list[Callable[[], Any]] = [
    lambda: 5,
    lambda: "task",
    lambda: Definition(task_fn=sleeps),
    lambda: None,
]
BAD_TIMEOUTS: list[tuple[Any, type[Exception], str]] = [
    (-1, ValueError, r"^timeout must be >= 0, got -1$"),
    ("1", TypeError, r"^timeout must be a number of seconds or a timedelta, got '1'$"),
    (float("nan"), ValueError, r"^timeout must not be NaN$"),
]


@pytest.mark.parametrize("make_bad", BAD_TASKS)
def test_blocking_as_completed_refuses_what_is_not_a_task(make_bad: Callable[[], Any]) -> None:
    """It used to fail with AttributeError: '_task' (and left callbacks on the tasks)."""
    bad = make_bad()
    gate = threading.Event()
    with blocking.WorkerPool(2) as pool:
        task = pool.submit(Definition(task_fn=gated(gate)))
        it = pool.as_completed([task, bad])
        with pytest.raises(
            TypeError, match=rf"^tasks\[1\] is a {type(bad).__name__}, not a blocking\.Task$"
        ):
            next(it)
        assert not task._task._callbacks  # refused before any task was touched
        assert task.is_in_progress()  # nothing canceled
        gate.set()


def test_blocking_as_completed_refuses_an_async_task() -> None:
    with blocking.WorkerPool(1) as pool:
        done = pool.submit(Definition(task_fn=lambda run: 1))
        with pytest.raises(TypeError, match=r"^tasks\[1\] is a \w*Task, not a blocking\.Task$"):
            next(pool.as_completed([done, done._task]))  # type: ignore[arg-type]


@pytest.mark.parametrize(("timeout", "error", "message"), BAD_TIMEOUTS)
def test_blocking_as_completed_refuses_a_bad_timeout(
    timeout: Any, error: type[Exception], message: str
) -> None:
    with blocking.WorkerPool(1) as pool:
        task = pool.submit(Definition(task_fn=lambda run: 1))
        with pytest.raises(error, match=message):
            next(pool.as_completed([task], timeout=timeout))


@pytest.mark.parametrize("make_bad", BAD_TASKS)
async def test_async_as_completed_refuses_what_is_not_a_task(make_bad: Callable[[], Any]) -> None:
    bad = make_bad()
    async with WorkerPool(2) as pool:
        task = await pool.submit(Definition(task_fn=sleeps))
        with pytest.raises(TypeError, match=rf"^tasks\[1\] is a {type(bad).__name__}, not a Task$"):
            async for _ in pool.as_completed([task, bad]):
                pass
        assert not task._callbacks  # refused before any task was touched
        assert task.is_in_progress()


@pytest.mark.parametrize(("timeout", "error", "message"), BAD_TIMEOUTS)
async def test_async_as_completed_refuses_a_bad_timeout(
    timeout: Any, error: type[Exception], message: str
) -> None:
    async with WorkerPool(1) as pool:
        task = await pool.submit(Definition(task_fn=sleeps))
        with pytest.raises(error, match=message):
            async for _ in pool.as_completed([task], timeout=timeout):
                pass
        await task.wait()


def test_blocking_as_completed_checks_as_iteration_begins() -> None:
    """As a generator does (and as before): making the iterator checks nothing yet."""
    with blocking.WorkerPool(1) as pool:
        pool.as_completed([5], timeout=-1)  # type: ignore[arg-type]


async def test_async_as_completed_checks_as_iteration_begins() -> None:
    async with WorkerPool(1) as pool:
        pool.as_completed([5], timeout=-1)  # type: ignore[arg-type]


async def test_an_async_task_given_twice_is_yielded_twice_and_leaves_no_callback() -> None:
    async with WorkerPool(2) as pool:
        a = await pool.submit(Definition(task_fn=sleeps))
        b: Task[Any] = await pool.submit(Definition(task_fn=sleeps))
        got = [t async for t in pool.as_completed([a, b, a])]
        assert sorted(map(id, got)) == sorted(map(id, [a, a, b]))
        seen = []
        async for t in pool.as_completed([a, b]):
            seen.append(t)
            break  # left early: the other task forgets this as_completed
        assert not a._callbacks
        assert not b._callbacks
