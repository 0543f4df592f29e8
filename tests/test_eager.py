"""Every face under ``asyncio.eager_task_factory`` (3.12+), which users and frameworks set for
speed: a coroutine then runs up to its first suspension inside ``create_task``, before the
caller has stored the task it returns.

Each test sets the factory on its own loop (the virtual clock, unless ``realtime``; the
blocking face's loop through an event loop policy). A virtual-time ``asyncio.timeout``
guards every wait, so a hang fails at once; the marks below bound the rest. CI also runs
the whole suite with the factory on every loop (``ASYNCTASKLIB_TEST_LOOP=eager``).
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from _helpers import GUARD
from asynctasklib import (
    Definition,
    PoolStoppedError,
    Run,
    Semaphore,
    State,
    StateHooks,
    Task,
    TaskCanceledError,
    WorkerPool,
    blocking,
)

pytestmark = [
    pytest.mark.skipif(sys.version_info < (3, 12), reason="asyncio.eager_task_factory is 3.12+"),
    pytest.mark.timeout(20),
]


def eager() -> asyncio.AbstractEventLoop:
    loop = asyncio.get_running_loop()
    if type(loop).__module__.startswith("uvloop"):  # (ASYNCTASKLIB_TEST_LOOP=uvloop)
        # uvloop's create_task passes eager_start=, which asyncio's factory refuses
        pytest.skip("uvloop's loop does not take asyncio.eager_task_factory")
    loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined]
    return loop


def recording(log: list[tuple[str, str]]) -> StateHooks:
    return StateHooks(
        on_created=lambda i, _w: log.append(("created", i)),
        on_pending=lambda i, _w, _a: log.append(("pending", i)),
        on_started=lambda i, _w: log.append(("started", i)),
        on_done=lambda i, _w: log.append(("done", i)),
        on_failed=lambda i, _w, _e: log.append(("failed", i)),
        on_canceled=lambda i, _w: log.append(("canceled", i)),
    )


def assert_lifecycles(log: list[tuple[str, str]], ends: dict[str, str]) -> None:
    """Each task's hooks fired in lifecycle order: its first hooks before a worker took it
    (an end of "-canceled" is a task canceled before it started)."""
    for task_id, end in ends.items():
        mine = [event for event, i in log if i == task_id]
        if end.startswith("-"):
            assert mine == ["created", "pending", end[1:]], task_id
        else:
            assert mine == ["created", "pending", "started", end], task_id


async def double(x: int) -> int:
    return 2 * x


async def answer(run: Run) -> int:
    return 42


async def test_go_then_await() -> None:
    eager()
    log: list[tuple[str, str]] = []
    task = Task(Definition(id="t", task_fn=answer, hooks=recording(log)))
    task.go()
    assert task.state is State.PENDING  # go()'s contract, even when tasks start eagerly
    async with asyncio.timeout(GUARD):
        assert await task == 42
    assert log == [("created", "t"), ("pending", "t"), ("started", "t"), ("done", "t")]


async def test_go_then_cancel_at_once() -> None:
    eager()
    ran = []

    async def fn(run: Run) -> None:
        ran.append(run)

    task = Task(Definition(task_fn=fn))
    task.go()
    assert task.cancel()
    async with asyncio.timeout(GUARD):
        await task.wait()
    assert task.state is State.CANCELED
    assert ran == []


async def test_go_again_from_an_eager_task() -> None:
    eager()
    task = Task(Definition(task_fn=answer))

    async def start_and_wait() -> int:
        task.go()
        return await task

    async with asyncio.timeout(GUARD):
        assert await asyncio.create_task(start_and_wait()) == 42
        assert await asyncio.create_task(start_and_wait()) == 42  # a second run


@pytest.mark.realtime
async def test_go_with_a_plain_function() -> None:
    eager()
    task = Task(Definition(task_fn=lambda run: threading.current_thread().name))
    task.go()
    async with asyncio.timeout(10):
        assert await task != threading.current_thread().name


async def test_pool_submit() -> None:
    eager()
    log: list[tuple[str, str]] = []
    async with asyncio.timeout(GUARD), WorkerPool(2, hooks=recording(log)) as pool:
        tasks = [await pool.submit(Definition(id=str(i), task_fn=answer)) for i in range(5)]
        assert [await t for t in tasks] == [42] * 5
    assert_lifecycles(log, {str(i): "done" for i in range(5)})
    stats = pool.stats()
    assert (stats.total, stats.done, stats.active_workers) == (5, 5, 0)


async def test_pool_map() -> None:
    eager()
    async with asyncio.timeout(GUARD), WorkerPool(4) as pool:
        assert [x async for x in pool.map(double, range(100))] == [2 * x for x in range(100)]
        unordered = [x async for x in pool.map(double, range(50), ordered=False, window=3)]
        assert sorted(unordered) == [2 * x for x in range(50)]


async def test_pool_map_over_an_async_iterable_stopped_early() -> None:
    eager()

    async def items() -> Any:
        for i in range(1000):
            await asyncio.sleep(0)
            yield i

    got = []
    async with asyncio.timeout(GUARD), WorkerPool(3) as pool:
        async with pool.map(double, items()) as results:
            async for x in results:
                got.append(x)
                if len(got) == 10:
                    break
        await pool.wait()
        assert pool.stats().active_workers == 0
    assert got == [2 * x for x in range(10)]


async def test_gather() -> None:
    eager()
    log: list[tuple[str, str]] = []
    async with asyncio.timeout(GUARD), WorkerPool(3, hooks=recording(log)) as pool:
        started = await pool.submit(Definition(id="x", task_fn=answer))
        defs = [Definition(id=str(i), task_fn=answer) for i in range(10)]
        assert await pool.gather([*defs, started]) == [42] * 11
    assert_lifecycles(log, {"x": "done"} | {str(i): "done" for i in range(10)})


async def test_error_group_cancels_the_rest() -> None:
    eager()
    release = asyncio.Event()

    async def boom(run: Run) -> None:
        raise ValueError("boom")

    async def waits(run: Run) -> None:
        await release.wait()

    log: list[tuple[str, str]] = []
    async with asyncio.timeout(GUARD), WorkerPool(3, hooks=recording(log)) as pool:
        defs = [
            Definition(id="a", task_fn=waits),
            Definition(id="b", task_fn=boom),
            Definition(id="c", task_fn=waits),
        ]
        with pytest.raises(ValueError, match="boom"):
            await pool.submit_with_err_group(defs)
        tasks = pool.tasks()
        assert [t.state for t in tasks] == [State.CANCELED, State.FAILED, State.CANCELED]
    # (c may have been canceled before a worker took it, or after)
    c_started = ("started", "c") in log
    assert_lifecycles(
        log, {"a": "canceled", "b": "failed", "c": "canceled" if c_started else "-canceled"}
    )


async def test_semaphore_guards_tasks_started_eagerly() -> None:
    eager()
    sem = Semaphore(2)
    inside = 0
    most = 0

    async def guarded(run: Run) -> None:
        nonlocal inside, most
        async with sem:
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(1)
            inside -= 1

    tasks = [Task(Definition(task_fn=guarded, max_duration=None)) for _ in range(6)]
    for task in tasks:
        task.go()
    async with asyncio.timeout(GUARD):
        for task in tasks:
            await task
    assert most == 2
    assert sem.available == 2


async def test_shutdown_cancels_what_runs() -> None:
    eager()
    running = 0
    both_running = asyncio.Event()

    async def forever(run: Run) -> None:
        nonlocal running
        running += 1
        if running == 2:
            both_running.set()
        await asyncio.Event().wait()

    log: list[tuple[str, str]] = []
    async with asyncio.timeout(GUARD):
        pool = WorkerPool(2, hooks=recording(log))
        forever_def = Definition(task_fn=forever, max_duration=None)
        tasks = [await pool.submit(replace(forever_def, id=i)) for i in "ab"]
        waiting = asyncio.create_task(pool.submit(forever_def))
        await both_running.wait()
        await pool.shutdown(cancel=True)
        assert [t.state for t in tasks] == [State.CANCELED, State.CANCELED]
        assert_lifecycles(log, {"a": "canceled", "b": "canceled"})
        with pytest.raises(TaskCanceledError):
            await tasks[0]
        with pytest.raises(PoolStoppedError):  # the blocked submitter was refused
            await waiting
        assert pool.stats().active_workers == 0


class _EagerPolicy(asyncio.DefaultEventLoopPolicy):
    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        loop = super().new_event_loop()
        loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined]
        return loop


@pytest.fixture
def eager_loops() -> Iterator[None]:
    """Every new event loop (the blocking face's too) has the eager task factory."""
    old = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(_EagerPolicy())
    try:
        yield
    finally:
        asyncio.set_event_loop_policy(old)


def test_blocking_face(eager_loops: None) -> None:
    async def slow(x: int) -> int:
        await asyncio.sleep(0.001)
        return x

    log: list[tuple[str, str]] = []
    with blocking.WorkerPool(3, hooks=recording(log)) as pool:
        portal = pool._start_portal("test")
        assert portal.loop.get_task_factory() is asyncio.eager_task_factory  # type: ignore[attr-defined]
        task = pool.submit(Definition(id="sync", task_fn=lambda run: 7))
        assert task.result(timeout=10) == 7
        defs = [Definition(id=f"g{i}", task_fn=answer) for i in range(5)]
        assert pool.gather(defs) == [42] * 5
        with pool.map(slow, range(20)) as results:
            assert list(results) == list(range(20))
    assert_lifecycles(log, {"sync": "done"} | {f"g{i}": "done" for i in range(5)})
